"""Backup sets on a disk: their layout, listing, the one rule that chooses a set, and retention."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from .config import BackupError, now_utc

ID_FORMAT = "%Y%m%dT%H%M%SZ"
MEMBERS = ("manifest.json.gpg", "db.dump.zst.gpg", "files.tar.zst.gpg")
LAST_GOOD = "LAST_GOOD"
# A set id later than now by more than this (clock skew) is refused: nothing made a set in the future.
FUTURE_SKEW = timedelta(minutes=5)


def parse_id(set_id: str) -> datetime:
    return datetime.strptime(set_id, ID_FORMAT).replace(tzinfo=UTC)


@dataclass
class SetInfo:
    id: str
    path: str
    created_at: str
    size: int
    sha256: str
    good: bool  # published, verified at publish time, and not marked bad since

    @property
    def tar(self) -> str:
        return os.path.join(self.path, f"mojorust-backup-{self.id}.tar")


def set_files(set_id: str) -> dict[str, str]:
    base = f"mojorust-backup-{set_id}"
    return {"tar": f"{base}.tar", "sha256": f"{base}.tar.sha256", "sig": f"{base}.tar.sig", "summary": f"{base}.json"}


def future_id_problem(set_id: str, now: datetime | None = None) -> str:
    """Why an id cannot be a real set's (later than now beyond FUTURE_SKEW), or ''."""
    now = now or now_utc()
    if parse_id(set_id) > now + FUTURE_SKEW:
        return (
            f"set {set_id} is dated in the future (now is {now.strftime(ID_FORMAT)}): no backup made it; it was "
            "planted or the host's clock is wrong. Use another set and find out where it came from"
        )
    return ""


def list_sets(backup_dir: str, now: datetime | None = None) -> list[SetInfo]:
    """Published sets, oldest first. Partial runs (.partial-*) and foreign entries are not sets; a set dated in the
    future (see future_id_problem) or marked BAD is listed as not good, so `latest` never picks it."""
    sets = []
    if not os.path.isdir(backup_dir):
        return sets
    now = now or now_utc()
    for name in sorted(os.listdir(backup_dir)):
        path = os.path.join(backup_dir, name)
        try:
            parse_id(name)
        except ValueError:
            continue
        names = set_files(name)
        if not all(os.path.exists(os.path.join(path, n)) for n in names.values()):
            continue
        try:
            with open(os.path.join(path, names["summary"]), encoding="utf-8") as handle:
                summary = json.load(handle)
        except (OSError, ValueError):
            summary = {}
        sets.append(
            SetInfo(
                id=name,
                path=path,
                created_at=summary.get("created_at", parse_id(name).isoformat()),
                size=int(summary.get("size", 0)),
                sha256=summary.get("sha256", ""),
                good=not os.path.exists(os.path.join(path, "BAD")) and not future_id_problem(name, now),
            )
        )
    return sets


def resolve_set(backup_dir: str, backup_id: str, before: str | None = None) -> SetInfo:
    """The set a restore takes, by one rule everywhere: `latest` is the newest good set; with `before` (a set id, or
    moment_set_id of a time) the newest good set made before it; else the set of that id. BackupError('select')
    naming the sets there are when none qualifies. Nothing is verified here; the restore verifies what it takes."""
    sets = list_sets(backup_dir)
    if before:
        try:
            parse_id(before)
        except ValueError:
            raise BackupError("select", f"before must be a set id like 20261126T010203Z, not {before!r}") from None
        earlier = [s for s in sets if s.good and s.id < before]
        if not earlier:
            listed = ", ".join(f"{s.id}{'' if s.good else ' (not good)'}" for s in sets) or "none"
            raise BackupError(
                "select",
                f"no good set in {backup_dir} was made before {before}; the sets there are: {listed}. Fetch an older "
                "one from off-site (offsite_fetch) or give another moment",
            )
        return earlier[-1]
    if backup_id == "latest":
        good = [s for s in sets if s.good]
        if not good:
            raise BackupError("select", f"no good backup set in {backup_dir}; run playbooks/backup.yml to make one")
        return good[-1]
    for candidate in sets:
        if candidate.id == backup_id:
            return candidate
    if not sets:
        raise BackupError(
            "select", f"no backup set {backup_id!r}: {backup_dir} holds no sets; run playbooks/backup.yml"
        )
    available = ", ".join(s.id for s in sets[-10:])
    raise BackupError("select", f"no backup set {backup_id!r} in {backup_dir}; the newest are: {available}")


def retention_plan(
    sets: list[SetInfo], now: datetime, keep_days: int, min_keep: int, last_run_ok: bool
) -> tuple[list[str], list[str]]:
    """(ids to keep, ids to delete). Pure.

    Sets newer than keep_days are kept; the newest min_keep good sets are kept whatever their age; sets marked
    bad are kept for the operator to look at; and when the last run failed nothing is deleted at all.
    """
    ids = [s.id for s in sets]
    if not last_run_ok or keep_days < 0 or min_keep < 1:
        return ids, []
    cutoff = now - timedelta(days=keep_days)
    good_newest_first = sorted((s for s in sets if s.good), key=lambda s: s.id, reverse=True)
    floor = {s.id for s in good_newest_first[:min_keep]}
    delete = [s.id for s in sets if s.good and s.id not in floor and parse_id(s.id) < cutoff]
    return [i for i in ids if i not in delete], delete


def set_info_dict(set_info: SetInfo) -> dict:
    return asdict(set_info)
