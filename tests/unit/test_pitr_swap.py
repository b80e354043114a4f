"""roles/pitr/files/pitr-swap, the outage of a point-in-time recovery, against fake systemctl and PostgreSQL.

Whatever fails, nothing is left half done: the directories go back to where they were, the live cluster and the bot
are started again where they can be, and stderr says what state the host is in. "Data directory lost" (no live
data directory at all) is a swap with nothing to replace.
"""

from __future__ import annotations

import os
import signal as signals
import subprocess
from pathlib import Path

import pytest

SWAP = Path(__file__).resolve().parents[2] / "roles" / "pitr" / "files" / "pitr-swap"

FAKES = {
    # systemctl: every call is logged; "start <cluster>" fails when FAKE_CLUSTER_START=fail
    "systemctl": """#!/bin/bash
echo "systemctl $*" >> "$FAKE_LOG"
if [ "$1" = start ] && [ "$2" = postgresql@15-main ] && [ "${FAKE_CLUSTER_START:-ok}" = fail ]; then exit 1; fi
exit 0
""",
    # runuser -u postgres -- CMD...: runs CMD
    "runuser": """#!/bin/bash
shift 3
exec "$@"
""",
    # pg_isready: ready when FAKE_READY=yes
    "pg_isready": """#!/bin/bash
[ "${FAKE_READY:-yes}" = yes ]
""",
    # install -o U -g G -m M SRC DEST: a copy (no postgres user here)
    "install": """#!/bin/bash
cp "${@: -2:1}" "${@: -1}"
""",
    "sleep": "#!/bin/bash\nexit 0\n",
}


@pytest.fixture
def host(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    root = tmp_path / "pg"
    root.mkdir()
    live, beside = root / "main", root / "pitr_x"
    for path, marker in ((live, "live"), (beside, "recovered")):
        (path / "pg_wal" / "archive_status").mkdir(parents=True)
        (path / "MARKER").write_text(marker)
    (live / "postgresql.auto.conf").write_text("work_mem = '8MB'\n")
    (beside / "pg_wal" / "00000002.history").write_text("1\t0/3000000\tno recovery target\n")

    class Host:
        path = tmp_path
        data, recovered, replaced = live, beside, root / "main_before_x"
        log = tmp_path / "systemctl.log"

        def run(self, *extra: str, **env) -> subprocess.CompletedProcess:
            environ = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(self.log), **env)
            argv = [str(SWAP), str(self.data), str(self.recovered), str(self.replaced), "postgresql@15-main",
                    "mojorust-pitr-beside", "trading-bot", "trading_db", *extra]  # fmt: skip
            # as over SSH: the signals at their defaults (a shell started under nohup, or a CI runner that ignores
            # SIGHUP, cannot trap a signal ignored on entry, and the signal test would prove nothing there)
            return subprocess.run(argv, capture_output=True, text=True, env=environ, preexec_fn=default_signals)

        def calls(self) -> list[str]:
            return self.log.read_text().splitlines() if self.log.exists() else []

    return Host()


def default_signals() -> None:
    for number in (signals.SIGHUP, signals.SIGINT, signals.SIGTERM):
        signals.signal(number, signals.SIG_DFL)


def marker(path: Path) -> str | None:
    return (path / "MARKER").read_text() if (path / "MARKER").exists() else None


def test_swap_puts_the_recovered_cluster_in_place_and_keeps_the_replaced_one(host):
    result = host.run()
    assert result.returncode == 0, result.stderr
    assert marker(host.data) == "recovered"
    assert marker(host.replaced) == "live"
    assert not host.recovered.exists()
    assert (host.data / "postgresql.auto.conf").read_text() == "work_mem = '8MB'\n"  # the live settings win
    assert (host.data / "pg_wal" / "archive_status" / "00000002.history.ready").exists()
    assert host.calls() == [
        "systemctl stop trading-bot mojorust-pitr-beside postgresql@15-main",
        "systemctl start postgresql@15-main",
        "systemctl start trading-bot",
    ]


