#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""offsite_fetch: download a backup set from S3-compatible storage."""

from __future__ import annotations

DOCUMENTATION = r"""
module: offsite_fetch
short_description: Download a complete backup set (an id or the newest) from S3-compatible storage
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Finds the set in the bucket (C(latest) is the newest complete one), downloads its four files into
    I(dest)/<id>/ and checks each against the bucket's checksum. The set stays encrypted; verify and decrypt it
    with M(mojorust.dr.backup_verify) or C(playbooks/offsite_verify.yml).
  - Runs wherever the bucket is reachable, the workstation (C(offsite_verify.yml)) or a new host (failover).
options:
  bucket: {description: Bucket name., type: str, required: true}
  prefix: {description: Key prefix of the sets., type: str, default: mojorust}
  endpoint_url: {description: S3 endpoint (empty for AWS)., type: str, default: ""}
  region: {description: Region., type: str, default: us-east-1}
  access_key_id: {description: Access key with read access., type: str, default: ""}
  secret_access_key: {description: Its secret (never logged)., type: str, default: ""}
  backup_id: {description: A set id or C(latest)., type: str, default: latest}
  dest: {description: Directory the set is downloaded into (created 0700)., type: path, required: true}
  signers:
    description:
      - Fingerprints of the keys a set may be signed by. When given, each download is checked (sha256, archive,
        signature with the public keys in I(trusted_keys)); with C(backup_id=latest) a set that fails is marked
        C(BAD)
        locally and the next older one is fetched, so the newest I(good) set is returned. Decryption and contents
        are checked by the restore that follows.
    type: list
    elements: str
    default: []
  trusted_keys:
    description:
      - A directory of the signers' public keys, one armored C(*.asc) file each (a bot host's
        C(/etc/mojorust-backup/trusted-keys), or the workstation's C(backup-signing-keys)); a key whose file carries
        its revocation refuses the sets it signed.
    type: path
  owner:
    description: The user the downloaded set then belongs to (the backup user, so its retention can remove it).
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: Finds the set and reports it; downloads nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Newest off-site set to the workstation
  mojorust.dr.offsite_fetch:
    bucket: mojorust-backups
    endpoint_url: https://s3.eu-central-003.backblazeb2.com
    access_key_id: "{{ vault_offsite_read_key_id }}"
    secret_access_key: "{{ vault_offsite_read_key }}"
    dest: /tmp/offsite-check
  delegate_to: localhost
"""

RETURN = r"""
id: {description: The set downloaded., returned: success, type: str}
path: {description: Its local directory., returned: success, type: str}
size: {description: Bytes of its archive., returned: success, type: int}
created_at: {description: "When the set was made (UTC, ISO 8601).", returned: success, type: str}
skipped:
  description: Newer sets that failed their checks and were passed over (id, check, message).
  returned: success
  type: list
  elements: dict
"""

import contextlib

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.backup import offsite
from ansible_collections.mojorust.dr.plugins.module_utils.backup.config import BackupError, Config
from ansible_collections.mojorust.dr.plugins.module_utils.backup.gpg import keyring
from ansible_collections.mojorust.dr.plugins.module_utils.backup.hostdir import give_to_backup_user
from ansible_collections.mojorust.dr.plugins.module_utils.backup.verify import verify_set


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "bucket": {"type": "str", "required": True},
            "prefix": {"type": "str", "default": "mojorust"},
            "endpoint_url": {"type": "str", "default": ""},
            "region": {"type": "str", "default": "us-east-1"},
            "access_key_id": {"type": "str", "default": "", "no_log": True},
            "secret_access_key": {"type": "str", "default": "", "no_log": True},
            "backup_id": {"type": "str", "default": "latest"},
            "dest": {"type": "path", "required": True},
            "signers": {"type": "list", "elements": "str", "default": []},
            "trusted_keys": {"type": "path"},
            "owner": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["signers"] and not p["trusted_keys"]:
        module.fail_json(msg="signers needs trusted_keys, the directory of their public keys (*.asc)")
    cfg = offsite.OffsiteConfig(
        bucket=p["bucket"],
        prefix=p["prefix"],
        endpoint_url=p["endpoint_url"],
        region=p["region"],
        access_key_id=p["access_key_id"],
        secret_access_key=p["secret_access_key"],
    )
    try:
        if module.check_mode:
            sets = offsite.remote_sets(offsite.client(cfg), cfg)
            chosen = sets[-1].id if sets and p["backup_id"] == "latest" else p["backup_id"]
            module.exit_json(changed=False, id=chosen, remote_sets=[s.id for s in sets])
        with contextlib.ExitStack() as stack:
            check = None
            if p["signers"]:
                trusted = stack.enter_context(keyring(p["trusted_keys"]))

                def check(set_info):
                    verify_set(set_info, trusted, p["signers"])

            got, skipped = offsite.fetch_good_set(cfg, p["backup_id"], p["dest"], check=check)
        if p["owner"]:
            give_to_backup_user(Config(backup_user=p["owner"]), got.path)
    except BackupError as error:
        module.fail_json(msg=error.message, failed_check=error.check)
    except Exception as error:  # botocore: unreachable endpoint, denied access
        module.fail_json(msg=f"cannot read {cfg.where()}: {type(error).__name__}: {error}; check the endpoint and keys")
    module.exit_json(changed=True, id=got.id, path=got.path, size=got.size, created_at=got.created_at, skipped=skipped)


if __name__ == "__main__":
    main()
