#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""vault_update: new values into an Ansible Vault file of variables, which stays encrypted."""

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_update
short_description: Set values in an Ansible Vault encrypted YAML file of variables and write it back encrypted
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - An action plugin; it runs on the workstation whatever the host of the task. Decrypts I(path) with the password
    in I(vault_password_file), sets each dotted key of I(values) (for example C(vault_env.HELIUS_API_KEY)), encrypts
    the result with the same password and replaces the file atomically, mode 0600. The plaintext never touches the
    disk.
  - Returns the names of the keys that changed, never a value.
  - A key path that does not exist yet is refused unless I(create) is set, so a typo does not add a secret nobody
    reads.
options:
  path:
    description: The vault file.
    type: path
    required: true
  vault_password_file:
    description: File holding the vault password.
    type: path
    required: true
  values:
    description: Dotted key path to new value.
    type: dict
    required: true
  create:
    description: Allow key paths that do not exist yet.
    type: bool
    default: false
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
- name: New provider keys into the vault
  mojorust.dr.vault_update:
    path: inventories/production/group_vars/all/vault.yml
    vault_password_file: ~/.vault-pass
    values:
      vault_env.HELIUS_API_KEY: "{{ new_helius_key }}"
  delegate_to: localhost
  no_log: true
"""

RETURN = r"""
changed_keys: {description: Key paths whose value changed., returned: success, type: list, elements: str}
"""

# The work is done by the action plugin of the same name (plugins/action/vault_update.py) on the controller: it needs
# Ansible's own vault library, which a module cannot import. This file holds the documentation.

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    """Reached only when the module is run without its action plugin: say so (the arguments as documented)."""
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "vault_password_file": {"type": "path", "required": True},
            "values": {"type": "dict", "required": True, "no_log": True},
            "create": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="vault_update runs as an action plugin on the controller; call it as mojorust.dr.vault_update")


if __name__ == "__main__":
    main()
