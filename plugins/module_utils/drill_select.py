"""Which backup set a backup drill restores: a set from a window of ages (plan 4: "7-14 days ago"), chosen by a seed.

Pure (no I/O), so the choice is unit-tested and can be reproduced from the drill history: the same set ids, the
same reference time and the same seed always give the same set.

The rule, so anyone can recompute it by hand:
  candidates = the valid set ids (UTC timestamps, 20261125T020000Z) with now - max_days <= created <= now - min_days,
               sorted oldest first
  index      = int(first 16 hex digits of sha256(seed)) mod len(candidates)
  chosen     = candidates[index]
The default seed is the UTC date of the reference time (2026-11-26), so a rerun on the same day picks the same set.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

ID_FORMAT = "%Y%m%dT%H%M%SZ"


class DrillSelectError(ValueError):
    """Input that cannot be used (a bad window, a bad reference time); the message says what to give instead."""


def parse_set_id(name: str) -> datetime | None:
    """The UTC time of a set id, or None for anything that is not one (.partial-*, LAST_GOOD, a path's other parts).

    A path or an off-site key prefix is accepted: the last component is the id (/home/x/backups/20261125T020000Z).
    """
    base = str(name).rstrip("/").rsplit("/", 1)[-1]
    if len(base) != 16:
        return None
    try:
        return datetime.strptime(base, ID_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def set_ids(names) -> list[str]:
    """The valid set ids among names (paths, ids or other directory entries), unique, oldest first."""
    found = {}
    for name in names or []:
        moment = parse_set_id(name)
        if moment is not None:
            found[moment.strftime(ID_FORMAT)] = moment
    return sorted(found)


def parse_now(now) -> datetime:
    """The reference time: a datetime, an ISO 8601 text (UTC when no zone), a set id, or empty for the clock."""
    if now is None or now == "":
        return datetime.now(UTC).replace(microsecond=0)
    if isinstance(now, datetime):
        return now if now.tzinfo else now.replace(tzinfo=UTC)
    text = str(now).strip()
    as_id = parse_set_id(text)
    if as_id is not None:
        return as_id
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise DrillSelectError(
            f"reference time {text!r} is not a time: give ISO 8601 (2026-11-26T04:00:00Z) or a set id"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def default_seed(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%d")


def seeded_index(seed: str, count: int) -> int:
    """int(first 16 hex digits of sha256(seed)) mod count: stable across Python versions and machines."""
    if count < 1:
        raise DrillSelectError("nothing to choose from")
    return int(hashlib.sha256(str(seed).encode()).hexdigest()[:16], 16) % count


def _age_days(moment: datetime, now: datetime) -> float:
    return round((now - moment).total_seconds() / 86400, 1)


def choose_set(names, seed="", now="", min_days: float = 7, max_days: float = 14) -> dict:
    """The drill's choice, as a record for the history.

    Returns id (empty when the window holds no set), seed, now, window (from, to, min_days, max_days), candidates,
    sets (every valid id seen, with its age in days) and error (empty, or a message naming the sets there are).
    """
    try:
        min_days, max_days = float(min_days), float(max_days)
    except (TypeError, ValueError):
        raise DrillSelectError(f"the window must be numbers of days, not {min_days!r} and {max_days!r}") from None
    if min_days < 0 or max_days < min_days:
        raise DrillSelectError(
            f"the window {min_days:g}-{max_days:g} days is empty: give 0 <= min_days <= max_days (the plan: 7-14)"
        )
    reference = parse_now(now)
    seed = str(seed) if seed not in (None, "") else default_seed(reference)
    oldest, newest = reference - timedelta(days=max_days), reference - timedelta(days=min_days)
    ids = set_ids(names)
    candidates = [i for i in ids if oldest <= parse_set_id(i) <= newest]
    record = {
        "id": "",
        "seed": seed,
        "now": reference.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window": {
            "from": oldest.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": newest.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "min_days": min_days,
            "max_days": max_days,
        },
        "candidates": candidates,
        "index": None,
        "sets": [{"id": i, "age_days": _age_days(parse_set_id(i), reference)} for i in ids],
        "error": "",
    }
    if not candidates:
        there = ", ".join(f"{s['id']} ({s['age_days']:g} d)" for s in record["sets"]) or "none at all"
        record["error"] = (
            f"no backup set is {min_days:g}-{max_days:g} days old (made between {record['window']['from']} and "
            f"{record['window']['to']}); the sets there are: {there}. Check that the daily backup runs and that "
            f"retention keeps sets at least {max_days:g} days (backup_keep_days, offsite retention), or give "
            "another window (backup_drill_min_days, backup_drill_max_days)"
        )
        return record
    record["index"] = seeded_index(seed, len(candidates))
    record["id"] = candidates[record["index"]]
    return record
