"""The drill's clock: RTO runs from the disaster to the verified bot, and a phase that goes on after the bot is
verified (the failover's first backup on the new host) counts only up to that moment."""

from __future__ import annotations

import json
import os
import sys
import time

from mojorust_dr import drill
from mojorust_dr.phases import step_seconds


def phase(name, seconds=0.0, kind="recover", detail=None):
    return drill.Phase(name, [sys.executable, "-c", f"import time; time.sleep({seconds})"], kind, detail)


def test_rto_counts_from_the_disaster_and_only_the_outage_part_of_a_longer_phase(tmp_path):
    scenario = drill.Scenario(
        "s",
        "title",
        "2.1",
        [
            phase("prepare", 0.3, "prepare"),
            phase("disaster", 0.0, "disaster"),
            # the playbook runs 0.6 s but reports the bot verified 0.1 s after it started
            phase("failover", 0.6, detail=lambda wall: {"phases": {"restore": 0.05}, "verified_at": wall + 0.1}),
            phase("verify", 0.0, "verify"),
        ],
        rpo=lambda: 12.5,
    )
    result = drill.run_scenario(scenario, tmp_path)
    assert result.ok and result.rpo_seconds == 12.5
    failover = result.phases[2]
    assert failover.seconds >= 0.6 and failover.outage_seconds == 0.1
    outage = [p.seconds for p in (result.phases[1], result.phases[3])]
    assert abs(result.rto_seconds - (sum(outage) + 0.1)) < 0.02
    assert result.rto_seconds < 0.6, "the prepare phase and the time after verification are not outage"


def test_a_failed_phase_stops_the_scenario_with_its_log(tmp_path):
    scenario = drill.Scenario(
        "s", "t", "2.2", [phase("disaster", kind="disaster"), drill.Phase("recover", ["false"]), phase("verify")]
    )
    result = drill.run_scenario(scenario, tmp_path)
    assert not result.ok and result.rto_seconds is None
    assert [p.name for p in result.phases] == ["disaster", "recover"]
    assert "recover" in result.error and result.phases[1].log in result.error


def test_markdown_shows_the_failovers_own_phases_and_the_verdicts():
    report = {
        "started_at": "20261125T220000Z",
        "machine": {"host": "lab", "cores": 2},
        "scenarios": [
            {
                "title": "Server loss",
                "plan_section": "2.1 B",
                "ok": True,
                "rto_seconds": 120.0,
                "rpo_seconds": 20.0,
                "error": "",
                "phases": [
                    {
                        "name": "failover",
                        "seconds": 135.0,
                        "ok": True,
                        "outage_seconds": 119.0,
                        "detail": {"phases": {"setup": 70.0, "restore": 40.0}},
                    },
                ],
            }
        ],
    }
    text = drill.render_markdown(report)
    assert "| Server loss | 2.1 B | pass | 120.0 s | within plan | 20.0 s | 10x better than plan |" in text
    assert "135.0 (outage 119.0)" in text
    assert "↳ setup | 70.0" in text and "↳ restore | 40.0" in text


def test_rows_lost_are_the_acknowledged_numbers_not_on_the_new_primary():
    from mojorust_dr import rpo

    assert rpo.compare({1, 2, 3, 4}, {1, 2, 9}) == {"acked": 4, "present": 2, "lost": 2, "lost_numbers": [3, 4]}
    # the table itself was never archived: every acknowledged row is lost
    assert rpo.compare({1, 2}, set())["lost"] == 2


def test_a_failover_after_the_whole_server_went_down_confirms_it_down():
    """The fence fails closed: an old server that does not answer stops the failover unless the operator confirms it
    is down. Where a drill's disaster takes the whole server away (podman kill / rm of drlab-prod), its failover must
    say so, or the drill fails at the fence (as the standby drills did once the fence stopped failing open)."""
    whole_server_gone = []
    for scenario in drill.scenarios().values():
        disaster = [p for p in scenario.phases if p.kind == "disaster"]
        failovers = [p for p in scenario.phases if "playbooks/failover.yml" in p.command]
        if failovers and any(
            p.command[:2] in (["podman", "kill"], ["podman", "rm"]) and "drlab-prod" in p.command for p in disaster
        ):
            whole_server_gone.append(scenario.name)
            for p in failovers:
                assert "fence_unreachable_confirmed=true" in p.command, scenario.name
    assert {"primary_crash_with_standby", "primary_crash_with_sync_standby", "datacenter_outage"} <= set(
        whole_server_gone
    )


