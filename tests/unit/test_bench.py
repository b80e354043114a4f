"""The pure logic of `make bench` (bench/benchlib.py): statistics, parsing of Ansible output, drill medians,
targets, the table and the hand-drawn PNG chart."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import benchlib


def test_summarize_median_and_spread():
    stats = benchlib.summarize([12.0, 10.0, 11.0])
    assert stats["median"] == 11.0
    assert (stats["min"], stats["max"], stats["runs"]) == (10.0, 12.0, 3)
    assert stats["spread_pct"] == pytest.approx(18.2)
    assert stats["samples"] == [12.0, 10.0, 11.0]


def test_summarize_even_count_and_empty():
    assert benchlib.summarize([1, 2, 3, 4])["median"] == 2.5
    empty = benchlib.summarize([])
    assert empty["runs"] == 0
    assert empty["median"] is None


def test_summarize_zero_median_has_no_division():
    assert benchlib.summarize([0.0, 0.0])["spread_pct"] == 0.0


def test_ratio_and_throughput():
    assert benchlib.ratio(30, 10) == 3.0
    assert benchlib.ratio(None, 10) is None
    assert benchlib.ratio(10, 0) is None
    assert benchlib.mib_per_second(100 * benchlib.MIB, 4) == 25.0
    assert benchlib.mib_per_second(None, 4) is None
    assert benchlib.mib_per_second(100, 0) is None


PLAYBOOK_OUTPUT = """
TASK [Report what was done and how long the bot was down] ***
ok: [prod] =>
    msg:
    - restored set 20261126T035226Z into trading_db, the replaced database kept as trading_db_before_x
    - bot down 14.69 s (pg_restore 0.689 s)

PLAY RECAP *********************************************************************
prod                       : ok=37   changed=9    unreachable=0    failed=0    skipped=3    rescued=0    ignored=0
localhost                  : ok=2    changed=0    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0

