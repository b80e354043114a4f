"""The settings of a host's backups (config.json), the error every step raises, and the bot's .env."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime


class BackupError(Exception):
    """A failure with the name of the check or step that failed and what the operator should do."""

    def __init__(self, check: str, message: str):
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


@dataclass
class Config:
    backup_dir: str = "/home/tradingbot/backups"
    bot_home: str = "/home/tradingbot/mojo-trading-bot"
    wallet_path: str = "/home/tradingbot/.config/solana/id.json"
    # The system user the backups run as (never the bot's): it owns the sets; it reads the bot's files through
    # CAP_DAC_READ_SEARCH only (its systemd unit, or the privilege drop of `mojorust-backup` run as root).
    backup_user: str = "mojorust-backup"
    # Keys: files owned by root, readable by the backup user's group (the signing key) or by all (public keys);
    # every run imports them into a private keyring that lives as long as the run. The bot's uid reads none of them.
    signing_key_file: str = "/etc/mojorust-backup/signing-key.asc"
    operator_keys_file: str = "/etc/mojorust-backup/operator-keys.asc"
    # Public keys (*.asc) of the hosts whose sets may be verified and restored here, this host's own among them;
    # a revoked key's file carries its revocation, so the sets it signed are refused.
    trusted_keys_dir: str = "/etc/mojorust-backup/trusted-keys"
    recipients: list[str] = field(default_factory=list)
    signing_key: str = ""
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_name: str = "trading_db"
    db_user: str = "trading_user"
    log_days: int = 7
    keep_days: int = 30
    min_keep: int = 7
    zstd_level: int = 1
    alert_api_base: str = ""
    host: str = field(default_factory=socket.gethostname)
    # Prometheus textfile (node exporter) rewritten with every status change; empty writes none.
    metrics_file: str = ""
    # check-stale alerts when the newest good set (or off-site copy) is older than this.
    stale_hours: float = 26.0

    @property
    def env_file(self) -> str:
        return os.path.join(self.bot_home, ".env")

    @classmethod
    def from_dict(cls, data: dict) -> Config:
        return settings_from_dict(cls, data, "setting")


def settings_from_dict(cls, data: dict, what: str):
    """A settings dataclass from a mapping; a key it does not know (a typo) is an error naming it."""
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise BackupError("config", f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**data)


def read_env(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            key = key.strip().removeprefix("export ").strip()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key] = value
    return values


def fingerprint(secret: str) -> str:
    """What may be shown of a secret: the first 16 hex digits of its sha256 (the bot's /health uses the same)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
