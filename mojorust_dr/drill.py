"""Disaster drills against the lab: inject a disaster, run the recovery playbook, verify; time every phase.

Each scenario is data: a list of phases, each one command (Ansible's run through ansible-runner). RTO is measured
from the moment the disaster is injected to the moment the bot is verified healthy again; RPO is the age of the
newest recoverable data at the moment of the disaster (scenarios without data to lose report none).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import ansible_runner

from . import report as report_module
from . import rpo
from .phases import newest_record, step_seconds

ROOT = Path(__file__).resolve().parent.parent
PLAN_RTO_SECONDS = 15 * 60
PLAN_RPO_SECONDS = 5 * 60
# We aim ten times better than the plan.
AIM_RTO_SECONDS = PLAN_RTO_SECONDS / 10
AIM_RPO_SECONDS = PLAN_RPO_SECONDS / 10


def ansible_playbook(playbook: str, *extra: str) -> list[str]:
    return [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", playbook, *extra]


def ansible_module(host: str, module: str, args: str = "") -> list[str]:
    command = [str(ROOT / ".venv/bin/ansible"), "-i", "inventories/lab", host, "-m", module]
    return [*command, "-a", args] if args else command


@dataclass
class Phase:
    name: str
    command: list[str]
    # prepare: before the disaster, not part of the outage; disaster: the RTO clock starts when it starts and the
    # RPO is measured just before it; recover / verify: until the bot is verified healthy.
    kind: str = "recover"
    # What the phase measured inside itself (the failover's own phases), read after it ran.
    detail: Callable[[float], dict | None] | None = None


@dataclass
class Scenario:
    name: str
    title: str
    plan_section: str
    phases: list[Phase]
    # Seconds of data at risk at the moment of the disaster, or None where no data can be lost.
    rpo: Callable[[], float | None] = lambda: None
    # Or measured after the recovery: (seconds, detail), e.g. acknowledged rows missing on the new primary.
    rpo_after: Callable[[], tuple[float, dict]] | None = None


def backup_status(container: str) -> dict:
    """The host's backup status file (.status.json), or {} when the host or the file is not there."""
    result = subprocess.run(
        ["podman", "exec", container, "cat", "/home/tradingbot/backups/.status.json"],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(result.stdout) if result.returncode == 0 else {}


def age_seconds(moment: datetime | None) -> float | None:
    return None if moment is None else round((datetime.now(UTC) - moment).total_seconds(), 1)


def newest_set_age(container: str = "drlab-prod") -> float | None:
    """Age in seconds of the newest good backup set on the host, now."""
    last = backup_status(container).get("last_success_at")
    return age_seconds(datetime.fromisoformat(last) if last else None)


def newest_offsite_age(container: str = "drlab-prod") -> float | None:
    """Age in seconds of the newest set the host has pushed off-site (its id is its UTC time), now."""
    newest = backup_status(container).get("offsite_newest_id")
    return age_seconds(datetime.strptime(newest, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if newest else None)


PHASE_RECORDS = ROOT / "reports" / "phases"


def playbook_step_seconds(playbook: str, since: float) -> dict[str, float]:
    """Seconds of each numbered play of the newest run of `playbook` started after `since`, as the callback
    mojorust.dr.phase_record (ansible.cfg) recorded them; {} without a record."""
    return step_seconds(newest_record(PHASE_RECORDS, f"{Path(playbook).stem}-*.json", since))


def newest_failover_record(since: float) -> dict | None:
    """What playbooks/failover.yml recorded after `since` (a time.time()), and the time of each of its steps."""
    record = newest_record(ROOT / "reports", "failover-*.json", since)
    if record is None:
        return None
    detail = {key: record.get(key) for key in ("new_host", "old_hosts", "backup_id", "verified_at")}
    return {"phases": playbook_step_seconds("failover.yml", since), **detail}


def psql_on(container: str, sql: str) -> str:
    """One query on trading_db as postgres on the host itself, its rows as text."""
    command = ["podman", "exec", container, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", "trading_db"]
    return subprocess.run([*command, "-c", sql], capture_output=True, text=True, check=True).stdout


def newest_fresh_host() -> str:
    """The container the last failover to a fresh host provisioned (label drlab=fresh): podman sorts oldest first."""
    listed = subprocess.run(
        ["podman", "ps", "--all", "--filter", "label=drlab=fresh", "--sort", "created", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not listed:
        raise RuntimeError("no container labelled drlab=fresh: the failover provisioned no host")
    return listed[-1]


def rows_lost_on(container: str | Callable[[], str], rate: float = 100.0) -> Callable[[], tuple[float, dict]]:
    """RPO measured: acknowledged writer rows (reports/rpo-acked.txt) missing on the new primary (a container, or
    a function naming it once the recovery ran), in rows and in seconds of writing at the writer's rate. Read on the
    host itself (a restored cluster may not listen yet); a table that is not there at all means every row is lost."""

    def measure() -> tuple[float, dict]:
        host = container() if callable(container) else container
        present: set[int] = set()
        if psql_on(host, f"SELECT to_regclass('{rpo.TABLE}')").strip():
            present = {int(n) for n in psql_on(host, f"SELECT n FROM {rpo.TABLE}").split()}
        detail = rpo.compare(rpo.read_acked(str(ROOT / "reports/rpo-acked.txt")), present)
        return round(detail["lost"] / rate, 2), detail

    return measure


PITR_TARGET = ROOT / "reports/pitr-target.txt"


def since_pitr_target() -> float | None:
    """Seconds from the PITR target to now (the disaster): what is written in between is not in the recovered
    database (it stays in the kept data directory)."""
    if not PITR_TARGET.exists():
        return None
    return age_seconds(datetime.fromisoformat(PITR_TARGET.read_text().strip()))


BREACH_DIR = ROOT / "reports/breach-drill"


def newest_incident_record(since: float) -> dict | None:
    """What breach.yml recorded after `since`: its RTO, the manual steps still open, the set restored."""
    record = newest_record(ROOT / "reports", "incident-*/record.json", since)
    if record is None:
        return None
    return {
        "rto_seconds": record.get("rto_seconds"),
        "contained_seconds": record.get("contained_seconds"),
        "manual_steps_open": record.get("manual_steps_open"),
        "restored_set": record.get("restored_set"),
        # the playbook goes on after the bot trades again (the sweep, the record): not outage
        "verified_at": record.get("trading_at"),
        "phases": playbook_step_seconds("breach.yml", since),
    }


def in_prod(script: str) -> list[str]:
    return ["podman", "exec", "drlab-prod", "bash", "-c", script]


@dataclass
class PhaseResult:
    name: str
    seconds: float
    ok: bool
    log: str
    detail: dict | None = None
    # The part of the phase that was outage, when less than all of it.
    outage_seconds: float | None = None


@dataclass
class ScenarioResult:
    name: str
    title: str
    plan_section: str
    ok: bool
    rto_seconds: float | None
    rpo_seconds: float | None
    phases: list[PhaseResult] = field(default_factory=list)
    error: str = ""
    rpo_detail: dict | None = None


BOT_HOME = "/home/tradingbot/mojo-trading-bot"


def standby_crash(lab: list[str], mode: str) -> Scenario:
    """Primary SIGKILLed mid-stream with a streaming standby (async or sync), failover to the standby; RPO is the
    acknowledged writer rows missing on the promoted standby (sync: must be 0)."""
    return Scenario(
        name="primary_crash_with_standby" if mode == "async" else "primary_crash_with_sync_standby",
        title=f"Primary crash with {'an asynchronous' if mode == 'async' else 'a synchronous'} standby: "
        "failover to the standby",
        plan_section="1.2, 2.1",
        phases=[
            Phase(
                "prepare: prod and standby rebuilt, failover hosts removed",
                [
                    "bash",
                    "-c",
                    "podman rm --force drlab-prod drlab-standby $(podman ps --all --quiet --filter label=drlab=fresh)",
                ],
                "prepare",
            ),
            Phase(
                "prepare: prod and standby up",
                [
                    *lab,
                    "-e",
                    "drlab_prod_image=localhost/drlab-provisioned:current",
                    "-e",
                    "drlab_standby_image=localhost/drlab-provisioned:current",
                ],
                "prepare",
            ),
            Phase("prepare: vps_setup", ansible_playbook("playbooks/vps_setup.yml"), "prepare"),
            Phase(
                f"prepare: streaming replication ({mode})",
                ansible_playbook("playbooks/replication.yml", "-e", f"replication_mode={mode}"),
                "prepare",
            ),
            Phase("prepare: writer commits numbered rows", ansible_playbook("lab/rpo_writer.yml"), "prepare"),
            Phase("disaster: prod killed (SIGKILL) mid-stream", ["podman", "kill", "drlab-prod"], "disaster"),
            # The whole server is down, so the fence cannot reach it: the operator confirms it (it fails closed).
            Phase(
                "failover to the standby (old server confirmed down)",
                ansible_playbook(
                    "playbooks/failover.yml",
                    "-e",
                    "failover_target=standby",
                    "-e",
                    "failover_confirm=prod",
                    "-e",
                    "fence_unreachable_confirmed=true",
                ),
                detail=newest_failover_record,
            ),
            Phase("verify: bot.drlab.test answers healthy", [python_bin(), "-m", "mojorust_dr.labcheck"], "verify"),
        ],
        rpo_after=rows_lost_on("drlab-standby"),
    )


def python_bin() -> str:
    return str(ROOT / ".venv/bin/python")


def scenarios() -> dict[str, Scenario]:
    lab = ansible_playbook("lab/lab.yml")
    verify = Phase("verify", ansible_module("prod", "mojorust.dr.bot_health", "expect_trading=true"), "verify")
    backup = Phase("prepare: backup tools and a set", ansible_playbook("playbooks/backup.yml"), "prepare")
    wal_archive = Phase(
        "prepare: WAL archiving and a base backup",
        ansible_playbook("playbooks/wal_archive.yml", "-e", "wal_archive_hosts=tradingbot"),
        "prepare",
    )
    # WAL archived while a writer commits numbered rows for longer than one archive_timeout (60 s): the loss must
    # stay within it, not the whole run (rows_lost_on counts it after the recovery).
    archiving_while_writing = [
        wal_archive,
        Phase(
            "prepare: writer commits numbered rows",
            ansible_playbook("lab/rpo_writer.yml", "-e", "rpo_writer_hosts=tradingbot"),
            "prepare",
        ),
        Phase("prepare: the writer goes on for 70 s", ["sleep", "70"], "prepare"),
    ]
    # The failover drills start from a running bot server whose newest set is off-site, with no failover host left
    # from an earlier run; prod is rebuilt from the provisioned image (the state vps_setup leaves) when fenced or gone.
    failover_prepare = [
        Phase(
            "prepare: failover hosts of earlier runs removed, prod rebuilt",
            # the standby too: after a standby drill it is a primary running a bot
            [
                "bash",
                "-c",
                "podman rm --force drlab-prod drlab-standby $(podman ps --all --quiet --filter label=drlab=fresh)",
            ],
            "prepare",
        ),
        Phase("prepare: prod up", [*lab, "-e", "drlab_prod_image=localhost/drlab-provisioned:current"], "prepare"),
        Phase("prepare: vps_setup", ansible_playbook("playbooks/vps_setup.yml"), "prepare"),
        backup,
        Phase("prepare: the set pushed off-site", ansible_playbook("playbooks/offsite.yml"), "prepare"),
    ]
    failover = Phase(
        "failover to a fresh host",
        ansible_playbook("playbooks/failover.yml", "-e", "failover_target=fresh", "-e", "failover_confirm=prod"),
        detail=newest_failover_record,
    )
    # The data center is gone: the operator confirms the old server is down (the fence fails closed otherwise).
    failover_confirmed = Phase(
        "failover to a fresh host (old server confirmed down)",
        ansible_playbook(
            "playbooks/failover.yml",
            "-e",
            "failover_target=fresh",
            "-e",
            "failover_confirm=prod",
            "-e",
            "fence_unreachable_confirmed=true",
        ),
        detail=newest_failover_record,
    )
    python = str(ROOT / ".venv/bin/python")
    at_dns_name = Phase("verify: bot.drlab.test answers healthy", [python, "-m", "mojorust_dr.labcheck"], "verify")
    return {
        s.name: s
        for s in [
            Scenario(
                name="fresh_deploy",
                title="Fresh deploy: bare host to healthy bot",
                plan_section="2.1 B step 2",
                phases=[
                    Phase(
                        "disaster: prod replaced by a bare host", ["podman", "rm", "--force", "drlab-prod"], "disaster"
                    ),
                    Phase("provision", lab),
                    Phase("vps_setup", ansible_playbook("playbooks/vps_setup.yml")),
                    verify,
                ],
            ),
            Scenario(
                name="database_corruption",
                title="Database corruption: a table dropped",
                plan_section="2.2",
                phases=[
                    backup,
                    Phase(
                        "disaster: positions table dropped",
                        in_prod("su postgres -c \"psql -q -d trading_db -c 'DROP TABLE positions CASCADE'\""),
                        "disaster",
                    ),
                    Phase("db_restore", ansible_playbook("playbooks/db_restore.yml")),
                    verify,
                ],
                rpo=newest_set_age,
            ),
            Scenario(
                name="config_corruption",
                title="Configuration corruption: trading.toml damaged, .env deleted",
                plan_section="2.4",
                phases=[
                    Phase(
                        "disaster: trading.toml damaged, .env deleted, bot restarted",
                        in_prod(
                            f"echo 'port = [[[' >> {BOT_HOME}/config/trading.toml && rm {BOT_HOME}/.env"
                            " && systemctl restart --no-block trading-bot"
                        ),
                        "disaster",
                    ),
                    Phase("restore config", ansible_playbook("playbooks/restore.yml", "-e", "restore_scope=config")),
                    verify,
                ],
                rpo=newest_set_age,
            ),
            Scenario(
                name="accidental_delete_pitr",
                title="Accidental delete: every trade deleted by mistake; point-in-time recovery to just before",
                plan_section="2.2 (PITR)",
                phases=[
                    wal_archive,
                    Phase(
                        "prepare: the moment before the mistake is noted",
                        [
                            "bash",
                            "-c",
                            "sleep 1 && podman exec drlab-prod su postgres -c \"psql -Atqc 'SELECT clock_timestamp()'\""
                            f" > {PITR_TARGET} && sleep 1",
                        ],
                        "prepare",
                    ),
                    Phase(
                        "disaster: DELETE FROM trades",
                        in_prod("su postgres -c \"psql -q -d trading_db -c 'DELETE FROM trades'\""),
                        "disaster",
                    ),
                    Phase(
                        "pitr to the noted moment",
                        [
                            "bash",
                            "-c",
                            " ".join(ansible_playbook("playbooks/pitr.yml"))
                            + f" -e \"target_time='$(cat {PITR_TARGET})'\"",
                        ],
                    ),
                    verify,
                ],
                rpo=since_pitr_target,
            ),
            Scenario(
                name="wal_archive_only",
                title="Database lost, no standby: point-in-time recovery to the end of the WAL archive",
                plan_section="2.2 (PITR, latest)",
                phases=[
                    *archiving_while_writing,
                    Phase(
                        "disaster: PostgreSQL killed (SIGKILL), its data directory lost",
                        in_prod("systemctl kill --signal=KILL postgresql@15-main; rm -rf /var/lib/postgresql/15/main"),
                        "disaster",
                    ),
                    Phase(
                        "pitr to the end of the archive",
                        ansible_playbook("playbooks/pitr.yml", "-e", "target_time=latest"),
                    ),
                    verify,
                ],
                rpo_after=rows_lost_on("drlab-prod"),
            ),
            standby_crash(lab, "async"),
            standby_crash(lab, "sync"),
            Scenario(
                name="server_loss",
                title="Server loss: failing hardware, database disk gone; failover to a fresh host",
                plan_section="2.1 B",
                phases=[
                    *failover_prepare,
                    Phase(
                        "disaster: bot and PostgreSQL killed, database directory lost (the host still answers)",
                        in_prod(
                            "systemctl kill --signal=KILL postgresql@15-main trading-bot;"
                            " rm -rf /var/lib/postgresql/15/main/base"
                        ),
                        "disaster",
                    ),
                    failover,
                    at_dns_name,
                ],
                rpo=newest_offsite_age,
            ),
            # The lost server archived WAL off-site: the new host replays it past the set, so the loss is what was
            # not archived yet (at most archive_timeout), not everything since the set. Prod is made from the bare
            # image here, so its cluster (and WAL archive) is its own, not the provisioned image's of earlier runs.
            Scenario(
                name="datacenter_outage",
                title="Data-center outage: prod gone entirely; failover to a fresh host, WAL replayed from the bucket",
                plan_section="2.5",
                phases=[
                    failover_prepare[0],
                    Phase("prepare: prod up (bare; a cluster of its own)", lab, "prepare"),
                    *failover_prepare[2:],
                    *archiving_while_writing,
                    # SIGKILL, as a power loss: a clean stop would let PostgreSQL archive its last segment.
                    Phase(
                        "disaster: prod killed and removed, disk and all",
                        ["podman", "rm", "--force", "--time", "0", "drlab-prod"],
                        "disaster",
                    ),
                    failover_confirmed,
                    at_dns_name,
                ],
                rpo_after=rows_lost_on(newest_fresh_host),
            ),
            Scenario(
                name="key_compromise",
                title="Key compromise: every secret rotated, new wallet, restored from the set before the breach",
                plan_section="2.3",
                phases=[
                    *failover_prepare[:4],
                    # The warm standby holds the same .env and wallet: breach.yml rotates and sweeps it too.
                    Phase(
                        "prepare: a warm standby streams from prod",
                        ansible_playbook("playbooks/replication.yml"),
                        "prepare",
                    ),
                    Phase(
                        "prepare: the breach begins; the operator's new provider keys",
                        ["bash", "-c", f"sleep 1 && {python_bin()} -m mojorust_dr.breachprep {BREACH_DIR} && sleep 1"],
                        "prepare",
                    ),
                    Phase(
                        "disaster: a stolen key is used on the host (left in root's shell history)",
                        in_prod(
                            "echo \"curl 'https://mainnet.helius-rpc.com/?api-key=$(sed -n 's/^HELIUS_API_KEY=//p'"
                            f" {BOT_HOME}/.env)'\" >> /root/.bash_history"
                        ),
                        "disaster",
                    ),
                    Phase(
                        "breach.yml",
                        [
                            "bash",
                            "-c",
                            " ".join(ansible_playbook("playbooks/breach.yml"))
                            + f" -e \"breach_time='$(cat {BREACH_DIR}/breach-time)'\" -e @{BREACH_DIR}/new-keys.yml"
                            # the lab's own S3 pair is not revoked in the drill (later drills still use it): the
                            # operator confirms that step, as the providers' ones
                            " -e key_rotation_confirm_manual=HELIUS_API_KEY,QUICKNODE_API_KEY,TELEGRAM_BOT_TOKEN"
                            ",OFFSITE_SECRET_ACCESS_KEY"
                            " -e key_rotation_send_transfer=true",
                        ],
                        detail=newest_incident_record,
                    ),
                    verify,
                ],
                rpo=newest_set_age,
            ),
        ]
    }


def run_command(command: list[str], out: IO[str], runner_dir: Path, ident: str) -> int:
    """Run one phase's command; Ansible commands go through ansible-runner (its artifacts under runner_dir/ident)."""
    if Path(command[0]).name in ("ansible-playbook", "ansible"):
        _, _, returncode = ansible_runner.run_command(
            executable_cmd=command[0],
            cmdline_args=command[1:],
            runner_mode="subprocess",
            output_fd=out,
            error_fd=out,
            host_cwd=str(ROOT),
            private_data_dir=str(runner_dir),
            ident=ident,
            quiet=True,
        )
        return returncode
    return subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def run_phase(phase: Phase, log_dir: Path, index: int) -> PhaseResult:
    log = log_dir / f"{index:02d}-{phase.name.split(':')[0].replace(' ', '_')}.log"
    start, wall = time.monotonic(), time.time()
    with log.open("w") as out:
        out.write("$ " + " ".join(phase.command) + "\n")
        out.flush()
        returncode = run_command(phase.command, out, log_dir / "runner", f"{index:02d}")
    detail = phase.detail(wall) if phase.detail else None
    outage = None
    if detail and detail.get("verified_at"):
        # The playbook goes on after the bot is verified (the new host's first backup): that is not outage.
        outage = round(float(detail["verified_at"]) - wall, 2)
    seconds = round(time.monotonic() - start, 2)
    return PhaseResult(phase.name, seconds, returncode == 0, str(log), detail, outage)


def run_scenario(scenario: Scenario, log_dir: Path) -> ScenarioResult:
    log_dir.mkdir(parents=True, exist_ok=True)
    result = ScenarioResult(scenario.name, scenario.title, scenario.plan_section, False, None, None)
    for index, phase in enumerate(scenario.phases, 1):
        if phase.kind == "disaster":
            result.rpo_seconds = scenario.rpo()
        print(f"  [{scenario.name}] {phase.name} ...", end="", flush=True)
        outcome = run_phase(phase, log_dir, index)
        result.phases.append(outcome)
        print(f" {'ok' if outcome.ok else 'FAILED'} in {outcome.seconds:.1f} s", flush=True)
        if not outcome.ok:
            result.error = f"phase '{phase.name}' failed; see {outcome.log}"
            return result
    result.ok = True
    if scenario.rpo_after:
        result.rpo_seconds, result.rpo_detail = scenario.rpo_after()
    kinds = [p.kind for p in scenario.phases]
    outage = result.phases[kinds.index("disaster") :]
    result.rto_seconds = round(sum(p.seconds if p.outage_seconds is None else p.outage_seconds for p in outage), 2)
    return result


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def verdict(value: float | None, aim: float, plan: float) -> str:
    if value is None:
        return "n/a"
    if value <= aim:
        return "10x better than plan"
    return "within plan" if value <= plan else "MISSED"


def render_markdown(report: dict) -> str:
    lines = [
        f"# Disaster drill {report['started_at']}",
        "",
        f"Host: {report['machine']['host']} ({report['machine']['cores']} cores). Targets: RTO plan "
        f"{PLAN_RTO_SECONDS / 60:.0f} min (aim {AIM_RTO_SECONDS:.0f} s), RPO plan {PLAN_RPO_SECONDS / 60:.0f} min "
        f"(aim {AIM_RPO_SECONDS:.0f} s).",
        "",
        "| scenario | plan § | result | RTO | vs target | RPO | vs target |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report["scenarios"]:
        lines.append(
            f"| {s['title']} | {s['plan_section']} | {'pass' if s['ok'] else 'FAIL'} | {_seconds(s['rto_seconds'])} "
            f"| {verdict(s['rto_seconds'], AIM_RTO_SECONDS, PLAN_RTO_SECONDS)} | {_seconds(s['rpo_seconds'])} "
            f"| {verdict(s['rpo_seconds'], AIM_RPO_SECONDS, PLAN_RPO_SECONDS)} |"
        )
    for s in report["scenarios"]:
        lines += ["", f"## {s['title']}", "", "| phase | seconds | result |", "|---|---|---|"]
        for p in s["phases"]:
            seconds = f"{p['seconds']:.1f}"
            if p.get("outage_seconds") is not None:
                seconds += f" (outage {p['outage_seconds']:.1f})"
            lines.append(f"| {p['name']} | {seconds} | {'ok' if p['ok'] else 'FAILED'} |")
            inner = (p.get("detail") or {}).get("phases", {})
            lines += [f"| &nbsp;&nbsp;↳ {name} | {seconds:.1f} | |" for name, seconds in inner.items()]
        detail = s.get("rpo_detail")
        if detail:
            lines += [
                "",
                f"RPO measured: {detail['acked']} rows acknowledged to the writer, {detail['lost']} missing "
                "on the new primary.",
            ]
        if s["error"]:
            lines += ["", f"**Error:** {s['error']}"]
    return "\n".join(lines) + "\n"


def lab_telegram() -> tuple[str, str, str]:
    """The lab's Telegram stand-in (drlab-edge, which records every message) and the bot's lab token and chat."""
    out = subprocess.run(["podman", "inspect", "drlab-edge"], capture_output=True, text=True, check=True).stdout
    address = json.loads(out)[0]["NetworkSettings"]["Networks"]["drlab"]["IPAddress"]
    secrets = (ROOT / "inventories/lab/group_vars/all/lab_secrets.yml").read_text()
    value = {
        key: next(line.split(":", 1)[1].strip().strip('"') for line in secrets.splitlines() if f"{key}:" in line)
        for key in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID")
    }
    return f"http://{address}:8080", value["TELEGRAM_BOT_TOKEN"], value["TELEGRAM_CHAT_ID"]


def run(names: list[str], report_dir: Path, telegram: tuple[str, str, str] | None = None) -> int:
    available = scenarios()
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(available)}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir = report_dir / f"drill-{stamp}-logs"
    print(f"drill {stamp}: {', '.join(names)}")
    results = [run_scenario(available[n], log_dir / n) for n in names]
    report = {
        "started_at": stamp,
        "machine": {"host": os.uname().nodename, "cores": os.cpu_count()},
        "targets": {
            "plan_rto_seconds": PLAN_RTO_SECONDS,
            "plan_rpo_seconds": PLAN_RPO_SECONDS,
            "aim_rto_seconds": AIM_RTO_SECONDS,
            "aim_rpo_seconds": AIM_RPO_SECONDS,
        },
        "scenarios": [asdict(r) for r in results],
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"drill-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    (report_dir / f"drill-{stamp}.md").write_text(markdown)
    (report_dir / f"drill-{stamp}.html").write_text(report_module.render_html(report, markdown))
    (report_dir / f"drill-{stamp}.junit.xml").write_text(report_module.render_junit(report))
    print()
    print(markdown)
    print(f"report: {report_dir / f'drill-{stamp}'}.{{json,md,html,junit.xml}}; logs in {log_dir}")
    if telegram:
        problem = report_module.send_telegram(report_module.summary_text(report), *telegram)
        print(problem or "summary sent to Telegram", file=sys.stderr if problem else sys.stdout)
    missed = report_module.missed_targets(report)
    for line in missed:
        print(f"MISSED: {line}", file=sys.stderr)
    return 1 if missed else 0
