"""pitr_window: the recoverable window from pgBackRest's info, and the base backup chosen for a target time."""

from __future__ import annotations

import pytest
from ansible_collections.mojorust.dr.plugins.modules import pitr_window as pw

T0 = 1_795_654_000  # a base backup ended here


def _backup(repo: int, label: str, stop: float, error: bool = False) -> dict:
    return {
        "database": {"id": 1, "repo-key": repo},
        "label": label,
        "type": "full",
        "timestamp": {"start": stop - 20, "stop": stop},
        "error": error,
    }


INFO = [
    {
        "name": "main",
        "backup": [
            _backup(1, "A1", T0),
            _backup(2, "A2", T0 + 5),
            _backup(1, "B1", T0 + 3600),
            _backup(2, "B2", T0 + 3605),
            _backup(1, "BAD", T0 + 7000, error=True),
        ],
    }
]


def test_good_backups_leave_out_errors_and_sort_by_end():
    labels = [b["label"] for b in pw.good_backups(INFO)]
    assert labels == ["A1", "A2", "B1", "B2"]


def test_window_starts_when_the_oldest_backup_ended():
    window = pw.window_of(pw.good_backups(INFO), end=T0 + 9000)
    assert window["start"] == T0 and window["end"] == T0 + 9000
    assert window["start_text"].startswith("2026-11-26") and window["end_basis"] == "archived now"


def test_no_backup_means_no_window_and_says_what_to_do():
    with pytest.raises(pw.WindowError, match=r"no good base backup.*wal_archive"):
        pw.window_of([], end=None)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (T0 + 60, "A1"),  # only the first backups ended before it; the local repository first
        (T0 + 3601, "B1"),  # the newest backup before it in repository 1
        (T0 + 3603, "B1"),
        (T0 + 4, "A1"),
    ],
)
def test_the_newest_backup_before_the_target_in_the_first_repository(target, expected):
    backups = pw.good_backups(INFO)
    window = pw.window_of(backups, end=T0 + 9000)
    chosen = pw.choose(backups, window, pw.text_of(target))
    assert chosen["set"] == expected and chosen["time"] == pytest.approx(target)


def test_a_backup_only_off_site_is_used_when_the_local_repository_has_none_before_the_target():
    backups = pw.good_backups([{"backup": [_backup(2, "S3", T0), _backup(1, "LOCAL", T0 + 100)]}])
    window = pw.window_of(backups, end=T0 + 9000)
    assert pw.choose(backups, window, pw.text_of(T0 + 50)) == {
        "time": pytest.approx(T0 + 50),
        "text": pw.text_of(T0 + 50),
        "repo": 2,
        "set": "S3",
    }


def test_latest_takes_the_newest_backup_of_the_first_repository():
    backups = pw.good_backups(INFO)
    chosen = pw.choose(backups, pw.window_of(backups, end=None), "latest")
    assert chosen == {"time": None, "text": "latest", "repo": 1, "set": "B1"}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (T0 - 3600, "before the oldest base backup ended: the recoverable window is 2026-11-26 .* to 2026-11-26"),
        (T0, "before the oldest base backup ended"),
        (T0 + 9001, "in the future of the archive: the recoverable window is"),
    ],
)
def test_a_target_outside_the_window_is_refused_with_the_window(target, message):
    backups = pw.good_backups(INFO)
    with pytest.raises(pw.WindowError, match=message):
        pw.choose(backups, pw.window_of(backups, end=T0 + 9000), pw.text_of(target))


def test_without_a_known_end_any_later_target_is_allowed():
    backups = pw.good_backups(INFO)
    window = pw.window_of(backups, end=None)
    assert "time not known" in window["end_text"]
    assert pw.choose(backups, window, pw.text_of(T0 + 10**6))["set"] == "B1"


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-11-26 01:02:03+00:00", 1795654923.0),
        ("2026-11-26T01:02:03Z", 1795654923.0),
        ("2026-11-26 01:02:03", 1795654923.0),  # no zone: UTC
        ("2026-11-26 02:02:03.5+01:00", 1795654923.5),
    ],
)
def test_parse_time_reads_iso_8601_with_utc_by_default(text, epoch):
    assert pw.parse_time(text) == epoch


def test_parse_time_refuses_words_and_shows_the_format():
    with pytest.raises(pw.WindowError, match="no time of day"):
        pw.parse_time("yesterday")


def test_a_date_alone_is_refused_not_taken_as_midnight():
    # -e target_time=2026-11-26 01:02:03 (unquoted) reaches the module as the date alone
    with pytest.raises(pw.WindowError, match=r"no time of day.*target_time='2026-11-26 01:02:03"):
        pw.parse_time("2026-11-26")


def test_a_time_that_is_not_one_is_refused():
    with pytest.raises(pw.WindowError, match="ISO 8601"):
        pw.parse_time("2026-11-26 25:61:00")
