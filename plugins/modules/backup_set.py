#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""backup_set: make one encrypted, signed backup set on the host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_set
short_description: Make one encrypted, signed backup set of the bot's database and files
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Dumps the database from one consistent snapshot (pg_dump custom format, streamed through zstd and gpg, so
    no plaintext dump lands on disk) while counting and checksumming every table in the same snapshot; packs
    configuration (with its git history), C(.env), the wallet, the portfolio state and the last days of logs;
    encrypts to the operator's key(s), signs with the host's key, writes a manifest, verifies, and publishes
    the set with one rename. Then applies retention.
  - Runs the host's C(mojorust-backup create), the command C(mojorust-backup.timer) runs, with the same settings,
    as the backup user (never the bot's), reading the bot's files through C(CAP_DAC_READ_SEARCH) alone, signing
    with the root-owned key. Run it as root (C(become=true)); the command drops to the backup user itself.
  - One run at a time; a partial set left by a killed run is removed by the next one. A failure sends an
    alert, leaves every earlier set and the C(LAST_GOOD) marker untouched, and fails with the reason.
extends_documentation_fragment:
  - mojorust.dr.backup
  - ansible.builtin.action_common_attributes
options:
  backup_id:
    description: Not used; a new set's id is the current UTC time.
    type: str
    default: latest
  settings:
    description: Settings that override the I(config_file) for this run (for example C(backup_dir)).
    type: dict
    default: {}
  at:
    description: Make the set as of this UTC time (ISO 8601) instead of now - drills with a faked clock.
    type: str
  command:
    description: The host's backup command (installed by the backup role).
    type: path
    default: /usr/local/bin/mojorust-backup
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: A backup is a one-shot action; in check mode it reports C(changed) and does nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Make a backup set now
  mojorust.dr.backup_set:
  become: true
  register: backup
"""

RETURN = r"""
id:
  description: The new set's id.
  returned: success
  type: str
path:
  description: The set's directory.
  returned: success
  type: str
size:
  description: Bytes of the set's archive.
  returned: success
  type: int
sha256:
  description: The archive's sha256.
  returned: success
  type: str
tables:
  description: Row count and content checksum per table, as in the manifest.
  returned: success
  type: dict
retention:
  description: Set ids kept and deleted by retention.
  returned: success
  type: dict
duration_seconds:
  description: Wall time of the run.
  returned: success
  type: float
progress:
  description: What the run did, step by step.
  returned: always
  type: list
  elements: str
"""

import getpass
import json
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.backup_module import CONFIG_OPTIONS, load_settings


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **CONFIG_OPTIONS,
            "settings": {"type": "dict", "default": {}},
            "at": {"type": "str"},
            "command": {"type": "path", "default": "/usr/local/bin/mojorust-backup"},
        },
        supports_check_mode=True,
    )
    settings = load_settings(module, module.params["settings"])
    if module.check_mode:
        module.exit_json(changed=True, progress=["check mode: a backup set would be made"])
    owner = f"ansible ({getpass.getuser()}@{socket.gethostname()})"
    argv = [module.params["command"], "create", "--json", "--owner", owner, "--config", "-"]
    if module.params["at"]:
        argv += ["--at", module.params["at"]]
    rc, out, err = module.run_command(argv, data=json.dumps(settings), binary_data=True)
    lines = out.strip().splitlines()
    progress = lines[:-1] if rc == 0 else lines
    if rc != 0:
        # the command's last line: "mojorust-backup: <check> failed: <what happened and what to do>"
        last = (lines or [err.strip() or f"exit {rc}"])[-1].removeprefix("mojorust-backup: ")
        check, _sep, why = last.partition(" failed: ") if " failed: " in last else ("create", "", last)
        module.fail_json(msg=f"backup failed at {check}: {why}", failed_check=check, progress=progress,
                         stderr=err.strip())  # fmt: skip
    try:
        summary = json.loads(lines[-1])
    except (IndexError, ValueError):
        module.fail_json(msg=f"{module.params['command']} printed no result: {out.strip()[-300:]}", stderr=err)
    module.exit_json(changed=True, progress=progress, **summary)


if __name__ == "__main__":
    main()
