#!/usr/bin/env python3
"""`make bench` (issue 8): recovery speed measured side by side with the tools people would use instead.

One run, one machine, one database: the bench brings up its own containers (drbench-prod from
localhost/drlab-provisioned, drbench-edge from localhost/drlab-edge, on podman network `drbench`, labelled
drbench=1), deploys the backup tools and pgBackRest with the collection's playbooks and bench/inventory, grows
trading_db with pgbench (scale SCALE) plus the bot's own trades table, then measures, each RUNS times, interleaved
so the machine's noise falls on every method alike:
  backup   ours (mojorust-backup create, as the timer runs it), pg_dump | gzip | gpg, pg_dump -Fc, pgBackRest full
  restore  db_restore.yml end to end, gpg -d | gunzip | psql, pg_restore -j (the logical path); pgbackrest restore
           + start, pitr.yml -e target_time=latest end to end (the physical path)
  limits   read of the data directory, pg_dump alone, zstd, gpg
  ansible  verify.yml and a no-change vps_setup.yml rerun (podman exec; and over SSH with pipelining/ControlPersist)
and reads the RTO/RPO of the recovery paths from reports/drill-*.json. Writes bench/results-<UTC>.json and
bench/results-<UTC>.png and prints the table. The containers are removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collections"))  # this clone as mojorust.dr
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # mojorust_dr.phases

import benchlib
from ansible_collections.mojorust.dr.plugins.module_utils.backup.pgstats import (
    TABLE_CHECKSUM_DEFAULT,
    TABLE_CHECKSUM_SQL,
)

from mojorust_dr.phases import newest_record, step_seconds

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
INVENTORY = BENCH / "inventory"
WORK = BENCH / ".work"
NETWORK = "drbench"
LABEL = "drbench=1"
PROD = "drbench-prod"
EDGE = "drbench-edge"
PROVISIONED_IMAGE = os.environ.get("DRLAB_PROVISIONED_IMAGE", "localhost/drlab-provisioned:current")
EDGE_IMAGE = os.environ.get("DRLAB_EDGE_IMAGE", "localhost/drlab-edge:current")
PG_BIN = "/usr/lib/postgresql/15/bin"
DATA_DIR = "/var/lib/postgresql/15/main"
BESIDE_DIR = "/var/lib/postgresql/15/drbench-beside"
BESIDE_PORT = 5434
SCRATCH = "/home/tradingbot/drbench"
DB_ENV = "export PGPASSWORD=$(grep ^DB_PASSWORD= ~/mojo-trading-bot/.env | cut -d= -f2-); "
DB = "-h 127.0.0.1 -U trading_user"
STARTED = time.monotonic()


def log(message: str) -> None:
    elapsed = time.monotonic() - STARTED
    print(f"[{datetime.now(UTC):%H:%M:%S} +{elapsed:6.0f}s] {message}", flush=True)


class BenchError(RuntimeError):
    pass


def run(argv: list[str], *, check: bool = True, input_text: str | None = None, env=None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input_text, env=env, check=False)
    if check and proc.returncode != 0:
        raise BenchError(f"{shlex.join(argv)[:300]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def in_prod(script: str, user: str = "root", check: bool = True, input_text: str | None = None) -> str:
    """A bash script on drbench-prod, as root or as another user (runuser), with pipefail."""
    argv = ["podman", "exec", "-i", PROD]
    if user != "root":
        argv += ["runuser", "-u", user, "--"]
    argv += ["bash", "-c", "set -eo pipefail; cd /tmp; " + script]
    return run(argv, check=check, input_text=input_text)


def timed(script: str, user: str = "root") -> float:
    """Seconds the script takes inside the container (bash EPOCHREALTIME around it, stdout discarded)."""
    out = in_prod(f't0=$EPOCHREALTIME; ( {script} ) >/dev/null; echo "__T $t0 $EPOCHREALTIME"', user=user)
    match = re.search(r"__T ([\d.]+) ([\d.]+)", out)
    if not match:
        raise BenchError(f"no timing in the output of {script[:80]}")
    return float(match[2]) - float(match[1])


def timed_lines(script: str, user: str = "root") -> tuple[float, list[tuple[float, str]]]:
    """Seconds the script takes, and each line it prints with the second (from the start) it was printed at."""
    out = in_prod(
        f't0=$EPOCHREALTIME; ( {script} ) 2>&1 | while IFS= read -r line; do echo "__L $EPOCHREALTIME $line"; done; '
        'echo "__T $t0 $EPOCHREALTIME"',
        user=user,
    )
    match = re.search(r"__T ([\d.]+) ([\d.]+)", out)
    if not match:
        raise BenchError(f"no timing in the output of {script[:80]}")
    t0 = float(match[1])
    lines = [(float(m[1]) - t0, m[2]) for m in re.finditer(r"^__L ([\d.]+) (.*)$", out, re.MULTILINE)]
    return float(match[2]) - t0, lines


def sql(query: str, db: str = "trading_db") -> str:
    return in_prod(f"psql -XAtq -v ON_ERROR_STOP=1 -d {db} -c {shlex.quote(query)}", user="postgres").strip()


def ansible_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "CONTAINERS_CONF": str(ROOT / "lab" / "containers.conf"),
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        }
    )
    env.update(extra or {})
    return env


def playbook(
    name: str, log_name: str, extra_vars: dict | None = None, env: dict | None = None, inventories=()
) -> tuple[float, str]:
    """ansible-playbook against the bench inventory; (wall seconds, output). The output goes to bench/.work/logs,
    the run's phase record (callback mojorust.dr.phase_record) to bench/.work/phases/<log_name>/ (phase_record)."""
    argv = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(INVENTORY)]
    for inventory in inventories:
        argv += ["-i", str(inventory)]
    argv.append(str(ROOT / "playbooks" / name))
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    started = time.monotonic()
    env = {"MOJORUST_DR_PHASE_RECORD_DIR": str(WORK / "phases" / log_name), **(env or {})}
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(env), cwd=ROOT, check=False)
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    (WORK / "logs" / f"{log_name}.log").write_text(output)
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise BenchError(f"{name} failed (see bench/.work/logs/{log_name}.log):\n{tail}")
    return seconds, output


