"""Measure RPO honestly: commit numbered rows at a steady rate, record each number the server acknowledged, and
after a crash and failover count the acknowledged numbers missing on the new primary.

    python -m mojorust_dr.rpo write --dsn 'host=10.89.0.5 dbname=trading_db user=trading_user' --acked acked.txt
    python -m mojorust_dr.rpo missing --dsn 'host=10.89.0.7 ...' --acked acked.txt

The writer stops at the first failed commit (the primary is gone) or after --seconds. The password comes from
PGPASSWORD, never the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

TABLE = "rpo_probe"


def write(dsn: str, acked_path: str, seconds: float, rate: float) -> dict:
    import psycopg2

    connection = psycopg2.connect(dsn, connect_timeout=5)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (n bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        cursor.execute(f"SELECT coalesce(max(n), 0) FROM {TABLE}")
        number = cursor.fetchone()[0]
    started, interval, acked, error = time.monotonic(), 1.0 / rate, 0, ""
    with open(acked_path, "a", encoding="utf-8") as out:
        while time.monotonic() - started < seconds:
            number += 1
            try:
                with connection.cursor() as cursor:
                    cursor.execute(f"INSERT INTO {TABLE} (n) VALUES (%s)", (number,))
            except psycopg2.Error as failure:  # the primary is gone: what was acknowledged is on file
                error = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
                break
            out.write(f"{number}\n")
            out.flush()
            acked += 1
            time.sleep(max(0.0, started + acked * interval - time.monotonic()))
    return {
        "acked": acked,
        "last": number - (1 if error else 0),
        "seconds": round(time.monotonic() - started, 2),
        "stopped_by": error or "time",
    }


def read_acked(acked_path: str) -> set[int]:
    with open(acked_path, encoding="utf-8") as handle:
        return {int(line) for line in handle if line.strip()}


def compare(acked: set[int], present: set[int]) -> dict:
    """Acknowledged numbers against those on the new primary (a missing table: nothing present)."""
    lost = sorted(acked - present)
    return {"acked": len(acked), "present": len(present & acked), "lost": len(lost), "lost_numbers": lost[:20]}


def missing(dsn: str, acked_path: str) -> dict:
    import psycopg2

    with psycopg2.connect(dsn, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT to_regclass('{TABLE}') IS NOT NULL")
        present: set[int] = set()
        if cursor.fetchone()[0]:
            cursor.execute(f"SELECT n FROM {TABLE}")
            present = {row[0] for row in cursor.fetchall()}
    return compare(read_acked(acked_path), present)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mojorust_dr.rpo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    w = commands.add_parser("write")
    w.add_argument("--dsn", required=True)
    w.add_argument("--acked", required=True)
    w.add_argument("--seconds", type=float, default=60)
    w.add_argument("--rate", type=float, default=100, help="commits per second")
    m = commands.add_parser("missing")
    m.add_argument("--dsn", required=True)
    m.add_argument("--acked", required=True)
    args = parser.parse_args(argv)
    if args.command == "write":
        result = write(args.dsn, args.acked, args.seconds, args.rate)
    else:
        result = missing(args.dsn, args.acked)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
