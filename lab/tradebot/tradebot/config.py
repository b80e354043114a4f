"""trading.toml, .env and the wallet keypair. Error messages name the file and the problem, never a value."""

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

TOML_FILE = "config/trading.toml"
ENV_FILE = ".env"
ENV_KEYS = (
    "HELIUS_API_KEY",
    "QUICKNODE_API_KEY",
    "INFISICAL_TOKEN",
    "DB_PASSWORD",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
)
MODES = ("paper", "live", "drill")
B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class ConfigError(Exception):
    """A refusal to start; str() is '<file>: <problem>'."""


def _text(v):
    return isinstance(v, str) and v.strip() != ""


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v):
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v):
    return _number(v) and v > 0


TEXT = (_text, "a non-empty string")
URL = (lambda v: _text(v) and v.startswith(("http://", "https://")), "an http:// or https:// URL")
PORT = (lambda v: _int(v) and 1 <= v <= 65535, "an integer (1-65535)")
SCHEMA = {
    "bot": {
        "name": TEXT,
        "mode": (lambda v: v in MODES, "one of " + ", ".join(f'"{m}"' for m in MODES)),
        "trade_interval_seconds": (_positive, "a number > 0"),
        "api_poll_seconds": (_positive, "a number > 0"),
    },
    "database": {"host": TEXT, "port": PORT, "name": TEXT, "user": TEXT},
    "server": {"listen": TEXT, "port": PORT},
    "apis": {"helius_url": URL, "quicknode_url": URL, "jupiter_url": URL},
    "alerts": {"enabled": (lambda v: isinstance(v, bool), "true or false"), "telegram_api_base": URL},
    "wallet": {"keypair_path": TEXT},
    "risk": {
        "max_open_positions": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
        "circuit_breaker_max_errors": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    },
    "portfolio": {
        "state_file": TEXT,
        "initial_value": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    },
}


def validate_settings(data: dict) -> list[str]:
    """All problems in a parsed trading.toml, in schema order; empty when valid."""
    errors = [
        f"unknown section [{name}]" if isinstance(value, dict) else f"unknown top-level key {name}"
        for name, value in data.items()
        if name not in SCHEMA
    ]
    for section, keys in SCHEMA.items():
        table = data.get(section)
        if table is None:
            errors.append(f"missing section [{section}]")
            continue
        if not isinstance(table, dict):
            errors.append(f"[{section}] must be a table")
            continue
        errors += [f"[{section}] unknown key {key}" for key in table if key not in keys]
        for key, (check, what) in keys.items():
            if key not in table:
                errors.append(f"[{section}] missing key {key}")
            elif not check(table[key]):
                errors.append(f"[{section}] {key} must be {what}")
    return errors


_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and lines starting with # skipped; values optionally in '...' or "..."."""
    env = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(line)
        if not match:
            raise ConfigError(f"{ENV_FILE}: line {number}: expected KEY=VALUE")
        key, value = match.groups()
        if value[:1] in ("'", '"'):
            end = value.find(value[0], 1)
            if end < 0:
                raise ConfigError(f"{ENV_FILE}: line {number}: unterminated quote in value of {key}")
            if value[end + 1 :].strip()[:1] not in ("", "#"):
                raise ConfigError(f"{ENV_FILE}: line {number}: text after the closing quote of {key}")
            value = value[1:end]
        else:
            value = value.strip()  # verbatim: a '#' inside an unquoted value (a password) is kept
        env[key] = value
    return env


def check_env(env: dict[str, str]) -> None:
    missing = [key for key in ENV_KEYS if key not in env]
    if missing:
        raise ConfigError(f"{ENV_FILE}: missing required key{'s' * (len(missing) > 1)} {', '.join(missing)}")
    empty = [key for key in ENV_KEYS if not env[key].strip()]
    if empty:
        raise ConfigError(f"{ENV_FILE}: empty value for {', '.join(empty)}")


def b58encode(data: bytes) -> str:
    """Base58 with the Bitcoin alphabet (what Solana uses for public keys)."""
    number, out = int.from_bytes(data, "big"), ""
    while number:
        number, rest = divmod(number, 58)
        out = B58_ALPHABET[rest] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _read(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not valid UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror})") from None


def load_keypair(path: Path) -> str:
    """Validate a solana-keygen keypair file (64 integers 0-255); return the base58 public key."""
    try:
        data = json.loads(_read(path, str(path)))
    except ValueError:
        raise ConfigError(f"{path}: not valid JSON") from None
    if not isinstance(data, list) or len(data) != 64 or not all(_int(b) and 0 <= b <= 255 for b in data):
        raise ConfigError(f"{path}: must be a JSON array of 64 integers 0-255 (solana-keygen format)")
    return b58encode(bytes(data[32:]))


@dataclass(frozen=True)
class Config:
    home: Path
    settings: dict
    env: dict
    wallet_pubkey: str

    def path(self, value: str) -> Path:
        """A path from the config, relative to home unless absolute."""
        return self.home / Path(value).expanduser()

    @property
    def fingerprints(self) -> dict[str, str]:
        return {key: fingerprint(self.env[key]) for key in ENV_KEYS}

    @property
    def secrets(self) -> list[str]:
        """Values that must never reach a log line (the chat id is an address, not a secret)."""
        return [self.env[key] for key in ENV_KEYS if key != "TELEGRAM_CHAT_ID"]


def load_config(home: str | Path) -> Config:
    home = Path(home)
    try:
        settings = tomllib.loads(_read(home / TOML_FILE, TOML_FILE))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{TOML_FILE}: not valid TOML ({exc})") from None
    errors = validate_settings(settings)
    if errors:
        raise ConfigError(f"{TOML_FILE}: " + "; ".join(errors))
    env = parse_env(_read(home / ENV_FILE, ENV_FILE))
    check_env(env)
    config = Config(home, settings, env, "")
    pubkey = load_keypair(config.path(settings["wallet"]["keypair_path"]))
    return Config(home, settings, env, pubkey)
