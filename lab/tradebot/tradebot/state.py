"""In-memory state shared by the trading loop and the HTTP server, and what is made of it:
the /health body, the /metrics text and the portfolio state file."""

import contextlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from . import VERSION

API_NAMES = ("helius", "quicknode", "jupiter")
EIGHT_PLACES = Decimal("0.00000001")


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class State:
    mode: str
    wallet_pubkey: str
    key_fingerprints: dict[str, str]
    portfolio_value: Decimal = Decimal(0)
    db_ok: bool = False
    breaker_open: bool = False
    db_errors_total: int = 0
    trades_total: int = 0
    last_trade_id: int | None = None
    last_trade_at: datetime | None = None
    open_positions: int = 0
    apis: dict[str, bool | None] = field(default_factory=lambda: dict.fromkeys(API_NAMES))
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def health(state: State) -> tuple[int, dict]:
    """HTTP status and body for GET /health: 200 only with the database up and the breaker closed."""
    with state.lock:
        ok = state.db_ok and not state.breaker_open
        body = {
            "status": "ok" if ok else "degraded",
            "db_ok": state.db_ok,
            "last_trade_at": iso(state.last_trade_at),
            "last_trade_id": state.last_trade_id,
            "trades_total": state.trades_total,
            "open_positions": state.open_positions,
            "portfolio_value": float(state.portfolio_value),
            "circuit_breaker": "open" if state.breaker_open else "closed",
            "mode": state.mode,
            "apis": dict(state.apis),
            "key_fingerprints": dict(state.key_fingerprints),
            "wallet_pubkey": state.wallet_pubkey,
            "version": VERSION,
            "pid": state.pid,
            "started_at": iso(state.started_at),
        }
    return (200 if ok else 503), body


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def render_metrics(state: State) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines = []

    def family(name: str, kind: str, text: str, samples) -> None:
        samples = samples if isinstance(samples, list) else [("", samples)]
        lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    with state.lock:
        last = state.last_trade_at.timestamp() if state.last_trade_at else 0
        family("tradebot_up", "gauge", "1 while the bot process runs.", 1)
        family("tradebot_db_up", "gauge", "1 if the last database operation succeeded.", int(state.db_ok))
        family("tradebot_trades_total", "counter", "Trades in the database.", state.trades_total)
        family("tradebot_last_trade_timestamp_seconds", "gauge", "Unix time of the last trade.", last)
        family("tradebot_portfolio_value", "gauge", "Portfolio value in USDC.", state.portfolio_value)
        family("tradebot_open_positions", "gauge", "Positions with status open.", state.open_positions)
        family("tradebot_circuit_breaker_open", "gauge", "1 while the breaker is open.", int(state.breaker_open))
        family("tradebot_db_errors_total", "counter", "Database errors since start.", state.db_errors_total)
        apis = [(f'{{api="{_label(name)}"}}', int(bool(up))) for name, up in state.apis.items()]
        family("tradebot_api_up", "gauge", "1 if the last health check succeeded (0 before the first).", apis)
        info = [(f'{{version="{_label(VERSION)}",mode="{_label(state.mode)}"}}', 1)]
        family("tradebot_info", "gauge", "Version and mode of the bot.", info)
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    return repr(float(value)) if isinstance(value, float | Decimal) else str(value)


def state_payload(state: State) -> dict:
    with state.lock:
        return {
            "portfolio_value": float(state.portfolio_value),
            "updated_at": iso(datetime.now(UTC)),
            "last_trade_id": state.last_trade_id,
            "trades_total": state.trades_total,
            "open_positions": state.open_positions,
            "wallet_pubkey": state.wallet_pubkey,
        }


def write_state_file(path: Path, payload: dict) -> None:
    """Atomic replace: a temp file (mode 0600) in the same directory, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_state_file(path: Path) -> dict | None:
    """The State fields saved in the state file, or None if it is missing or has no usable value."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        value = saved["portfolio_value"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        fields = {"portfolio_value": Decimal(str(value)).quantize(EIGHT_PLACES)}
    except (OSError, ValueError, KeyError, TypeError, InvalidOperation):
        return None
    for key in ("last_trade_id", "trades_total", "open_positions"):
        if isinstance(saved.get(key), int) and not isinstance(saved[key], bool):
            fields[key] = saved[key]
    return fields if fields["portfolio_value"].is_finite() else None
