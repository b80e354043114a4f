"""What the last runs did: the status file, its Prometheus metrics, staleness, and the Telegram alert."""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
import urllib.request
from datetime import datetime

from .config import Config, read_env
from .pipeline import atomic_write

STATUS_FILE = ".status.json"


def write_status(cfg: Config, status: dict) -> None:
    path = os.path.join(cfg.backup_dir, STATUS_FILE)
    previous = {}
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        pass
    previous.update(status)
    atomic_write(path, json.dumps(previous, indent=2, sort_keys=True) + "\n")
    if cfg.metrics_file:
        # Metrics must never fail a backup; check-stale still reads the status file.
        with contextlib.suppress(OSError):
            atomic_write(cfg.metrics_file, render_metrics(previous))


def _epoch(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def render_metrics(status: dict) -> str:
    """The status file as Prometheus text: when the last good set and off-site copy were made, size, duration,
    and whether the last runs succeeded. Absent values are left out (no made-up zeros)."""
    gauges = [
        (
            "mojorust_backup_last_success_timestamp_seconds",
            "Time of the newest good set.",
            _epoch(status.get("last_success_at")),
        ),
        (
            "mojorust_backup_last_run_ok",
            "1 when the last backup run succeeded.",
            None if "last_result" not in status else int(status["last_result"] == "ok"),
        ),
        ("mojorust_backup_last_size_bytes", "Size of the newest good set.", status.get("last_size_bytes")),
        (
            "mojorust_backup_last_duration_seconds",
            "How long the newest good set took.",
            status.get("last_duration_seconds"),
        ),
        (
            "mojorust_backup_offsite_last_success_timestamp_seconds",
            "Time of the last successful off-site push.",
            _epoch(status.get("offsite_last_success_at")),
        ),
        (
            "mojorust_backup_offsite_last_run_ok",
            "1 when the last off-site push succeeded.",
            None if "offsite_last_result" not in status else int(status["offsite_last_result"] == "ok"),
        ),
        (
            "mojorust_backup_verify_last_ok",
            "1 when the last verification of a set passed every check.",
            None if "verify_last_result" not in status else int(status["verify_last_result"] == "ok"),
        ),
    ]
    lines = []
    for name, help_text, value in gauges:
        if value is None:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def stale_problems(cfg: Config, now: datetime, offsite: bool) -> list[str]:
    """Why the backups are stale, if they are: no good set, or the newest good set (or off-site copy, when pushed
    off-site) older than cfg.stale_hours. The signal most backup tools lack: silence is not success."""
    try:
        with open(os.path.join(cfg.backup_dir, STATUS_FILE), encoding="utf-8") as handle:
            status = json.load(handle)
    except (OSError, ValueError):
        status = {}
    limit = cfg.stale_hours * 3600
    problems = []
    for key, what in [("last_success_at", "good backup set")] + (
        [("offsite_last_success_at", "off-site copy")] if offsite else []
    ):
        when = status.get(key)
        if not when:
            problems.append(f"no {what} recorded in {cfg.backup_dir}")
            continue
        age = (now - datetime.fromisoformat(when)).total_seconds()
        if age > limit:
            problems.append(f"the newest {what} is {age / 3600:.1f} h old (limit {cfg.stale_hours:g} h), from {when}")
    return problems


def send_alert(cfg: Config, text: str) -> str:
    """Best effort Telegram message; returns '' or why it was not delivered (never the token)."""
    if not cfg.alert_api_base:
        return "alerts are not configured"
    try:
        env = read_env(cfg.env_file)
        body = json.dumps({"chat_id": env["TELEGRAM_CHAT_ID"], "text": text}).encode()
        request = urllib.request.Request(
            f"{cfg.alert_api_base.rstrip('/')}/bot{env['TELEGRAM_BOT_TOKEN']}/sendMessage",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        # The standard library's opener: this code is also the host command mojorust-backup, which runs without
        # Ansible (so without ansible.module_utils.urls).
        with urllib.request.build_opener().open(request, timeout=5) as response:
            response.read()
        return ""
    except Exception as error:  # an alert that cannot be sent must not hide the failure it reports
        return f"alert not delivered: {type(error).__name__}"
