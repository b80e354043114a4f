"""Action plugin vault_update: new values into an Ansible Vault file of variables, which stays encrypted. Runs on the
controller (it needs Ansible's vault library); documentation in plugins/modules/vault_update.py."""

from __future__ import annotations

import json
import os
import tempfile

import yaml
from ansible.errors import AnsibleError
from ansible.parsing.vault import VaultLib, VaultSecret, is_encrypted
from ansible.plugins.action import ActionBase
from ansible_collections.mojorust.dr.plugins.module_utils.vault_values import VaultError, update


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        # An exception would reach the output with its message, and no_log does not censor that: the message could
        # hold a value. Every failure is turned into one that names no value.
        try:
            return self._update(result)
        except Exception as error:  # any exception: its message may hold a value
            return result | {"failed": True, "msg": f"vault_update failed ({type(error).__name__}); no detail shown"}

    def _update(self, result: dict) -> dict:
        _spec, args = self.validate_argument_spec(
            argument_spec={
                "path": {"type": "path", "required": True},
                "vault_password_file": {"type": "path", "required": True},
                "values": {"type": "dict", "required": True, "no_log": True},
                "create": {"type": "bool", "default": False},
            }
        )
        path, password_file = args["path"], args["vault_password_file"]
        try:
            with open(password_file, "rb") as handle:
                secret = VaultSecret(handle.read().strip())
            with open(path, "rb") as handle:
                text = handle.read()
        except OSError as error:
            return result | {"failed": True, "msg": f"cannot read {error.filename}: {error.strerror}"}
        if not is_encrypted(text):
            return result | {
                "failed": True,
                "msg": f"{path} is not an Ansible Vault file: refusing to write secrets into it in clear",
            }
        vault = VaultLib([("default", secret)])
        try:
            data = yaml.safe_load(vault.decrypt(text)) or {}
        except (AnsibleError, yaml.YAMLError) as error:
            return result | {"failed": True, "msg": f"cannot decrypt {path} with {password_file}: {error}"}
        # Plain str, int, list and dict (templated values carry Ansible's tags, which YAML cannot represent).
        values = json.loads(json.dumps(args["values"]))
        try:
            changed, _previous = update(data, values, args["create"])
        except VaultError as error:
            return result | {"failed": True, "msg": str(error)}
        if changed and not self._task.check_mode:
            try:
                plaintext = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
            except yaml.YAMLError:  # its message would hold a value
                return result | {"failed": True, "msg": f"the new content of {path} cannot be written as YAML"}
            ciphertext = vault.encrypt(plaintext, secret)
            fd, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".vault-update-")
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
        return result | {"changed": bool(changed), "changed_keys": changed}
