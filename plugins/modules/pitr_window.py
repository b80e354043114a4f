#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""pitr_window: the span of time pgBackRest can bring the database back to, and the backup for a target in it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: pitr_window
short_description: The recoverable window of a pgBackRest stanza, and the base backup to restore for a target time
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Reads C(pgbackrest info) of the stanza (run it as C(postgres)). The window starts when the oldest good base
    backup ended and ends now when the local primary answers (the module switches to a new WAL segment and waits
    until it is archived, so every commit before that moment can be recovered); when it does not answer, the end
    is the newest archived segment, whose time is not known.
  - With I(target_time), checks that the target lies inside the window and picks the base backup to start from, the
    newest that ended before the target in the first repository that has one (the local one, no download). A target
    outside the window fails with a message that states the window.
  - Changes nothing but the WAL segment switch; the same in check mode.
options:
  stanza:
    description: pgBackRest stanza.
    type: str
    default: main
  target_time:
    description:
      - The moment to recover to (ISO 8601, for example C(2026-11-26 01:02:03+00:00); without a zone it is UTC), or
        C(latest) for the end of the archive.
    type: str
  switch_wal:
    description: Switch to a new WAL segment on the local primary and wait until it is archived.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the switched segment to be archived.
    type: int
    default: 90
  socket:
    description: Directory of the local server's socket.
    type: path
    default: /var/run/postgresql
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Where can the database go back to?
  mojorust.dr.pitr_window:
    target_time: "2026-11-26 01:02:03+00:00"
  become: true
  become_user: postgres
  register: window
"""

RETURN = r"""
window:
  description: The recoverable window (start, end as epoch seconds or null, start_text, end_text, end_basis).
  returned: success
  type: dict
backups:
  description: Every good base backup (repo, label, type, start, stop), oldest first.
  returned: success
  type: list
  elements: dict
target:
  description: With I(target_time), the target (time or null for latest, text for pgBackRest, repo, set).
  returned: when target_time is given
  type: dict
archived_wal:
  description: The segment switched to and archived when the module ended the window at now, else null.
  returned: success
  type: str
"""

import json
import subprocess
import time
from datetime import UTC, datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.moment import MomentError, parse_moment


class WindowError(Exception):
    """The target cannot be recovered; the message says why and what the window is."""


def parse_time(text: str) -> float:
    """An ISO 8601 moment (no zone means UTC; a date alone is refused) as epoch seconds."""
    try:
        return parse_moment(text).timestamp()
    except MomentError as error:
        raise WindowError(str(error)) from error


def text_of(epoch: float | None) -> str:
    if epoch is None:
        return "the newest archived WAL segment"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


def good_backups(info: list) -> list[dict]:
    stanza = info[0] if info else {}
    backups = [
        {
            "repo": b["database"]["repo-key"],
            "label": b["label"],
            "type": b["type"],
            "start": b["timestamp"]["start"],
            "stop": b["timestamp"]["stop"],
        }
        for b in stanza.get("backup", [])
        if not b.get("error")
    ]
    return sorted(backups, key=lambda b: (b["stop"], b["repo"]))


def window_of(backups: list[dict], end: float | None) -> dict:
    if not backups:
        raise WindowError("no good base backup in any repository: nothing to recover from (run the wal_archive role)")
    start = backups[0]["stop"]
    return {
        "start": start,
        "end": end,
        "start_text": text_of(start),
        "end_text": text_of(end) if end is not None else "the newest archived WAL segment (time not known)",
        "end_basis": "archived now" if end is not None else "newest archived segment",
    }


def choose(backups: list[dict], window: dict, target_time: str) -> dict:
    """The backup to restore for target_time: the newest that ended before it, from the lowest repo number."""
    span = f"the recoverable window is {window['start_text']} to {window['end_text']}"
    if target_time.strip().lower() == "latest":
        repo = min(b["repo"] for b in backups)
        pick = max((b for b in backups if b["repo"] == repo), key=lambda b: b["stop"])
        return {"time": None, "text": "latest", "repo": pick["repo"], "set": pick["label"]}
    target = parse_time(target_time)
    if target <= window["start"]:
        raise WindowError(f"target {text_of(target)} is before the oldest base backup ended: {span}")
    if window["end"] is not None and target > window["end"]:
        raise WindowError(f"target {text_of(target)} is in the future of the archive: {span}")
    # The first repository that has a backup before the target (the local one: no download), its newest there.
    before = [b for b in backups if b["stop"] < target]
    repo = min(b["repo"] for b in before)
    pick = max((b for b in before if b["repo"] == repo), key=lambda b: b["stop"])
    return {"time": target, "text": text_of(target), "repo": pick["repo"], "set": pick["label"]}


def switch_and_wait(module: AnsibleModule) -> tuple[float | None, str | None]:
    """Switch WAL on the local primary, wait until the segment is archived: (now, segment), or (None, None)."""
    try:
        import psycopg2
    except ImportError:
        module.fail_json(msg="python3-psycopg2 is needed on the host (vps_setup installs it)")
    try:
        connection = psycopg2.connect(dbname="postgres", host=module.params["socket"], connect_timeout=5)
    except psycopg2.Error:
        return None, None
    # Not `with connection`: since psycopg2 2.9 that opens a transaction even in autocommit, and the archiver's
    # statistics would stay those of its first read.
    connection.autocommit = True
    try:
        return _switch_and_wait(module, connection.cursor())
    finally:
        connection.close()


def _switch_and_wait(module: AnsibleModule, cursor) -> tuple[float | None, str | None]:
    cursor.execute("SELECT pg_is_in_recovery()")
    if cursor.fetchone()[0]:
        return None, None
    # The segment holding the last record written so far; switching closes it. A segment that holds only its
    # 40-byte header (nothing written since the last switch) is not switched: then the one before it is the last.
    cursor.execute("SELECT now(), pg_walfile_name(pg_current_wal_lsn() - 41), pg_switch_wal()")
    moment, segment, _rest = cursor.fetchone()
    deadline = time.monotonic() + module.params["timeout"]
    while True:
        cursor.execute("SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') FROM pg_stat_archiver")
        archived, failed = cursor.fetchone()
        if archived[:24] >= segment:
            return moment.timestamp(), segment
        if time.monotonic() > deadline:
            module.fail_json(
                msg=f"WAL segment {segment} was not archived within {module.params['timeout']} s "
                f"(last archived {archived or 'none'}, last failed {failed or 'none'}): archiving is broken, "
                "see /var/log/pgbackrest and 'pgbackrest check'"
            )
        time.sleep(0.2)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "stanza": {"type": "str", "default": "main"},
            "target_time": {"type": "str"},
            "switch_wal": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 90},
            "socket": {"type": "path", "default": "/var/run/postgresql"},
        },
        supports_check_mode=True,
    )
    end, segment = switch_and_wait(module) if module.params["switch_wal"] else (None, None)
    run = subprocess.run(
        ["pgbackrest", f"--stanza={module.params['stanza']}", "--output=json", "info"],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode:
        module.fail_json(msg=f"pgbackrest info failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
    backups = good_backups(json.loads(run.stdout))
    result = {"changed": False, "backups": backups, "archived_wal": segment}
    try:
        result["window"] = window_of(backups, end)
        if module.params["target_time"]:
            result["target"] = choose(backups, result["window"], module.params["target_time"])
    except WindowError as error:
        module.fail_json(msg=str(error), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
