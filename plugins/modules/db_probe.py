#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""db_probe: how the live database compares with a backup set's manifest, read-only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: db_probe
short_description: Probe the live bot database - reachable, and each table's rows against a manifest
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Connects as the bot's database user (password from the bot's C(.env)) and counts the rows of every table the
    manifest lists. A table that cannot be read (dropped, a damaged data file) is reported with its error; an
    unreachable database is reported, not failed, so a recovery can go on to replace it.
  - Read-only.
options:
  config_file:
    description: The backup settings deployed by the backup role (database connection, bot home).
    type: path
    default: /etc/mojorust-backup/config.json
  expected:
    description: The C(tables) of a manifest (from M(mojorust.dr.backup_verify)), name to C(rows) and C(checksum).
    type: dict
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: How far is the live database from the set
  mojorust.dr.db_probe:
    expected: "{{ verified.manifest.database.tables }}"
  become: true
  become_user: tradingbot
  register: probe
"""

RETURN = r"""
reachable:
  description: Whether the database accepted a connection.
  returned: always
  type: bool
tables:
  description: Per table, C(rows) or the C(error) reading it.
  returned: always
  type: dict
drift:
  description: Sentences describing each difference from the manifest (missing tables, row count deltas).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.backup.config import read_env
from ansible_collections.mojorust.dr.plugins.module_utils.backup.pgstats import probe_tables
from ansible_collections.mojorust.dr.plugins.module_utils.backup_module import load_config


def drift(expected: dict, probe: dict) -> list[str]:
    if not probe["reachable"]:
        return [f"database unreachable: {probe['error']}"]
    lines = []
    for name, record in sorted(expected.items()):
        seen = probe["tables"].get(name, {})
        if "error" in seen:
            lines.append(f"{name}: unreadable ({seen['error']})")
        elif seen.get("rows") != record["rows"]:
            delta = seen.get("rows", 0) - record["rows"]
            lines.append(f"{name}: {seen.get('rows')} rows, the set {record['rows']} ({delta:+d})")
    return lines


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config_file": {"type": "path", "default": "/etc/mojorust-backup/config.json"},
            "expected": {"type": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    cfg = load_config(module)
    password = read_env(cfg.env_file).get("DB_PASSWORD", "")
    probe = probe_tables(cfg, password, sorted(module.params["expected"]))
    module.exit_json(changed=False, drift=drift(module.params["expected"], probe), **probe)


if __name__ == "__main__":
    main()