def test_a_lost_data_directory_is_a_swap_with_nothing_to_replace(host):
    """The "data directory lost" case itself: before, mv of the missing directory failed with PostgreSQL and the
    bot both stopped and no rollback."""
    subprocess.run(["rm", "-rf", str(host.data)], check=True)
    result = host.run()
    assert result.returncode == 0, result.stderr
    assert marker(host.data) == "recovered"
    assert not host.replaced.exists()
    assert host.calls()[-2:] == ["systemctl start postgresql@15-main", "systemctl start trading-bot"]


def test_a_recovered_cluster_that_never_accepts_connections_is_rolled_back(host):
    result = host.run(FAKE_READY="no")
    assert result.returncode == 1
    assert marker(host.data) == "live"
    assert marker(host.recovered) == "recovered"
    assert not host.replaced.exists()
    assert host.calls()[-2:] == ["systemctl start postgresql@15-main", "systemctl start trading-bot"]
    assert "the live data directory is back" in result.stderr
    assert "the bot (trading-bot) was started" in result.stderr


def test_a_failure_before_anything_moved_still_starts_the_cluster_and_the_bot(host):
    """The stop ran before the rollback existed: a failing first move left PostgreSQL and the bot both stopped while
    the playbook said "rolled back"."""
    host.replaced.mkdir()
    (host.replaced / "in-the-way").write_text("x")  # mv -T onto a non-empty directory fails
    result = host.run()
    assert result.returncode == 1
    assert marker(host.data) == "live"
    assert marker(host.recovered) == "recovered"
    assert host.calls()[-2:] == ["systemctl start postgresql@15-main", "systemctl start trading-bot"]


def test_a_lost_data_directory_and_a_recovered_copy_that_fails_says_so_and_keeps_the_copy(host):
    subprocess.run(["rm", "-rf", str(host.data)], check=True)
    result = host.run(FAKE_READY="no")
    assert result.returncode == 1
    assert not host.data.exists()
    assert marker(host.recovered) == "recovered"
    assert "PostgreSQL NOT started: there is no live data directory" in result.stderr
    # the rollback stops the failed cluster and starts only the bot
    assert host.calls()[-2:] == ["systemctl stop postgresql@15-main", "systemctl start trading-bot"]


def test_a_bot_that_does_not_start_after_a_good_swap_is_exit_2(host, tmp_path):
    (tmp_path / "bin" / "systemctl").write_text(FAKES["systemctl"].replace(
        "exit 0\n", '[ "$1 $2" = "start trading-bot" ] && exit 1\nexit 0\n'))  # fmt: skip
    result = host.run()
    assert result.returncode == 2
    assert marker(host.data) == "recovered"
    assert "the bot (trading-bot) did NOT start" in result.stderr


@pytest.mark.parametrize("signal", ["HUP", "TERM", "INT"])
def test_a_signal_in_the_middle_rolls_back_like_a_failure(host, tmp_path, signal):
    """A dropped SSH connection (SIGHUP) or a kill while the recovered cluster starts: the directories go back, the
    live cluster and the bot start, exit 1 (before, only ERR was trapped and the host was left half swapped)."""
    (tmp_path / "bin" / "pg_isready").write_text(f"#!/bin/bash\nkill -{signal} $PPID\nexit 1\n")
    result = host.run()
    assert result.returncode == 1, result.stderr
    assert f"interrupted by SIG{signal}" in result.stderr
    assert marker(host.data) == "live"
    assert marker(host.recovered) == "recovered"
    assert host.calls()[-2:] == ["systemctl start postgresql@15-main", "systemctl start trading-bot"]


def test_a_new_hosts_failed_swap_leaves_its_bot_stopped(host):
    """failover_fresh.yml: the live cluster of a new host is empty; a rolled-back swap must not start the bot (with
    the restored wallet) on it: the failover falls back to the set instead."""
    result = host.run("no", FAKE_READY="no")
    assert result.returncode == 1
    assert marker(host.data) == "live"
    assert "systemctl start trading-bot" not in host.calls()
    assert "the bot (trading-bot) was left stopped" in result.stderr
