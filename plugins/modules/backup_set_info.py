#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""backup_set_info: the backup sets on a host, and which one a restore would take (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_set_info
short_description: List the backup sets on the host and choose one (the newest good, the newest before a moment, an id)
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Lists the published sets in the backup directory, oldest first, each with its id, creation time, size and
    whether it is good. A set marked C(BAD) (failed a verification, or made before a breach) and a set whose id lies
    in the future (planted, or a wrong clock) are not good, and are never chosen.
  - Chooses one, the way every restore chooses, so that no playbook chooses by its own rule - C(latest) (the newest
    good set), a set id, or with I(before) the newest good set made before that moment (a breach's clean set). Fails
    naming the sets there are when none qualifies. Nothing is verified here; the restore verifies what it takes.
extends_documentation_fragment:
  - mojorust.dr.backup
  - ansible.builtin.action_common_attributes
options:
  before:
    description:
      - Choose the newest good set made before this moment, a set id (C(20261126T010203Z)) or the output of the
        C(mojorust.dr.moment_set_id) filter; I(backup_id) is then ignored.
    type: str
  settings:
    description: Settings that override the I(config_file), e.g. C(backup_dir) of a set downloaded from off-site.
    type: dict
    default: {}
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: Read-only; the same in check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: The newest set made before the breach
  mojorust.dr.backup_set_info:
    before: "{{ breach_time | mojorust.dr.moment_set_id }}"
  register: clean
"""

RETURN = r"""
sets:
  description: Every published set, oldest first (id, created_at, size, sha256, good, path).
  returned: always
  type: list
  elements: dict
chosen:
  description: The set chosen (same fields).
  returned: success
  type: dict
id:
  description: The chosen set's id.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.backup.config import BackupError
from ansible_collections.mojorust.dr.plugins.module_utils.backup.sets import list_sets, resolve_set, set_info_dict
from ansible_collections.mojorust.dr.plugins.module_utils.backup_module import CONFIG_OPTIONS, load_config


def main() -> None:
    module = AnsibleModule(
        argument_spec={**CONFIG_OPTIONS, "before": {"type": "str"}, "settings": {"type": "dict", "default": {}}},
        supports_check_mode=True,
    )
    cfg = load_config(module, module.params["settings"])
    listed = [set_info_dict(s) for s in list_sets(cfg.backup_dir)]
    try:
        chosen = resolve_set(cfg.backup_dir, module.params["backup_id"], module.params["before"])
    except BackupError as error:
        module.fail_json(msg=error.message, failed_check=error.check, sets=listed)
    module.exit_json(changed=False, sets=listed, chosen=set_info_dict(chosen), id=chosen.id)


if __name__ == "__main__":
    main()
