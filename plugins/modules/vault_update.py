#!/usr/bin/python
"""vault_update: new values into an Ansible Vault file of variables, which stays encrypted."""

from __future__ import annotations

DOCUMENTATION = r"""
module: vault_update
short_description: Set values in an Ansible Vault encrypted YAML file of variables and write it back encrypted
version_added: 0.2.0
author: mojorust.dr maintainers
description:
  - Runs on the workstation (C(delegate_to localhost)). Decrypts I(path) with the password in I(vault_password_file),
    sets each dotted key of I(values) (for example C(vault_env.HELIUS_API_KEY)), encrypts the result with the same
    password and replaces the file atomically, mode 0600. The plaintext never touches the disk.
  - Returns the names of the keys that changed and, only to a C(no_log) task, their previous values (for the
    incident record's encrypted part).
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
attributes:
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
previous: {description: Their previous values (run the task with no_log)., returned: success, type: dict}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


class VaultError(Exception):
    pass


def set_path(data: dict, dotted: str, value, create: bool):
    """Set data[a][b][c] for 'a.b.c'; return the previous value (None when it did not exist)."""
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            if not create:
                raise VaultError(f"{dotted}: {part} is not in the vault file (create: true adds it)")
            node[part] = {}
        node = node[part]
    if last not in node and not create:
        raise VaultError(f"{dotted}: {last} is not in the vault file (create: true adds it)")
    previous = node.get(last)
    node[last] = value
    return previous


def update(data: dict, values: dict, create: bool) -> tuple[list[str], dict]:
    changed, previous = [], {}
    for dotted, value in sorted(values.items()):
        old = set_path(data, dotted, value, create)
        if old != value:
            changed.append(dotted)
            previous[dotted] = old
    return changed, previous


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "vault_password_file": {"type": "path", "required": True, "no_log": False},
            "values": {"type": "dict", "required": True, "no_log": True},
            "create": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    import yaml
    from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted

    path, password_file = module.params["path"], module.params["vault_password_file"]
    try:
        with open(password_file, "rb") as handle:
            secret = VaultSecret(handle.read().strip())
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError as error:
        module.fail_json(msg=f"cannot read {error.filename}: {error.strerror}")
    if not is_encrypted(text):
        module.fail_json(msg=f"{path} is not an Ansible Vault file: refusing to write secrets into it in clear")
    vault = VaultLib([("default", secret)])
    try:
        data = yaml.safe_load(vault.decrypt(text)) or {}
    except Exception as error:  # AnsibleError (wrong password) and YAML errors alike
        module.fail_json(msg=f"cannot decrypt {path} with {password_file}: {error}")
    try:
        changed, previous = update(data, module.params["values"], module.params["create"])
    except VaultError as error:
        module.fail_json(msg=str(error))
    if changed and not module.check_mode:
        ciphertext = vault.encrypt(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), secret)
        directory = os.path.dirname(os.path.abspath(path))
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".vault-update-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(ciphertext)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    module.exit_json(changed=bool(changed), changed_keys=changed, previous=previous)


if __name__ == "__main__":
    main()