def phase_record_steps(log_name: str, role: str) -> dict[str, float]:
    """Seconds of each numbered step of `role` in the phase record of the playbook run logged as `log_name`."""
    return step_seconds(newest_record(WORK / "phases" / log_name, "*.json"), "task", role)


# ---------------------------------------------------------------------------------------------- containers


def container_exists(name: str) -> bool:
    return subprocess.run(["podman", "container", "exists", name], check=False).returncode == 0


def wait_booted(name: str) -> None:
    for _ in range(120):
        state = subprocess.run(
            ["podman", "exec", name, "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise BenchError(f"{name} did not boot")


def up(reuse: bool) -> None:
    if subprocess.run(["podman", "network", "exists", NETWORK], check=False).returncode != 0:
        run(["podman", "network", "create", "--label", LABEL, NETWORK])
    for name, image, extra in (
        # drbench-edge answers as drlab-edge on this network only, so the provisioned image's configuration holds.
        (EDGE, EDGE_IMAGE, ["--network-alias", "drlab-edge"]),
        (PROD, PROVISIONED_IMAGE, []),
    ):
        if container_exists(name):
            if reuse:
                log(f"reusing {name}")
                continue
            run(["podman", "rm", "--force", name])
        log(f"starting {name} from {image}")
        run(
            [
                "podman", "run", "--detach", "--name", name, "--hostname", name, "--label", LABEL,
                "--network", NETWORK, *extra, "--systemd=always", image, "/sbin/init",
            ]
        )  # fmt: skip
    for name in (EDGE, PROD):
        wait_booted(name)


def down() -> None:
    names = run(["podman", "ps", "--all", "--filter", "label=drbench", "--format", "{{.Names}}"]).split()
    for name in names:
        if name.startswith("drbench-"):
            log(f"removing {name}")
            run(["podman", "rm", "--force", "--time", "5", name], check=False)
    if subprocess.run(["podman", "network", "exists", NETWORK], check=False).returncode == 0:
        run(["podman", "network", "rm", NETWORK], check=False)


# ---------------------------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, args):
        self.args = args
        self.runs = args.runs
        self.results: dict = {
            "at": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
            "machine": {},
            "database": {"scale": args.scale},
            "deploy": {},
            "backup": {},
            "restore": {},
            "limits": {},
            "recovery_paths": {},
            "ansible": {},
            "notes": [],
        }
        self.samples: dict[tuple[str, str], list[float]] = {}
        self.extra: dict[tuple[str, str], dict] = {}

    # -- bookkeeping
    def add(self, section: str, name: str, seconds: float, **extra) -> None:
        self.samples.setdefault((section, name), []).append(seconds)
        slot = self.extra.setdefault((section, name), {})
        for key, value in extra.items():
            slot.setdefault(key, []).append(value)

    def entry(self, section: str, name: str, label: str, short: str, size=None, basis=None) -> dict:
        stats = benchlib.summarize(self.samples.get((section, name), []))
        entry = {"label": label, "short": short, "seconds": stats}
        extra = self.extra.get((section, name), {})
        if size is None and extra.get("bytes"):
            size = extra["bytes"][-1]
        if size is not None:
            entry["bytes"] = size
        basis = basis if basis is not None else self.results["database"].get("bytes")
        entry["mib_s"] = benchlib.mib_per_second(basis, stats["median"])
        for key, values in extra.items():
            if key == "bytes":
                continue
            entry[key] = benchlib.summarize_values(values)
        self.results[section][name] = entry
        return entry

    def step(self, what: str, fn, *fn_args):
        log(what + " ...")
        started = time.monotonic()
        value = fn(*fn_args)
        log(f"{what}: {time.monotonic() - started:.1f} s")
        return value

    # -- machine facts
    def machine(self) -> None:
        mem_kib = 0
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        load = os.getloadavg()

        def version(script: str) -> str:
            return in_prod(script, check=False).strip().splitlines()[0] if in_prod(script, check=False) else "?"

        self.results["machine"] = {
            "host": platform.node(),
            "cores": os.cpu_count(),
            "memory_gib": round(mem_kib / 1048576, 1),
            "kernel": platform.release(),
            "load_average_at_start": [round(x, 2) for x in load],
            "python": platform.python_version(),
            "podman": run(["podman", "--version"]).strip(),
            "ansible_core": run([str(ROOT / ".venv" / "bin" / "ansible"), "--version"]).splitlines()[0],
            "postgresql": version(f"{PG_BIN}/postgres --version"),
            "pgbackrest": version("pgbackrest version"),
            "zstd": version("zstd --version"),
            "gpg": version("gpg --version"),
            "other_containers_running": len(run(["podman", "ps", "--quiet"]).split()),
        }

    # -- deploy the bench host with the collection's playbooks
    def deploy(self) -> None:
        seconds, out = self.step("vps_setup.yml on drbench-prod (first run)", playbook, "vps_setup.yml", "deploy-vps")
        self.results["deploy"]["vps_setup_first_run"] = {
            "seconds": round(seconds, 1),
            "recap": benchlib.parse_recap(out),
        }
        seconds, out = self.step(
            "backup.yml (install only)", playbook, "backup.yml", "deploy-backup", {"backup_run_now": False}
        )
        self.results["deploy"]["backup_install"] = {"seconds": round(seconds, 1)}
        # With its first full backup (of the still small database): wal_archive_backup_now=false fails at "The
        # recoverable window" (no backup yet), and as a string from -e it is true anyway (see bench/README.md).
        seconds, out = self.step(
            "wal_archive.yml (pgBackRest, host repository)",
            playbook,
            "wal_archive.yml",
            "deploy-wal",
            {"wal_archive_hosts": "tradingbot"},
        )
        self.results["deploy"]["wal_archive_install"] = {"seconds": round(seconds, 1)}

    # -- data
    def load(self) -> None:
        scale = self.args.scale
        trades = scale * 10000
        in_prod(f"install -d -o tradingbot -g tradingbot -m 0700 {SCRATCH}")
        # pgbench's own tables, but its accounts filled with random text instead of blanks: pgbench's blank filler
        # compresses about 50:1, which no trading database does (random hex compresses about 2:1).
        self.step(
            f"pgbench tables at scale {scale}: {scale * 100000:,} accounts with random filler",
            in_prod,
            DB_ENV
            + f"pgbench -q -i -s {scale} -I dt {DB} trading_db >/dev/null 2>&1; "
            + f"psql -XAtq -v ON_ERROR_STOP=1 {DB} -d trading_db"
            + " -c "
            + shlex.quote(
                f"INSERT INTO pgbench_branches (bid, bbalance) SELECT g, 0 FROM generate_series(1, {scale}) g"
            )
            + " -c "
            + shlex.quote(
                "INSERT INTO pgbench_tellers (tid, bid, tbalance) "
                f"SELECT g, (g - 1) / 10 + 1, 0 FROM generate_series(1, {scale * 10}) g"
            )
            + " -c "
            + shlex.quote(
                "INSERT INTO pgbench_accounts (aid, bid, abalance, filler) "
                "SELECT g, (g - 1) / 100000 + 1, (random() * 100000)::int, "
                "md5(random()::text) || md5(random()::text) || left(md5(random()::text), 20) "
                f"FROM generate_series(1, {scale * 100000}) g"
            )
            + f"; pgbench -q -i -I vp {DB} trading_db >/dev/null 2>&1",
            "tradingbot",
        )
        self.step(
            f"the bot's trades table grown by {trades:,} rows of history",
            in_prod,
            DB_ENV
            + f"psql -XAtq -v ON_ERROR_STOP=1 {DB} -d trading_db -c "
            + shlex.quote(
                "INSERT INTO trades (ts, symbol, side, qty, price, pnl) "
                "SELECT now() - interval '400 days' + g * interval '1 second', "
                "(ARRAY['SOL/USDC','JUP/USDC','BONK/USDC'])[1 + g % 3], "
                "CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, "
                "round((random() * 100)::numeric, 8), round((random() * 200)::numeric, 8), "
                f"round(((random() - 0.5) * 10)::numeric, 8) FROM generate_series(1, {trades}) g"
            )
            + " -c 'VACUUM ANALYZE trades'",
            "tradingbot",
        )
        sql("CHECKPOINT")
        db_bytes = int(sql("SELECT pg_database_size('trading_db')"))
        cluster = int(in_prod(f"du -sb --exclude=pg_wal {DATA_DIR} | cut -f1"))
        rows = {t: int(sql(f"SELECT count(*) FROM {t}")) for t in ("pgbench_accounts", "pgbench_history", "trades")}
        self.results["database"].update({"bytes": db_bytes, "cluster_bytes": cluster, "rows": rows})
        log(
            f"trading_db is {db_bytes / benchlib.MIB:.0f} MiB, "
            f"the data directory (without pg_wal) {cluster / benchlib.MIB:.0f} MiB"
        )
        self.step("WAL archive catching up (so no backup waits on the load's backlog)", self.wait_archived)

    def wait_archived(self) -> None:
        target = sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        sql("SELECT pg_switch_wal()")
        for _ in range(900):
            last = sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            if last[:24] >= target:
                return
            time.sleep(1)
        raise BenchError(f"WAL {target} not archived after 15 min")

    # -- 1. backups
    def backups(self) -> None:
        recipient = in_prod(
            "python3 -c \"import json;print(json.load(open('/etc/mojorust-backup/config.json'))['recipients'][0])\""
        ).strip()
        gnupg = self.bench_public_keyring()
        methods = [
            (
                # as root, as Ansible runs it: the command drops to the backup user itself
                "ours",
                "root",
                "/usr/local/bin/mojorust-backup create --owner drbench",
                "s=$(cat /home/tradingbot/backups/LAST_GOOD); du -sb /home/tradingbot/backups/$s | cut -f1",
            ),
            (
                # the same, at the previous default level (backup_zstd_level: 3), from a copy of the config
                "ours_zstd3",
                "root",
                "python3 -c \"import json; c = json.load(open('/etc/mojorust-backup/config.json'));"
                " c['zstd_level'] = 3; json.dump(c, open('/tmp/drbench-zstd3.json', 'w'))\""
                " && /usr/local/bin/mojorust-backup create --owner drbench --config /tmp/drbench-zstd3.json",
                "s=$(cat /home/tradingbot/backups/LAST_GOOD); du -sb /home/tradingbot/backups/$s | cut -f1",
            ),
            (
                "naive",
                "tradingbot",
                DB_ENV + f"pg_dump {DB} trading_db | gzip | gpg --homedir {gnupg} --batch --trust-model always "
                f"--encrypt -r {recipient} > {SCRATCH}/naive.sql.gz.gpg",
                f"stat -c %s {SCRATCH}/naive.sql.gz.gpg",
            ),
            (
                "pg_dump_fc",
                "tradingbot",
                DB_ENV + f"pg_dump -Fc {DB} -f {SCRATCH}/trading_db.fc trading_db",
                f"stat -c %s {SCRATCH}/trading_db.fc",
            ),
            (
                "pgbackrest",
                "postgres",
                "pgbackrest --stanza=main --repo=1 --type=full backup",
                "pgbackrest --stanza=main --output=json info"
                ' | python3 -c \'import json,sys; print(json.load(sys.stdin)[0]["backup"][-1]["info"]'
                '["repository"]["delta"])\'',
            ),
        ]
        for n in range(1, self.runs + 1):
            for name, user, script, size_script in methods:
                log(f"backup {name}, run {n}/{self.runs} ...")
                extra = {}
                if name.startswith("ours"):
                    seconds, lines = timed_lines(script, user)
                    extra["phases"] = benchlib.backup_phases(lines, seconds)
                else:
                    seconds = timed(script, user)
                size = int(in_prod(size_script, user=user).strip())
                self.add("backup", name, seconds, bytes=size, **extra)
                log(f"backup {name}, run {n}/{self.runs}: {seconds:.1f} s, {size / benchlib.MIB:.0f} MiB")
        db_bytes = self.results["database"]["bytes"]
        self.entry("backup", "ours", "ours: mojorust-backup create (set, zstd -1, gpg, signed)", "ours (set)")
        self.entry("backup", "ours_zstd3", "ours at backup_zstd_level 3", "ours, zstd -3")
        self.entry("backup", "naive", "pg_dump | gzip | gpg (plan's naive)", "pg_dump|gzip|gpg")
        self.entry("backup", "pg_dump_fc", "pg_dump -Fc (gzip, single thread)", "pg_dump -Fc")
        self.entry(
            "backup",
            "pgbackrest",
            "pgBackRest full (zstd, AES-256, process-max 2)",
            "pgBackRest full",
            basis=self.results["database"].get("cluster_bytes", db_bytes),
        )
        self.results["backup"]["pgbackrest"]["mib_s_basis"] = "data directory bytes"

    # -- 2. restores
    def restores(self) -> None:
        set_id = in_prod("cat /home/tradingbot/backups/LAST_GOOD").strip()
        accounts = self.results["database"]["rows"]["pgbench_accounts"]
        self.import_operator_key()
        for n in range(1, self.runs + 1):
            log(f"restore ours (db_restore.yml, set {set_id}), run {n}/{self.runs} ...")
            seconds, out = playbook(
                "db_restore.yml", f"db_restore-{n}", {"backup_id": set_id}, env={"ANSIBLE_FORCE_COLOR": "0"}
            )
            parsed = benchlib.parse_db_restore(out)
            parsed["phases"] = phase_record_steps(f"db_restore-{n}", "db_restore")
            profile = benchlib.parse_profile_tasks(out)
            self.add(
                "restore",
                "ours",
                seconds,
                engine_seconds=parsed["engine_seconds"],
                bot_down_seconds=parsed["bot_down_seconds"],
                phases=parsed["phases"],
                slowest_tasks=profile[:8],
            )
            log(
                f"restore ours, run {n}/{self.runs}: {seconds:.1f} s end to end, bot down "
                f"{parsed['bot_down_seconds']} s, engine {parsed['engine_seconds']} s"
            )
            kept = sql("SELECT string_agg(datname, ' ') FROM pg_database WHERE datname LIKE 'trading_db_before_%'")
            for name in kept.split():
                sql(f'DROP DATABASE "{name}"', db="postgres")

            self.timed_restore(
                "naive",
                n,
                "tradingbot",
                DB_ENV + f"gpg --homedir /dev/shm/drbench-gnupg --batch -q -d {SCRATCH}/naive.sql.gz.gpg 2>/dev/null"
                f" | gunzip | psql -XAtq -v ON_ERROR_STOP=1 {DB} -d drbench_naive",
                "drbench_naive",
                accounts,
            )
            self.timed_restore(
                "pg_restore_j",
                n,
                "tradingbot",
                DB_ENV + f"pg_restore -j {os.cpu_count() or 2} --no-owner {DB} -d drbench_pgr {SCRATCH}/trading_db.fc",
                "drbench_pgr",
                accounts,
            )
            # Both physical restores start from the same full backup, taken now (not timed), so neither replays the
            # WAL of the logical restores above.
            log(f"pgBackRest full backup for the physical restores, run {n}/{self.runs} (not timed) ...")
            in_prod("pgbackrest --stanza=main --repo=1 --type=full backup", user="postgres")
            self.pgbackrest_restore(n, accounts)
            self.pitr_restore(n, accounts)
        self.entry("restore", "ours", "ours: db_restore.yml end to end", "ours (db_restore.yml)")
        self.entry("restore", "naive", "gpg -d | gunzip | psql (plan's naive)", "gpg|gunzip|psql")
        self.entry(
            "restore", "pg_restore_j", f"pg_restore -j {os.cpu_count() or 2} (from pg_dump -Fc)", "pg_restore -j"
        )
        self.entry(
            "restore",
            "pgbackrest",
            "pgbackrest restore + start to writable",
            "pgbackrest restore+start",
            basis=self.results["database"].get("cluster_bytes"),
        )
        self.entry(
            "restore",
            "ours_physical",
            "ours: pitr.yml -e target_time=latest end to end",
            "ours (pitr.yml latest)",
            basis=self.results["database"].get("cluster_bytes"),
        )
        self.drop_operator_key()

    def pitr_restore(self, n: int, accounts: int) -> None:
        """Our physical path: pitr.yml to the end of the archive (pgBackRest restore beside, replay, verify, swap),
        against `pgbackrest restore` + start of the same base backup. No base backup after it (that runs in the
        background in production, after the bot is back); the replaced data directory it keeps is removed."""
        log(f"restore ours physical (pitr.yml latest), run {n}/{self.runs} ...")
        seconds, out = playbook(
            "pitr.yml",
            f"pitr-{n}",
            {"target_time": "latest", "pitr_backup_after": False},
            env={"ANSIBLE_FORCE_COLOR": "0"},
        )
        parsed = benchlib.parse_pitr(out)
        parsed["phases"] = phase_record_steps(f"pitr-{n}", "pitr")
        got = int(sql("SELECT count(*) FROM pgbench_accounts"))
        in_prod(f"rm -rf {DATA_DIR}_before_*")
        if got != accounts:
            raise BenchError(f"restore ours physical: {got} accounts instead of {accounts}")
        self.add(
            "restore",
            "ours_physical",
            seconds,
            bot_down_seconds=parsed["bot_down_seconds"],
            phases=parsed["phases"],
            slowest_tasks=benchlib.parse_profile_tasks(out)[:8],
        )
        log(
            f"restore ours physical, run {n}/{self.runs}: {seconds:.1f} s end to end, bot down "
            f"{parsed['bot_down_seconds']} s"
        )

    def bench_public_keyring(self) -> str:
        """A keyring of the bot user's with the operator's public key, for the plan's naive pipelines."""
        home = "/home/tradingbot/.drbench-gnupg"
        in_prod(f"rm -rf {home}; install -d -m 0700 -o tradingbot -g tradingbot {home}")
        in_prod(f"gpg --homedir {home} --batch -q --import /etc/mojorust-backup/operator-keys.asc", user="tradingbot")
        return home

    def import_operator_key(self) -> None:
        import yaml  # the venv's PyYAML

        secrets = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/lab_secrets.yml").read_text())
        in_prod("rm -rf /dev/shm/drbench-gnupg; install -d -m 0700 -o tradingbot -g tradingbot /dev/shm/drbench-gnupg")
        in_prod(
            "gpg --homedir /dev/shm/drbench-gnupg --batch -q --import 2>/dev/null",
            user="tradingbot",
            input_text=secrets["lab_secrets"]["operator_key"]["secret_key"],
        )

    def drop_operator_key(self) -> None:
        in_prod(
            "gpgconf --homedir /dev/shm/drbench-gnupg --kill gpg-agent 2>/dev/null || true;"
            " rm -rf /dev/shm/drbench-gnupg"
        )

    def timed_restore(self, name: str, n: int, user: str, script: str, db: str, accounts: int) -> None:
        sql(f"DROP DATABASE IF EXISTS {db}", db="postgres")
        sql(f"CREATE DATABASE {db} OWNER trading_user", db="postgres")
        log(f"restore {name}, run {n}/{self.runs} ...")
        seconds = timed(script, user)
        got = int(sql("SELECT count(*) FROM pgbench_accounts", db=db))
        if got != accounts:
            raise BenchError(f"restore {name}: {got} accounts instead of {accounts}")
        sql(f"DROP DATABASE {db}", db="postgres")
        self.add("restore", name, seconds)
        log(f"restore {name}, run {n}/{self.runs}: {seconds:.1f} s ({got:,} accounts back)")

    def pgbackrest_restore(self, n: int, accounts: int) -> None:
        unit = "drbench-beside"
        in_prod(f"systemctl stop {unit} 2>/dev/null || true; rm -rf {BESIDE_DIR}")
        log(f"restore pgbackrest, run {n}/{self.runs} ...")
        restore = timed(
            f"pgbackrest --stanza=main --repo=1 --pg1-path={BESIDE_DIR} --type=immediate --target-action=promote"
            " --no-delta restore",
            "postgres",
        )
        start = timed(
            f"systemd-run --unit={unit} --uid=postgres --gid=postgres --collect --property=KillSignal=SIGINT "
            f"{PG_BIN}/postgres -c config_file=/etc/postgresql/15/main/postgresql.conf -c data_directory={BESIDE_DIR}"
            f" -c port={BESIDE_PORT} -c listen_addresses= -c external_pid_file=/var/run/postgresql/drbench.pid"
            " -c archive_mode=off -c synchronous_standby_names= -c cluster_name=drbench; "
            "for _ in $(seq 600); do "
            f"  systemctl is-active --quiet {unit} || exit 3; "
            f"  s=$(runuser -u postgres -- psql -XAtq -p {BESIDE_PORT} -d postgres -c 'SELECT pg_is_in_recovery()'"
            '     2>/dev/null) && [ "$s" = f ] && exit 0; sleep 0.2; '
            "done; exit 4",
        )
        got = int(
            in_prod(
                f"psql -XAtq -p {BESIDE_PORT} -d trading_db -c 'SELECT count(*) FROM pgbench_accounts'", user="postgres"
            ).strip()
        )
        in_prod(f"systemctl stop {unit}; rm -rf {BESIDE_DIR}")
        if got != accounts:
            raise BenchError(f"restore pgbackrest: {got} accounts instead of {accounts}")
        self.add("restore", "pgbackrest", restore + start, restore_seconds=restore, start_seconds=start)
        log(f"restore pgbackrest, run {n}/{self.runs}: {restore:.1f} s restore + {start:.1f} s start to writable")

    # -- 3. limits of this machine
    def limits(self) -> None:
        recipient = in_prod(
            "python3 -c \"import json;print(json.load(open('/etc/mojorust-backup/config.json'))['recipients'][0])\""
        ).strip()
        gnupg = self.bench_public_keyring()
        in_prod(DB_ENV + f"pg_dump -Fc -Z0 {DB} -f {SCRATCH}/plain.dump trading_db", user="tradingbot")
        in_prod(f"zstd -q -3 -T0 -f {SCRATCH}/plain.dump -o {SCRATCH}/plain.dump.zst", user="tradingbot")
        in_prod(
            f"gpg --homedir {gnupg} --batch --trust-model always --compress-algo none --encrypt -r {recipient}"
            f" -o {SCRATCH}/plain.dump.zst.gpg --yes {SCRATCH}/plain.dump.zst",
            user="tradingbot",
        )
        plain = int(in_prod(f"stat -c %s {SCRATCH}/plain.dump").strip())
        packed = int(in_prod(f"stat -c %s {SCRATCH}/plain.dump.zst").strip())
        cluster = self.results["database"]["cluster_bytes"]
        self.import_operator_key()
        encrypt = (
            f"gpg --homedir {gnupg} --batch --trust-model always --compress-algo none --encrypt -r {recipient}"
            f" -o - {SCRATCH}/plain.dump.zst | wc -c"
        )
        decrypt = f"gpg --homedir /dev/shm/drbench-gnupg --batch -q -d {SCRATCH}/plain.dump.zst.gpg 2>/dev/null | wc -c"
        # The query mojorust-backup runs on every table beside the dump (and backup_restore after the restore).
        checksum_sql = TABLE_CHECKSUM_SQL[TABLE_CHECKSUM_DEFAULT].removesuffix(" FROM {} t")
        tables = sql(
            "SELECT string_agg(quote_ident(schemaname) || '.' || quote_ident(tablename), ' ') FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).split()
        checksums = "; ".join(
            f"psql -XAtq -d trading_db -c {shlex.quote(checksum_sql + ' FROM ' + t + ' t')}" for t in tables
        )
        read = f"find {DATA_DIR} -path '*/pg_wal' -prune -o -type f -print0 | xargs -0 cat | wc -c"
        tests = [
            ("read", "root", read, cluster,
             "read of the data directory (page cache)", "read data dir"),
            ("pg_dump", "tradingbot", DB_ENV + f"pg_dump -Fc -Z0 {DB} trading_db | wc -c", plain,
             "pg_dump -Fc -Z0 > /dev/null (one snapshot, one thread)", "pg_dump -Z0"),
            ("zstd", "tradingbot", f"zstd -q -3 -T0 -c {SCRATCH}/plain.dump | wc -c", plain,
             "zstd -3 -T0 of the dump", "zstd -3 -T0"),
            ("zstd_1", "tradingbot", f"zstd -q -1 -T0 -c {SCRATCH}/plain.dump | wc -c", plain,
             "zstd -1 -T0 of the dump (backup_zstd_level 1)", "zstd -1 -T0"),
            ("zstd_d", "tradingbot", f"zstd -q -d -c {SCRATCH}/plain.dump.zst | wc -c", plain,
             "zstd -d of it", "zstd -d"),
            ("gpg_encrypt", "tradingbot", encrypt, packed, "gpg --encrypt (no compression) of the zstd stream",
             "gpg encrypt"),
            ("gpg_decrypt", "tradingbot", decrypt, packed, "gpg -d of it", "gpg -d"),
            ("checksums", "postgres", checksums, self.results["database"]["bytes"],
             "row count + checksum of every table (the set's manifest query)", "table checksums"),
        ]  # fmt: skip
        for n in range(1, self.runs + 1):
            for name, user, script, _size, _label, _short in tests:
                seconds = timed(script, user)
                self.add("limits", name, seconds)
                log(f"limit {name}, run {n}/{self.runs}: {seconds:.1f} s")
        for name, _user, _script, size, label, short in tests:
            self.entry("limits", name, label, short, size=size, basis=size)
        self.drop_operator_key()
        in_prod(f"rm -f {SCRATCH}/plain.dump {SCRATCH}/plain.dump.zst {SCRATCH}/plain.dump.zst.gpg")

    # -- 4. recovery paths from the drills
    def recovery_paths(self) -> None:
        reports = []
        for path in sorted(glob.glob(str(ROOT / "reports" / "drill-*.json"))):
            try:
                reports.append(json.loads(Path(path).read_text()))
            except (OSError, ValueError):
                continue
        self.results["recovery_paths"] = benchlib.drill_medians(reports)
        self.results["recovery_paths_source"] = f"{len(reports)} reports/drill-*.json"

    # -- 5. Ansible overhead
    def ansible(self) -> None:
        runs = self.args.ansible_runs
        verify_vars = {"verify_report_dir": str(WORK / "reports")}
        (WORK / "reports").mkdir(parents=True, exist_ok=True)
        variants = [("", "podman exec", {}, ())]
        ssh = self.ssh_inventory() if not self.args.no_ssh else None
        if ssh:
            variants += [
                ("_ssh", "SSH, pipelining, ControlPersist", {}, (ssh,)),
                ("_ssh_nopipe", "SSH, no pipelining, ControlPersist", {"ANSIBLE_PIPELINING": "False"}, (ssh,)),
            ]
        variants.append(
            (
                "_noprofile",
                "podman exec, timer instead of profile_tasks",
                {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer"},
                (),
            )
        )
        broken: set[str] = set()

        def measure(playbook_name: str, key: str, suffix: str, n: int, env, inventories, extra_vars=None):
            """One playbook run of one variant; a failing variant other than podman exec is noted and dropped."""
            if suffix in broken:
                return None
            try:
                seconds, out = playbook(
                    playbook_name, f"{key}{suffix}-{n}", extra_vars, env=env, inventories=inventories
                )
            except BenchError as error:
                if not suffix:
                    raise
                broken.add(suffix)
                self.results["notes"].append(f"{playbook_name} ({suffix}) failed, variant dropped: {error}")
                log(f"{playbook_name} ({suffix}) failed, variant dropped (see bench/.work/logs/{key}{suffix}-{n}.log)")
                return None
            self.add("ansible", key + suffix, seconds, **({} if key == "verify" else self.recap_of(out)))
            return seconds, out

        for n in range(1, runs + 1):
            for suffix, how, env, inventories in variants:
                done = measure("verify.yml", "verify", suffix, n, env, inventories, verify_vars)
                if done:
                    log(f"verify.yml ({how}), run {n}/{runs}: {done[0]:.1f} s")
        for suffix, how, *_ in variants:
            if (("ansible", "verify" + suffix)) in self.samples:
                self.entry("ansible", "verify" + suffix, f"verify.yml, {how}", "verify" + suffix, basis=0)
        for n in range(1, runs + 1):
            for suffix, how, env, inventories in variants[: 2 if ssh else 1]:
                log(f"vps_setup.yml no-change rerun ({how}), run {n}/{runs} ...")
                done = measure("vps_setup.yml", "vps_setup_rerun", suffix, n, env, inventories)
                if done:
                    changed = benchlib.parse_recap(done[1]).get("prod", {}).get("changed")
                    log(f"vps_setup.yml ({how}), run {n}/{runs}: {done[0]:.1f} s, changed={changed}")
        self.round_trips(ssh if "_ssh" not in broken else None)
        for suffix, how, *_ in variants[: 2 if ssh else 1]:
            if ("ansible", "vps_setup_rerun" + suffix) in self.samples:
                self.entry(
                    "ansible", "vps_setup_rerun" + suffix, f"vps_setup.yml no-change, {how}", "vps_setup", basis=0
                )

    @staticmethod
    def recap_of(out: str) -> dict:
        recap = benchlib.parse_recap(out).get("prod", {})
        return {
            "changed": recap.get("changed"),
            "tasks": recap.get("ok"),
            "slowest_tasks": benchlib.parse_profile_tasks(out)[:6],
        }

    def round_trips(self, ssh: Path | None) -> None:
        """The floor under every Ansible task: one `podman exec true`, and one `ssh true` over a kept connection."""
        argvs = [("podman_exec", "one podman exec round trip (true)", ["podman", "exec", PROD, "true"])]
        if ssh:
            address = json.loads(ssh.read_text())["all"]["children"]["tradingbot"]["hosts"]["prod"]["ansible_host"]
            options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR",
                       "ControlMaster=auto", f"ControlPath={WORK / 'cm-%C'}", "ControlPersist=60s"]  # fmt: skip
            argv = ["ssh", "-i", str(WORK / "id_ed25519")]
            for option in options:
                argv += ["-o", option]
            argvs.append(("ssh", "one ssh round trip (true, ControlPersist)", [*argv, f"benchops@{address}", "true"]))
        for name, label, argv in argvs:
            run(argv)  # warm (the SSH master connection)
            for _ in range(10):
                started = time.monotonic()
                run(argv)
                self.add("ansible", name, time.monotonic() - started)
            entry = self.entry("ansible", name, label, name, basis=0)
            log(f"{label}: median {entry['seconds']['median'] * 1000:.0f} ms of 10")

    def ssh_inventory(self) -> Path | None:
        """An admin user with a key on drbench-prod, and an inventory overlay that reaches prod over SSH."""
        if not shutil.which("ssh-keygen") or not shutil.which("ssh"):
            self.results["notes"].append("no ssh client on this machine: SSH variants skipped")
            return None
        if in_prod("systemctl is-active ssh || true").strip() != "active":
            self.results["notes"].append("no sshd on drbench-prod: SSH variants skipped")
            return None
        key = WORK / "id_ed25519"
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "drbench", "-f", str(key)])
        public = (WORK / "id_ed25519.pub").read_text().strip()
        in_prod(
            "id benchops >/dev/null 2>&1 || useradd -m -s /bin/bash benchops; "
            "install -d -m 0700 -o benchops -g benchops ~benchops/.ssh; "
            f"echo {shlex.quote(public)} > ~benchops/.ssh/authorized_keys; "
            "chown benchops: ~benchops/.ssh/authorized_keys; "
            "echo 'benchops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/benchops; chmod 0440 /etc/sudoers.d/benchops"
        )
        address = run(
            ["podman", "inspect", PROD, "--format", '{{(index .NetworkSettings.Networks "' + NETWORK + '").IPAddress}}']
        ).strip()
        overlay = WORK / "ssh-inventory.json"  # the yaml inventory plugin reads .json too
        overlay.write_text(
            json.dumps(
                {
                    "all": {
                        "children": {
                            "workstation": {"hosts": {"localhost": {"ansible_become": False}}},
                            "tradingbot": {
                                "hosts": {
                                    "prod": {
                                        "ansible_connection": "ssh",
                                        "ansible_host": address,
                                        "ansible_user": "benchops",
                                        # as inventories/production.example: an admin user, become for all
                                        "ansible_become": True,
                                        "ansible_ssh_private_key_file": str(key),
                                        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                        "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
                                    }
                                }
                            },
                        }
                    }
                },
                indent=1,
            )
        )
        return overlay

    # -- output
    def finish(self) -> Path:
        self.results["targets"] = benchlib.evaluate_targets(self.results)
        self.results["finished_at"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        stem = BENCH / f"results-{self.results['at']}"
        stem.with_suffix(".json").write_text(json.dumps(self.results, indent=1) + "\n")
        db = self.results["database"]
        title = (
            f"make bench {self.results['at']}: trading_db {(db.get('bytes') or 0) / benchlib.MIB:.0f} MiB, "
            f"{self.results['machine'].get('cores')} cores"
        )
        panels = benchlib.chart_panels(self.results)
        if panels:
            stem.with_suffix(".png").write_bytes(benchlib.chart_png(title, panels))
        print()
        print(benchlib.render_table(self.results))
        print()
        log(f"written {stem.with_suffix('.json').relative_to(ROOT)} and {stem.with_suffix('.png').relative_to(ROOT)}")
        return stem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=int(os.environ.get("SCALE") or 95), help="pgbench scale")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("RUNS") or 3), help="runs per measurement")
    parser.add_argument("--ansible-runs", type=int, default=None, help="runs of each Ansible measurement")
    parser.add_argument("--keep", action="store_true", default=os.environ.get("KEEP", "") not in ("", "0"))
    parser.add_argument("--reuse", action="store_true", help="reuse running drbench-* containers (and their data)")
    parser.add_argument("--no-deploy", action="store_true", help="with --reuse: skip the playbooks that deploy")
    parser.add_argument("--no-ssh", action="store_true", help="skip the SSH variants of the Ansible measurements")
    parser.add_argument(
        "--only",
        default=os.environ.get("ONLY", "backup,restore,limits,drills,ansible"),
        help="comma-separated parts to run (backup,restore,limits,drills,ansible)",
    )
    parser.add_argument("--down", action="store_true", help="only remove the drbench-* containers and network")
    args = parser.parse_args(argv)
    args.ansible_runs = args.ansible_runs or args.runs
    os.environ["CONTAINERS_CONF"] = str(ROOT / "lab" / "containers.conf")
    WORK.mkdir(parents=True, exist_ok=True)
    if args.down:
        down()
        return 0
    only = set(args.only.split(","))
    if "restore" in only:
        only.add("backup")  # restores need this run's backups
    bench = Bench(args)
    failed = failed_data = False
    try:
        log(f"bench: scale {args.scale}, {args.runs} runs each; own containers {PROD}, {EDGE} on network {NETWORK}")
        bench.step("containers up", up, args.reuse)
        if not args.no_deploy:
            bench.deploy()
        bench.machine()  # after the deploy: pgBackRest, zstd and gpg come with it
        # A part that fails is noted and the next one runs (restores need the backups, though). The Ansible part
        # comes first: it needs a healthy host, not the data, and it tells early whether the SSH variants work.
        parts = [
            ("ansible", lambda: bench.step("Ansible overhead", bench.ansible)),
            ("load", bench.load),
            ("backup", bench.backups),
            ("restore", bench.restores),
            ("limits", lambda: bench.step("limits of this machine", bench.limits)),
            ("drills", bench.recovery_paths),
        ]
        for name, part in parts:
            if name == "load" and only & {"backup", "restore", "limits"}:
                pass
            elif name not in only or (name in ("backup", "restore", "limits") and failed_data):
                continue
            try:
                part()
            except BenchError as error:
                failed = True
                failed_data = failed_data or name in ("load", "backup")
                log(f"{name} stopped: {error}")
                bench.results["notes"].append(f"{name} stopped: {error}")
    except (BenchError, KeyboardInterrupt) as error:
        failed = True
        log(f"bench stopped: {error}")
        bench.results["notes"].append(f"stopped early: {error}")
    finally:
        bench.finish()
        if args.keep:
            log(f"kept {PROD} and {EDGE} (remove with: bench/bench.py --down)")
        else:
            down()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
