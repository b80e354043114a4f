"""Options shared by the backup modules."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  config_file:
    description:
      - The backup settings the backup role deployed on the host (the same file the systemd timer uses),
        so a set made from Ansible and one made by the timer are the same.
    type: path
    default: /etc/mojorust-backup/config.json
  backup_id:
    description: A set id (C(20261125T020000Z)) or C(latest), the newest good set.
    type: str
    default: latest
"""
