"""Unit tests for the backup drill's choice of set (plugins/module_utils/drill_select.py and its filter)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.mojorust.dr.plugins.filter import backup_drill as drill_plugin
from ansible_collections.mojorust.dr.plugins.module_utils import drill_select
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, 4, 0, 0, tzinfo=UTC)


def ago(days: float, now: datetime = NOW) -> str:
    return (now - timedelta(days=days)).strftime("%Y%m%dT%H%M%SZ")


AGES = [1, 3, 6.9, 7, 8, 10, 14, 14.1, 20]
IDS = [ago(d) for d in AGES]


def test_filter_is_registered():
    assert drill_plugin.FilterModule().filters() == {"backup_drill_choice": drill_plugin.backup_drill_choice}


# ------------------------------------------------------------------------------------------------- ids parsing
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("20261125T020000Z", datetime(2026, 11, 25, 2, 0, 0, tzinfo=UTC)),
        ("/home/tradingbot/backups/20261125T020000Z", datetime(2026, 11, 25, 2, 0, 0, tzinfo=UTC)),
        ("mojorust/20261125T020000Z/", datetime(2026, 11, 25, 2, 0, 0, tzinfo=UTC)),
        (".partial-20261125T020000Z", None),
        ("LAST_GOOD", None),
        (".status.json", None),
        ("20261125T020000", None),
        ("20261125T020000Zx", None),
        ("20261332T020000Z", None),  # month 13
        ("20261125T250000Z", None),  # hour 25
        ("", None),
    ],
)
def test_set_ids_are_parsed_and_anything_else_ignored(name, expected):
    assert drill_select.parse_set_id(name) == expected


def test_set_ids_are_unique_and_oldest_first():
    names = ["/b/20261120T000000Z", "20261101T000000Z", "20261120T000000Z", ".partial-20261121T000000Z", "junk"]
    assert drill_select.set_ids(names) == ["20261101T000000Z", "20261120T000000Z"]
    assert drill_select.set_ids(None) == []


# ---------------------------------------------------------------------------------------------- window bounds
def test_window_is_inclusive_on_both_ends_and_nothing_outside_it():
    choice = drill_select.choose_set(IDS, seed="s", now=NOW)
    assert choice["candidates"] == [ago(14), ago(10), ago(8), ago(7)]
    assert choice["window"] == {
        "from": "2026-11-12T04:00:00Z",
        "to": "2026-11-19T04:00:00Z",
        "min_days": 7.0,
        "max_days": 14.0,
    }
    assert choice["id"] in choice["candidates"]
    assert [s["id"] for s in choice["sets"]] == sorted(IDS)
    assert {s["id"]: s["age_days"] for s in choice["sets"]}[ago(20)] == 20.0


def test_window_one_second_outside_is_out():
    ids = [ago(7), ago(14)]
    inner = (NOW - timedelta(days=7, seconds=-1)).strftime("%Y%m%dT%H%M%SZ")  # 1 s too young
    outer = (NOW - timedelta(days=14, seconds=1)).strftime("%Y%m%dT%H%M%SZ")  # 1 s too old
    choice = drill_select.choose_set([*ids, inner, outer], now=NOW)
    assert choice["candidates"] == [ago(14), ago(7)]


def test_window_is_configurable():
    choice = drill_select.choose_set(IDS, now=NOW, min_days=0, max_days=2)
    assert choice["candidates"] == [ago(1)]
    assert choice["id"] == ago(1)
    wide = drill_select.choose_set(IDS, now=NOW, min_days="0", max_days="30")
    assert wide["candidates"] == sorted(IDS)


@pytest.mark.parametrize(("low", "high"), [(10, 7), (-1, 5), ("a", 3)])
def test_a_window_that_cannot_hold_anything_is_refused(low, high):
    with pytest.raises(drill_select.DrillSelectError, match="window"):
        drill_select.choose_set(IDS, now=NOW, min_days=low, max_days=high)
    with pytest.raises(AnsibleFilterError, match=r"backup_drill_choice: .*window"):
        drill_plugin.backup_drill_choice(IDS, now=NOW, min_days=low, max_days=high)


# ---------------------------------------------------------------------------------------------------- seeding
def test_the_rule_is_the_documented_one():
    choice = drill_select.choose_set(IDS, seed="2026-11", now=NOW)
    index = int(hashlib.sha256(b"2026-11").hexdigest()[:16], 16) % 4
    assert choice["index"] == index
    assert choice["id"] == choice["candidates"][index]


def test_same_seed_same_set_and_the_default_seed_is_the_date():
    first = drill_select.choose_set(IDS, now=NOW)
    assert first["seed"] == "2026-11-26"
    assert first == drill_select.choose_set(list(reversed(IDS)), now=NOW.isoformat())
    assert first == drill_select.choose_set(IDS, seed="2026-11-26", now="2026-11-26T04:00:00Z")
    assert first == drill_plugin.backup_drill_choice(IDS, now="2026-11-26 04:00:00")


def test_different_seeds_reach_every_candidate():
    chosen = {drill_select.choose_set(IDS, seed=str(n), now=NOW)["id"] for n in range(64)}
    assert chosen == {ago(14), ago(10), ago(8), ago(7)}


@settings(max_examples=200, deadline=None)
@given(
    ages=st.lists(st.integers(min_value=0, max_value=40 * 24), min_size=1, max_size=30),
    seed=st.text(max_size=20),
    low=st.integers(min_value=0, max_value=20),
    span=st.integers(min_value=0, max_value=20),
)
def test_property_choice_is_in_the_window_and_reproducible(ages, seed, low, span):
    ids = [ago(hours / 24) for hours in ages]
    choice = drill_select.choose_set(ids, seed=seed, now=NOW, min_days=low, max_days=low + span)
    again = drill_select.choose_set(list(reversed(ids)), seed=seed, now=NOW, min_days=low, max_days=low + span)
    assert choice == again
    if choice["id"]:
        age = (NOW - drill_select.parse_set_id(choice["id"])).total_seconds() / 86400
        assert low <= age <= low + span
        assert not choice["error"]
    else:
        assert not choice["candidates"]
        assert choice["error"]


# ----------------------------------------------------------------------------------------------- empty window
def test_empty_window_names_every_set_with_its_age():
    ids = [ago(3), ago(20), ".partial-" + ago(9)]
    choice = drill_select.choose_set(ids, seed="x", now=NOW)
    assert choice["id"] == ""
    assert choice["index"] is None
    assert choice["candidates"] == []
    assert f"{ago(3)} (3 d)" in choice["error"]
    assert f"{ago(20)} (20 d)" in choice["error"]
    assert ".partial" not in choice["error"]
    assert "7-14 days old" in choice["error"]
    assert "2026-11-12T04:00:00Z" in choice["error"]


def test_no_sets_at_all_says_so():
    choice = drill_select.choose_set([], now=NOW)
    assert choice["id"] == ""
    assert "none at all" in choice["error"]


# ----------------------------------------------------------------------------------------------- reference time
@pytest.mark.parametrize(
    "value",
    [NOW, NOW.replace(tzinfo=None), "2026-11-26T04:00:00Z", "2026-11-26 05:00:00+01:00", "20261126T040000Z"],
)
def test_reference_time_forms(value):
    assert drill_select.parse_now(value) == NOW


def test_reference_time_defaults_to_the_clock_and_bad_text_is_refused():
    before = datetime.now(UTC).replace(microsecond=0)
    assert drill_select.parse_now("") >= before
    with pytest.raises(drill_select.DrillSelectError, match="ISO 8601"):
        drill_select.parse_now("last tuesday")


# ------------------------------------------------------------------------------------------- playbook inputs
def _drill(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_NOCOLOR="1",
    )
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        "localhost,",
        str(ROOT / "playbooks" / "backup_drill.yml"),
        "-e",
        f"backup_drill_history={tmp_path / 'history.jsonl'}",
        *extra,
    ]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["-e", "backup_drill_min_days=10", "-e", "backup_drill_max_days=7"],
            "backup_drill_min_days <= backup_drill_max_days",
        ),
        (["-e", "backup_drill_source=ftp"], "backup_drill_source"),
    ],
    ids=["empty-window", "unknown-source"],
)
def test_bad_input_stops_the_drill_before_any_host_and_records_nothing(tmp_path, extra, expected):
    result = _drill(tmp_path, *extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in out
    assert "Sets on the source host" not in out
    assert not (tmp_path / "history.jsonl").exists()
