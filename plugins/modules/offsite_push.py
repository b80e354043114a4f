#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""offsite_push: copy every new encrypted backup set to S3-compatible storage, verified."""

from __future__ import annotations

DOCUMENTATION = r"""
module: offsite_push
short_description: Copy new encrypted backup sets off-site (S3, B2, GCS), verified, then apply off-site retention
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Pushes every good local set that is not complete in the bucket yet (newest first) - only the set's four files,
    whose database and files are encrypted - each object uploaded with a SHA-256 checksum and compared afterwards
    with the checksum computed from the local file. An interrupted multipart upload is resumed.
  - Transient errors (endpoint unreachable, 5xx) are retried with exponential backoff; when the attempts are used
    up the task fails, an alert is sent, the local sets stay and nothing is deleted off-site.
  - Then off-site retention (C(keep_days), never fewer than the newest C(min_keep) complete sets); objects an object
    lock protects are reported, not forced.
  - The same code as C(mojorust-backup offsite-push), run by C(mojorust-offsite.service) after each backup.
options:
  config_file:
    description: The backup settings deployed by the backup role.
    type: path
    default: /etc/mojorust-backup/config.json
  offsite_config_file:
    description: The off-site settings and credentials deployed by the offsite role (0600).
    type: path
    default: /etc/mojorust-backup/offsite.json
  settings:
    description:
      - Off-site settings that override the file for this run (for example C(attempts)). The keys are refused here;
        they come only from the 0600 file, so they never travel through task arguments or logs.
    type: dict
    default: {}
  bucket:
    description:
      - What the bucket should be before the push, for keys that may manage it. Omit for write-only keys.
      - C(object_lock_days) > 0 needs a bucket created with object lock (C(create) does that) and makes every new
        object version undeletable for that many days, so a compromised host cannot erase history. C(COMPLIANCE)
        mode (the default) holds against every key, the host's included; C(GOVERNANCE) yields to a key allowed
        C(s3:BypassGovernanceRetention) - never give that to the host.
    type: dict
    suboptions:
      create: {description: Create the bucket when missing., type: bool, default: false}
      versioning: {description: Turn versioning on., type: bool, default: false}
      object_lock_days: {description: Default retention in days (0 = none)., type: int, default: 0}
      object_lock_mode:
        description: The default retention's mode.
        type: str
        choices: [COMPLIANCE, GOVERNANCE]
        default: COMPLIANCE
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: Lists the bucket and reports the sets it would push (C(changed) if any); uploads and deletes nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: New sets are off-site
  mojorust.dr.offsite_push:
  become: true
  become_user: tradingbot
"""

RETURN = r"""
pushed:
  description: Sets uploaded in this run, with the files uploaded and their bytes.
  returned: success
  type: list
  elements: dict
remote_sets:
  description: Complete sets in the bucket after retention, oldest first.
  returned: success
  type: list
  elements: str
deleted:
  description: Sets removed by off-site retention.
  returned: success
  type: list
  elements: str
kept_by_object_lock:
  description: Sets retention would have removed but the bucket's object lock protects.
  returned: success
  type: list
  elements: str
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.backup import offsite
from ansible_collections.mojorust.dr.plugins.module_utils.backup.config import BackupError
from ansible_collections.mojorust.dr.plugins.module_utils.backup.sets import list_sets
from ansible_collections.mojorust.dr.plugins.module_utils.backup_module import load_config


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config_file": {"type": "path", "default": "/etc/mojorust-backup/config.json"},
            "offsite_config_file": {"type": "path", "default": "/etc/mojorust-backup/offsite.json"},
            "settings": {"type": "dict", "default": {}},
            "bucket": {
                "type": "dict",
                "options": {
                    "create": {"type": "bool", "default": False},
                    "versioning": {"type": "bool", "default": False},
                    "object_lock_days": {"type": "int", "default": 0},
                    "object_lock_mode": {
                        "type": "str",
                        "choices": ["COMPLIANCE", "GOVERNANCE"],
                        "default": "COMPLIANCE",
                    },
                },
            },
        },
        supports_check_mode=True,
    )
    backup = load_config(module)
    secret_settings = sorted({"access_key_id", "secret_access_key"} & set(module.params["settings"]))
    if secret_settings:
        carried = ", ".join(secret_settings)
        module.fail_json(msg=f"settings may not carry {carried}: keys come only from the off-site settings file")
    try:
        with open(module.params["offsite_config_file"], encoding="utf-8") as handle:
            remote = offsite.OffsiteConfig.from_dict({**json.load(handle), **module.params["settings"]})
    except OSError as error:
        module.fail_json(msg=f"cannot read the off-site settings ({error}); run playbooks/offsite.yml first")
    except BackupError as error:
        module.fail_json(msg=error.message, failed_check=error.check)
    progress: list[str] = []
    try:
        if module.check_mode:
            there = {s.id for s in offsite.remote_sets(offsite.client(remote), remote)}
            missing = [s.id for s in list_sets(backup.backup_dir) if s.good and s.id not in there]
            module.exit_json(changed=bool(missing), would_push=missing, remote_sets=sorted(there))
        bucket_changes = []
        if module.params["bucket"]:
            wanted = module.params["bucket"]
            bucket_changes = offsite.ensure_bucket(
                offsite.client(remote),
                remote,
                wanted["create"],
                wanted["versioning"],
                wanted["object_lock_days"],
                wanted["object_lock_mode"],
            )
        result = offsite.push_all(remote, backup, progress=progress.append)
        result["bucket_changes"] = bucket_changes
    except BackupError as error:
        module.fail_json(
            msg=f"off-site push failed at {error.check}: {error.message}", failed_check=error.check, progress=progress
        )
    except Exception as error:  # botocore errors in check mode's listing
        module.fail_json(msg=f"cannot list {remote.where()}: {type(error).__name__}: {error}")
    changed = bool(result["pushed"] or result["deleted"] or result["bucket_changes"])
    module.exit_json(changed=changed, progress=progress, **result)


if __name__ == "__main__":
    main()
