"""Reading the phase record the callback mojorust.dr.phase_record writes (one JSON file per ansible-playbook run):
the drill and the bench read each numbered step's time from it; nothing in the playbooks marks time."""

from __future__ import annotations

import json
from pathlib import Path


def newest_record(directory: Path, pattern: str, since: float = 0.0) -> dict | None:
    """The newest JSON file matching `pattern` under `directory` written after `since` (a time.time()), or None."""
    records = [p for p in directory.glob(pattern) if p.stat().st_mtime >= since]
    return json.loads(max(records, key=lambda p: p.stat().st_mtime).read_text()) if records else None


def step_seconds(record: dict | None, kind: str = "play", role: str | None = None) -> dict[str, float]:
    """Seconds of each timed step of a phase record: its numbered plays (kind "play"), or the numbered tasks of one
    role (kind "task", role "db_restore"), keyed "<n/N> <name>" without the play's "PLAYBOOK |" prefix:
    {"2/7 provision a new host": 41.2, ...}; {} without a record."""
    return {
        f"{phase['step']} {phase['name'].split('| ', 1)[-1]}": phase["seconds"]
        for phase in (record or {}).get("phases", [])
        if phase["kind"] == kind and (role is None or phase["role"] == role) and phase["seconds"] is not None
    }
