"""What the backup modules share on the Ansible side: reading the host's backup settings."""

from __future__ import annotations

import json

from ansible_collections.mojorust.dr.plugins.module_utils.backup.config import BackupError, Config

CONFIG_OPTIONS = {
    "config_file": {"type": "path", "default": "/etc/mojorust-backup/config.json"},
    "backup_id": {"type": "str", "default": "latest"},
}


def load_settings(module, overrides: dict | None = None) -> dict:
    """The settings the backup role deployed (the timer's), with overrides, checked; fails the module with a reason."""
    path = module.params["config_file"]
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        module.fail_json(msg=f"cannot read the backup settings {path} ({error}); run playbooks/backup.yml first")
    data.update(overrides or {})
    try:
        Config.from_dict(data)
    except BackupError as error:
        module.fail_json(msg=str(error))
    return data


def load_config(module, overrides: dict | None = None) -> Config:
    """The settings as a Config (see load_settings)."""
    return Config.from_dict(load_settings(module, overrides))
