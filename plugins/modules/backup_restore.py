#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""backup_restore: restore a backup set's database into a new database, or its files into a directory."""

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_restore
short_description: Restore a set's database beside the live one, or its files into a staging directory
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - With C(part=database), restores the set's dump into I(target_db), which must exist and be empty (never the
    live database), then compares every table's row count and content checksum with the manifest, and fails
    with the differences if any. Swapping it in is the caller's next, separate step.
  - With C(part=files), decrypts the set's files into I(dest) (created 0700), each checked against the
    manifest; copying them into place is the caller's next step.
  - The archive is opened once and checked first through that open file (sha256, archive, signature with the
    set's signed id and host, the manifest's id), and the restore reads that same open file, so what is restored is
    exactly what was verified, whatever happens to the path meanwhile.
  - Needs I(decrypt_home), a keyring holding the operator's secret key.
extends_documentation_fragment:
  - mojorust.dr.backup
  - ansible.builtin.action_common_attributes
options:
  part:
    description: What to restore.
    type: str
    choices: [database, files]
    required: true
  decrypt_home:
    description: GnuPG home with the operator's secret key.
    type: path
    required: true
  target_db:
    description: The new database to restore into (with C(part=database)).
    type: str
  dest:
    description: Staging directory for the files (with C(part=files)).
    type: path
  signers:
    description: Fingerprints of trusted signing keys; default is the C(signing_key) of I(config_file).
    type: list
    elements: str
  expected_host:
    description: The host the set must have been signed as (its signed host name); any when omitted.
    type: str
  jobs:
    description:
      - Parallel pg_restore jobs. 1 streams the dump straight from the set into pg_restore (no plaintext on
        disk; measured the faster on 2 cores); more decompress it to a private scratch file first.
    type: int
    default: 1
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: A restore is a one-shot action; in check mode it reports C(changed) and does nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Restore the newest set beside the live database
  mojorust.dr.backup_restore:
    part: database
    target_db: trading_db_restore_20261125T101500Z
    decrypt_home: "{{ recovery_key_home }}"
  become: true
"""

RETURN = r"""
id:
  description: The set restored.
  returned: success
  type: str
tables:
  description: Row count and checksum of every restored table (equal to the manifest's).
  returned: part=database
  type: dict
engine_seconds:
  description: Seconds spent in pg_restore alone.
  returned: part=database
  type: float
manifest:
  description:
    - Id, creation time, portfolio value, key fingerprints and config commit from the manifest.
    - database_system_id and database_wal_lsn, the PostgreSQL cluster the set was made from and the WAL position of
      its snapshot (null in sets made before 0.2.0).
  returned: success
  type: dict
checks:
  description: The checks passed before anything was restored (as C(mojorust.dr.backup_verify) returns them).
  returned: success
  type: list
  elements: dict
files:
  description: Files written under I(dest), with size and sha256.
  returned: part=files
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.backup.config import BackupError, read_env
from ansible_collections.mojorust.dr.plugins.module_utils.backup.gpg import keyring
from ansible_collections.mojorust.dr.plugins.module_utils.backup.restore import restore_database, restore_files
from ansible_collections.mojorust.dr.plugins.module_utils.backup.sets import resolve_set
from ansible_collections.mojorust.dr.plugins.module_utils.backup.verify import OpenedSet, verify_set
from ansible_collections.mojorust.dr.plugins.module_utils.backup_module import CONFIG_OPTIONS, load_config


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **CONFIG_OPTIONS,
            "part": {"type": "str", "choices": ["database", "files"], "required": True},
            "decrypt_home": {"type": "path", "required": True},
            "target_db": {"type": "str"},
            "dest": {"type": "path"},
            "jobs": {"type": "int", "default": 1},
            "signers": {"type": "list", "elements": "str"},
            "expected_host": {"type": "str"},
        },
        required_if=[("part", "database", ["target_db"]), ("part", "files", ["dest"])],
        supports_check_mode=True,
    )
    params = module.params
    cfg = load_config(module)
    if params["part"] == "database" and params["target_db"] == cfg.db_name:
        module.fail_json(msg=f"target_db must be a new database, not the live {cfg.db_name}: restores go beside it")
    try:
        chosen = resolve_set(cfg.backup_dir, params["backup_id"])
        if module.check_mode:
            module.exit_json(changed=True, id=chosen.id)
        signers = params["signers"] or [cfg.signing_key]
        with OpenedSet(chosen) as opened:
            # The checks that need no pass over the dump; the database restore checks the dump on its way in.
            with keyring(cfg.trusted_keys_dir) as trusted:
                found: dict = {}
                checks = verify_set(
                    opened, trusted, signers, params["decrypt_home"], found=found, check_database=False,
                    expected_host=params["expected_host"],
                )  # fmt: skip
            if params["part"] == "database":
                password = read_env(cfg.env_file).get("DB_PASSWORD", "")
                result = restore_database(
                    opened, params["decrypt_home"], cfg, password, params["target_db"], params["jobs"]
                )
                module.exit_json(changed=True, checks=checks, **result)
            files = restore_files(opened, params["decrypt_home"], params["dest"])
        kept = ("id", "created_at", "host", "portfolio_value", "key_fingerprints", "config_git_commit")
        manifest = {k: found["manifest"].get(k) for k in kept}
        # The PostgreSQL cluster the set was made from (its WAL archive's name) and the WAL position of its snapshot;
        # null in sets made before 0.2.0.
        database = found["manifest"].get("database", {})
        manifest["database_system_id"] = database.get("system_id")
        manifest["database_wal_lsn"] = database.get("wal_lsn")
        module.exit_json(changed=True, id=chosen.id, checks=checks, files=files, manifest=manifest)
    except BackupError as error:
        module.fail_json(msg=f"restore failed at {error.check}: {error.message}", failed_check=error.check)


if __name__ == "__main__":
    main()