def test_run_directly_the_drill_uses_the_labs_podman_settings(monkeypatch, tmp_path):
    """`mojorust-dr drill` outside make still gets lab/containers.conf (else every container fails on rlimits)."""
    from mojorust_dr import cli

    seen = {}

    def run(names, reports, telegram):
        seen["conf"] = os.environ.get("CONTAINERS_CONF")
        return 0

    monkeypatch.setenv("CONTAINERS_CONF", "set")  # so that monkeypatch restores the caller's value afterwards
    monkeypatch.delenv("CONTAINERS_CONF")
    monkeypatch.setattr(drill, "run", run)
    assert cli.main(["drill", "--scenario", "fresh_deploy", "--reports", str(tmp_path)]) == 0
    assert seen["conf"] == str(drill.ROOT / "lab" / "containers.conf")
    assert (drill.ROOT / "lab" / "containers.conf").is_file()


def test_the_datacenter_outage_drill_measures_the_rows_the_wal_replay_lost(monkeypatch):
    """Issue 16: the lost server archived WAL and a writer committed rows until the disaster; the RPO is the
    acknowledged rows missing on the host the failover provisioned (found once it exists), not the set's age."""
    monkeypatch.setattr(drill, "newest_fresh_host", lambda: "drlab-fresh-1234")
    scenario = drill.scenarios()["datacenter_outage"]
    commands = [" ".join(p.command) for p in scenario.phases]
    disaster = next(i for i, p in enumerate(scenario.phases) if p.kind == "disaster")
    before = " ".join(commands[:disaster])
    assert "playbooks/wal_archive.yml" in before and "lab/rpo_writer.yml" in before
    assert "drlab_prod_image=localhost/drlab-provisioned" not in before, "prod's cluster must be its own"
    asked = []

    def psql_on(container, sql):
        asked.append(container)
        return "rpo_probe\n" if "to_regclass" in sql else "1\n2\n3\n"

    monkeypatch.setattr(drill, "psql_on", psql_on)
    monkeypatch.setattr(drill.rpo, "read_acked", lambda path: {1, 2, 3, 4, 5})
    seconds, detail = scenario.rpo_after()
    assert set(asked) == {"drlab-fresh-1234"}
    assert detail["lost"] == 2 and seconds == 0.02


def test_the_failovers_own_phases_come_from_the_runs_phase_record(monkeypatch, tmp_path):
    """The drill reads each numbered play's time from the record the phase_record callback wrote for the run."""
    monkeypatch.setattr(drill, "ROOT", tmp_path)
    monkeypatch.setattr(drill, "PHASE_RECORDS", tmp_path / "reports/phases")
    drill.PHASE_RECORDS.mkdir(parents=True)
    phases = [
        {"kind": "play", "step": "1/7", "name": "FAILOVER | fence the old server", "seconds": 2.5},
        {"kind": "task", "step": "1/6", "name": "The set passes every integrity check", "seconds": 1.0},
        {"kind": "play", "step": "2/7", "name": "FAILOVER TO A NEW HOST | provision a new host", "seconds": 9.0},
        {"kind": "play", "step": "3/7", "name": "FAILOVER TO A NEW HOST | cut off here", "seconds": None},
    ]
    (drill.PHASE_RECORDS / "failover-20261206T200000Z-1.json").write_text(json.dumps({"phases": phases}))
    (drill.PHASE_RECORDS / "other-20261206T200000Z-2.json").write_text(json.dumps({"phases": phases[:1]}))
    (tmp_path / "reports/failover-20261206T200000Z.json").write_text(json.dumps({"verified_at": 5.0, "x": 1}))
    detail = drill.newest_failover_record(since=0.0)
    assert detail["phases"] == {"1/7 fence the old server": 2.5, "2/7 provision a new host": 9.0}
    assert detail["verified_at"] == 5.0 and "x" not in detail
    # A record older than the phase is not this run's.
    assert drill.playbook_step_seconds("failover.yml", since=time.time() + 60) == {}


def test_step_seconds_of_one_roles_numbered_tasks():
    """The bench reads db_restore's and pitr's own steps (tasks of the role) from the run's phase record."""
    record = {
        "phases": [
            {"kind": "play", "step": "1/1", "name": "RESTORE | the database", "role": None, "seconds": 30.0},
            {"kind": "task", "step": "1/6", "name": "The set passes every integrity check", "role": "db_restore",
             "seconds": 1.25},
            {"kind": "task", "step": "1/5", "name": "Probe the configuration repository", "role": "config_restore",
             "seconds": 0.5},
            {"kind": "task", "step": "4/6", "name": "Bot is stopped", "role": "db_restore", "seconds": 0.75},
            {"kind": "task", "step": "5/6", "name": "Swap the restored database in", "role": "db_restore",
             "seconds": None},
        ]
    }  # fmt: skip
    assert step_seconds(record, "task", "db_restore") == {
        "1/6 The set passes every integrity check": 1.25,
        "4/6 Bot is stopped": 0.75,
    }
    assert step_seconds(record) == {"1/1 the database": 30.0}
    assert step_seconds(None, "task", "db_restore") == {}
