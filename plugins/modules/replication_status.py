#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""replication_status: who is primary, which standbys stream, and how far behind they are."""

from __future__ import annotations

DOCUMENTATION = r"""
module: replication_status
short_description: Report a PostgreSQL server's replication role, its standbys or its WAL receiver, and the lag
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Connects over the local socket (run it as C(postgres)) and reports whether the server is a primary or a standby
    in recovery; on a primary, each standby from C(pg_stat_replication) with its state, sync state and lag; on a
    standby, its WAL receiver and how far replay is behind.
  - With I(wait_for), waits until that many standbys stream (on a primary) or the receiver streams (on a standby),
    and fails with what it saw when the time is up.
  - Read-only; the same in check mode.
options:
  wait_for:
    description: Standbys that must be streaming (primary), or 1 for the receiver to stream (standby); 0 waits not.
    type: int
    default: 0
  timeout:
    description: Seconds to wait for I(wait_for).
    type: int
    default: 60
  socket:
    description: Directory of the server's socket.
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
- name: The standby streams
  mojorust.dr.replication_status:
    wait_for: 1
  become: true
  become_user: postgres
  register: replication
"""

RETURN = r"""
role: {description: C(primary) or C(standby)., returned: success, type: str}
standbys:
  description: On a primary, each connected standby (name, address, state, sync_state, lag_bytes, replay_lag_seconds).
  returned: success
  type: list
  elements: dict
receiver:
  description: On a standby, the WAL receiver (status, sender_host, sender_port, slot_name), or null.
  returned: success
  type: dict
lag_bytes: {description: "On a standby, WAL received but not replayed yet (bytes).", returned: success, type: int}
replay_delay_seconds:
  description: On a standby, seconds since the last replayed transaction was committed on the primary (grows when the
    primary is idle, too).
  returned: success
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule

PRIMARY_SQL = """
SELECT application_name, coalesce(host(client_addr), 'local'), state, sync_state,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint,
       coalesce(extract(epoch FROM replay_lag), 0)::float
FROM pg_stat_replication ORDER BY application_name
"""
STANDBY_SQL = """
SELECT coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float
"""
RECEIVER_SQL = "SELECT status, sender_host, sender_port, slot_name FROM pg_stat_wal_receiver"


def probe(cursor) -> dict:
    cursor.execute("SELECT pg_is_in_recovery()")
    if not cursor.fetchone()[0]:
        cursor.execute(PRIMARY_SQL)
        keys = ("name", "address", "state", "sync_state", "lag_bytes", "replay_lag_seconds")
        return {"role": "primary", "standbys": [dict(zip(keys, row, strict=True)) for row in cursor.fetchall()]}
    cursor.execute(STANDBY_SQL)
    lag, delay = cursor.fetchone()
    cursor.execute(RECEIVER_SQL)
    row = cursor.fetchone()
    receiver = dict(zip(("status", "sender_host", "sender_port", "slot_name"), row, strict=True)) if row else None
    return {"role": "standby", "receiver": receiver, "lag_bytes": lag, "replay_delay_seconds": delay}


def streaming(status: dict, wanted: int) -> bool:
    if status["role"] == "primary":
        return sum(1 for s in status["standbys"] if s["state"] == "streaming") >= wanted
    return bool(status["receiver"]) and status["receiver"]["status"] == "streaming"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "wait_for": {"type": "int", "default": 0},
            "timeout": {"type": "int", "default": 60},
            "socket": {"type": "path", "default": "/var/run/postgresql"},
        },
        supports_check_mode=True,
    )
    try:
        import psycopg2
    except ImportError:
        module.fail_json(msg="python3-psycopg2 is needed on the host (vps_setup installs it)")
    deadline = time.monotonic() + module.params["timeout"]
    while True:
        try:
            with (
                psycopg2.connect(dbname="postgres", host=module.params["socket"]) as connection,
                connection.cursor() as cursor,
            ):
                status = probe(cursor)
        except psycopg2.Error as error:
            module.fail_json(msg=f"cannot query PostgreSQL at {module.params['socket']}: {error}".strip())
        wanted = module.params["wait_for"]
        if not wanted or streaming(status, wanted):
            module.exit_json(changed=False, **status)
        if time.monotonic() > deadline:
            module.fail_json(
                msg=f"not streaming after {module.params['timeout']} s (wanted {wanted}): {status}", **status
            )
        time.sleep(1)


if __name__ == "__main__":
    main()