TASKS RECAP ********************************************************************
Thursday 26 November 2026  03:42:46 +0000 (0:00:02.327)       0:00:47.912 *****
===============================================================================
mojorust.dr.db_restore : (1/6) The set passes every integrity check --- 3.05s
mojorust.dr.db_restore : Set is restored into it and every table matches the manifest -- 6.20s
mojorust.dr.recovery_key : Operator's key is brought to tmpfs ----------- 1.10s
"""


def test_parse_recap():
    recap = benchlib.parse_recap(PLAYBOOK_OUTPUT)
    assert recap["prod"] == {"ok": 37, "changed": 9, "unreachable": 0, "failed": 0}
    assert recap["localhost"]["ok"] == 2


def test_parse_profile_tasks_slowest_first():
    tasks = benchlib.parse_profile_tasks(PLAYBOOK_OUTPUT)
    assert tasks[0] == ("mojorust.dr.db_restore : Set is restored into it and every table matches the manifest", 6.2)
    assert [seconds for _, seconds in tasks] == [6.2, 3.05, 1.1]


def test_parse_db_restore():
    parsed = benchlib.parse_db_restore(PLAYBOOK_OUTPUT)
    assert parsed["bot_down_seconds"] == 14.69
    assert parsed["engine_seconds"] == 0.689


def test_parse_pitr():
    text = "ok: [prod] =>\n    msg:\n    - trading_db recovered to latest\n    - bot down 4.21 s\n"
    assert benchlib.parse_pitr(text) == {"bot_down_seconds": 4.21}
    # a bot that was not running before (a new host) has no downtime to report
    assert benchlib.parse_pitr("    - bot down None s\n") == {"bot_down_seconds": None}
    assert benchlib.parse_pitr("nothing") == {"bot_down_seconds": None}


def test_parse_db_restore_without_report():
    assert benchlib.parse_db_restore("nothing") == {"bot_down_seconds": None, "engine_seconds": None}


def _scenario(name, ok, rto, rpo=None):
    return {"name": name, "title": name.title(), "ok": ok, "rto_seconds": rto, "rpo_seconds": rpo}


def test_drill_medians_count_only_passed_runs():
    reports = [
        {"scenarios": [_scenario("db", True, 30.0, 1.0), _scenario("standby", True, 12.0, 0.0)]},
        {"scenarios": [_scenario("db", True, 28.0, 2.0), _scenario("standby", False, 99.0, 5.0)]},
        {"scenarios": [_scenario("db", True, 40.0, 3.0)]},
    ]
    medians = benchlib.drill_medians(reports)
    assert medians["db"]["rto"]["median"] == 30.0
    assert medians["db"]["rpo"]["median"] == 2.0
    assert (medians["db"]["reports"], medians["db"]["passed_runs"]) == (3, 3)
    assert medians["standby"]["rto"]["median"] == 12.0
    assert (medians["standby"]["reports"], medians["standby"]["passed_runs"]) == (2, 1)


def _entry(median, size=None):
    entry = {"seconds": benchlib.summarize([median]), "label": "x"}
    if size is not None:
        entry["bytes"] = size
    return entry


def _results():
    return {
        "machine": {"cores": 2},
        "database": {"bytes": 1500 * benchlib.MIB, "scale": 95},
        "backup": {"ours": _entry(10.0, 500), "naive": _entry(60.0), "pgbackrest": _entry(12.5)},
        "restore": {
            "ours": _entry(22.0),
            "naive": _entry(120.0),
            "pg_restore_j": _entry(18.0),
            "pgbackrest": _entry(8.0),
            "ours_physical": _entry(12.0),
        },
        "ansible": {"verify": _entry(4.0), "vps_setup_rerun": _entry(70.0)},
        "recovery_paths": {
            "primary_crash_with_standby": {
                "title": "t",
                "reports": 2,
                "passed_runs": 2,
                "rto": benchlib.summarize([12.0, 10.0]),
                "rpo": benchlib.summarize([0.0]),
            }
        },
    }


def test_evaluate_targets():
    targets = {t["target"]: t for t in benchlib.evaluate_targets(_results())}
    assert targets["backup: ours / pgBackRest full"]["value"] == 0.8
    assert targets["backup: ours / pgBackRest full"]["met"] is True
    assert targets["backup: naive / ours"]["value"] == 6.0
    assert targets["backup: naive / ours"]["met"] is True
    logical = targets["restore, logical set: db_restore.yml / pg_restore -j"]
    assert (logical["value"], logical["met"]) == (1.22, True)
    physical = targets["restore, physical: pitr.yml latest / pgbackrest restore"]
    assert (physical["value"], physical["met"]) == (1.5, False)
    assert targets["restore: naive / ours"]["value"] == 5.45
    assert targets["verify.yml, one host"]["met"] is True
    assert targets["vps_setup.yml no-change rerun"]["met"] is False
    assert targets["standby failover RTO (drill median)"]["value"] == 11.0


def test_evaluate_targets_not_measured():
    targets = benchlib.evaluate_targets({})
    assert all(t["met"] is None and t["value"] is None for t in targets)


def test_render_table_rows_and_ratios():
    table = benchlib.render_table({**_results(), "targets": benchlib.evaluate_targets(_results())})
    lines = table.splitlines()
    assert lines[0].startswith("database 1500 MiB (pgbench scale 95), 2 cores")
    naive = next(line for line in lines if line.startswith("x ") and "6.00x" in line)
    assert "60.0" in naive
    assert any("primary_crash_with_standby" in line and "RTO   11.0 s" in line for line in lines)
    assert any(line.startswith("vps_setup.yml no-change rerun") and "MISSED" in line for line in lines)
    assert any(line.startswith("backup: ours / pgBackRest full") and "met" in line for line in lines)


def _image(data: bytes):
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _has_color(image, color, tolerance: int = 3) -> bool:
    return any(all(abs(a - b) <= tolerance for a, b in zip(pixel, color, strict=True)) for _, pixel in
               image.getcolors(maxcolors=1 << 20))  # fmt: skip


def test_chart_is_a_png_of_the_asked_width_drawn_by_matplotlib_with_bars():
    results = _results()
    results["restore"]["ours"]["engine_seconds"] = benchlib.summarize([8.0])
    panels = benchlib.chart_panels(results)
    assert [title for title, _ in panels] == ["BACKUP, seconds", "RESTORE, seconds"]
    assert next(bar for bar in panels[1][1] if bar["ours"])["part"] == 8.0
    data = benchlib.chart_png("make bench test", panels, width=640)
    image = _image(data)
    assert image.size[0] == 640
    assert b"matplotlib" in data  # its Software text chunk
    assert _has_color(image, benchlib.OURS_COLOR)  # the bar of ours is drawn
    assert _has_color(image, benchlib.ENGINE_COLOR)


def test_chart_marks_unmeasured_bars():
    panels = [("BACKUP, seconds", [{"label": "ours", "median": None, "min": None, "max": None, "ours": True}])]
    image = _image(benchlib.chart_png("t", panels, width=400))
    assert not _has_color(image, benchlib.OURS_COLOR)
    assert _has_color(image, (0x96, 0, 0), tolerance=40)  # "not measured", in red


def test_backup_phases_from_progress_lines():
    lines = [
        (0.4, "dumping trading_db from snapshot 00000003-0000001B-1"),
        (9.0, "packing files"),
        (12.5, "verifying before publishing"),
        (14.0, "published /home/tradingbot/backups/20261126T035029Z"),
        (14.2, '{"id": "20261126T035029Z"}'),
    ]
    phases = benchlib.backup_phases(lines, 14.5)
    assert phases == {
        "start (python, lock, connect)": 0.4,
        "dump + table checksums": 8.6,
        "files, manifest, tar, sha256, signature": 3.5,
        "verify before publishing": 1.5,
        "retention and exit": 0.5,
    }
    assert sum(phases.values()) == pytest.approx(14.5)


def test_backup_phases_without_marks_is_one_phase():
    assert benchlib.backup_phases([], 3.0) == {"start (python, lock, connect)": 3.0}


def test_summarize_values_numbers_mappings_and_other():
    assert benchlib.summarize_values([1.0, None, 3.0])["median"] == 2.0
    phases = benchlib.summarize_values([{"verify": 2.0, "swap": 1.0}, {"verify": 4.0, "swap": 3.0}])
    assert phases["verify"]["median"] == 3.0
    assert phases["swap"]["runs"] == 2
    assert benchlib.summarize_values([[("task", 1.0)]]) == [[("task", 1.0)]]


def test_table_shows_where_the_time_of_ours_goes():
    results = _results()
    results["restore"]["ours"]["engine_seconds"] = benchlib.summarize([15.0, 16.0, 14.0])
    results["restore"]["ours"]["phases"] = {"restore": benchlib.summarize([20.0])}
    table = benchlib.render_table(results)
    engine = next(line for line in table.splitlines() if "of which engine" in line)
    assert "15.0" in engine
    assert "0.68x" in engine
    assert any(line.startswith("  phase restore") for line in table.splitlines())
