#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""backup_verify: check a backup set the way the recovery plan does, in its order."""

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_verify
short_description: Verify a backup set - sha256, archive, signature, decryption, every file against the manifest
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Runs the recovery plan's integrity checks in its order and fails naming the first check that failed
    (C(sha256), C(archive), C(signature), C(decryption), C(contents)) with what to do about it.
  - The signature must come from one of I(signers) (by default the host's own signing key), whose public key is
    among the trusted keys of the host (C(trusted_keys_dir) of I(config_file)), neither revoked nor expired, and
    it must sign the set's own id (and host, with I(expected_host)); a renamed set, or one signed by any other
    key, fails.
  - Decryption and the contents check need I(decrypt_home), a keyring with the operator's secret key (bring it
    with the C(mojorust.dr.recovery_key) role and remove it afterwards); without it only the first three run.
  - Read-only, except that I(mark_bad) writes a C(BAD) marker into a set that failed, so that no later restore
    picks it as C(latest); nothing is ever deleted.
extends_documentation_fragment:
  - mojorust.dr.backup
  - ansible.builtin.action_common_attributes
options:
  decrypt_home:
    description: GnuPG home with the operator's secret key; omit to skip decryption and contents.
    type: path
  signers:
    description: Fingerprints of trusted signing keys; default is the C(signing_key) of I(config_file).
    type: list
    elements: str
  expected_host:
    description: The host the set must have been signed as (its signed host name); any when omitted.
    type: str
  mark_bad:
    description: Mark a set that fails as bad (never deleted; skipped by C(latest)).
    type: bool
    default: false
  check_database:
    description:
      - Also decrypt the database dump and compare it with the manifest (the largest member). A restore of the
        configuration only turns it off; it changes no other check.
    type: bool
    default: true
  settings:
    description: Settings that override the I(config_file), e.g. C(backup_dir) of a set downloaded from off-site.
    type: dict
    default: {}
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: Verifies in check mode too (it is read-only); I(mark_bad) is not applied.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Verify the newest set with the operator's key
  mojorust.dr.backup_verify:
    backup_id: latest
    decrypt_home: "{{ recovery_key_home }}"
  become: true
  become_user: tradingbot
"""

RETURN = r"""
id:
  description: The set verified.
  returned: always
  type: str
checks:
  description: Checks that passed, each with its name, detail and seconds.
  returned: always
  type: list
  elements: dict
manifest:
  description:
    - The set's manifest (sizes, sha256, row counts and checksums per table, portfolio value, key fingerprints;
      never a secret), when it was decrypted.
  returned: when decrypt_home is given
  type: dict
set:
  description: Where the set is, its size and sha256.
  returned: success
  type: dict
failed_check:
  description: Name of the check that failed.
  returned: failure
  type: str
"""

import os
from datetime import UTC, datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.backup.config import BackupError
from ansible_collections.mojorust.dr.plugins.module_utils.backup.gpg import keyring
from ansible_collections.mojorust.dr.plugins.module_utils.backup.sets import resolve_set, set_info_dict
from ansible_collections.mojorust.dr.plugins.module_utils.backup.status import write_status
from ansible_collections.mojorust.dr.plugins.module_utils.backup.verify import verify_set
from ansible_collections.mojorust.dr.plugins.module_utils.backup_module import CONFIG_OPTIONS, load_config


def record_result(module, cfg, set_id: str, result: str) -> None:
    """The outcome goes into the backup status (and so the metric mojorust_backup_verify_last_ok); best effort."""
    if module.check_mode:
        return
    try:
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        write_status(cfg, {"verify_last_at": now, "verify_last_id": set_id, "verify_last_result": result})
    except OSError:
        pass


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **CONFIG_OPTIONS,
            "decrypt_home": {"type": "path"},
            "signers": {"type": "list", "elements": "str"},
            "mark_bad": {"type": "bool", "default": False},
            "settings": {"type": "dict", "default": {}},
            "check_database": {"type": "bool", "default": True},
            "expected_host": {"type": "str"},
        },
        supports_check_mode=True,
    )
    cfg = load_config(module, module.params["settings"])
    signers = module.params["signers"] or [cfg.signing_key]
    try:
        chosen = resolve_set(cfg.backup_dir, module.params["backup_id"])
    except BackupError as error:
        module.fail_json(msg=error.message, failed_check=error.check, checks=[])
    checks: list[dict] = []
    found: dict = {}
    try:
        with keyring(cfg.trusted_keys_dir) as trusted:
            verify_set(
                chosen,
                trusted,
                signers,
                module.params["decrypt_home"],
                checks,
                found,
                module.params["check_database"],
                module.params["expected_host"],
            )
    except BackupError as error:
        record_result(module, cfg, chosen.id, f"{error.check}: {error.message}")
        marked = False
        if module.params["mark_bad"] and not module.check_mode:
            with open(os.path.join(chosen.path, "BAD"), "w", encoding="utf-8") as handle:
                handle.write(f"{error.check}: {error.message}\n")
            marked = True
        module.fail_json(
            msg=f"set {chosen.id}: check '{error.check}' failed: {error.message}",
            id=chosen.id,
            failed_check=error.check,
            checks=checks,
            marked_bad=marked,
        )
    record_result(module, cfg, chosen.id, "ok")
    module.exit_json(
        changed=False, id=chosen.id, checks=checks, set=set_info_dict(chosen), manifest=found.get("manifest")
    )


if __name__ == "__main__":
    main()
