"""The verification checklist's rules (plan section 3): each check passes on a healthy bot and fails with its own
reason when its item is wrong; ERROR lines are counted only inside the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.mojorust.dr.plugins.modules import bot_verify

PARAMS = {
    "service": "trading-bot",
    "apis": ["helius", "quicknode", "jupiter"],
    "expected_portfolio_value": None,
    "portfolio_tolerance": 0.05,
    "expected_open_positions": 0,
    "log_window_minutes": 15,
    "max_error_lines": 0,
    "metrics": ["tradebot_up", "tradebot_db_up"],
}
HEALTH = {
    "status": "ok",
    "db_ok": True,
    "apis": {"helius": True, "quicknode": True, "jupiter": True},
    "portfolio_value": 10010.0,
    "open_positions": 0,
    "circuit_breaker": "closed",
}
METRICS = (200, '# HELP tradebot_up x\ntradebot_up 1\ntradebot_db_up 1\ntradebot_api_up{api="helius"} 1\n')


def run(params=None, active=True, health=(200, HEALTH), metrics=METRICS, state=10000.0, errors=(), alert=(True, "")):
    checks = bot_verify.evaluate({**PARAMS, **(params or {})}, active, health, metrics, state, list(errors), alert)
    return {c["check"]: c for c in checks}


def test_a_healthy_bot_passes_every_check_in_the_plans_order():
    checks = run()
    assert list(checks) == [
        "process",
        "health",
        "database",
        "apis",
        "portfolio",
        "positions",
        "logs",
        "metrics",
        "alert",
        "circuit_breaker",
    ]
    assert all(c["ok"] for c in checks.values()), checks


@pytest.mark.parametrize(
    ("kwargs", "check", "reason"),
    [
        ({"active": False}, "process", "trading-bot is not running"),
        ({"health": (503, {**HEALTH, "status": "degraded"})}, "health", "/health answered 503: degraded"),
        ({"health": (200, {**HEALTH, "db_ok": False})}, "database", "no database connection"),
        (
            {"health": (200, {**HEALTH, "apis": {"helius": True, "quicknode": False}})},
            "apis",
            "not answering (last poll): quicknode, jupiter",
        ),
        ({"state": 9000.0}, "portfolio", "tolerance 5.00%"),
        ({"params": {"expected_open_positions": 2}}, "positions", "0 open, 2 expected"),
        ({"errors": ["2026-11-25T10:00:00.000Z ERROR database gone"]}, "logs", "latest: 2026"),
        ({"metrics": (200, "tradebot_up 1\n")}, "metrics", "missing tradebot_db_up"),
        ({"alert": (False, "test alert not delivered: URLError")}, "alert", "not delivered"),
        ({"health": (200, {**HEALTH, "circuit_breaker": "open"})}, "circuit_breaker", "circuit breaker open"),
    ],
)
def test_each_check_fails_alone_with_its_own_reason(kwargs, check, reason):
    checks = run(**kwargs)
    failed = [name for name, c in checks.items() if not c["ok"]]
    if check == "health":
        assert "health" in failed
    else:
        assert failed == [check], checks
    assert reason in checks[check]["reason"]


def test_operator_value_overrides_the_state_file_for_the_portfolio():
    assert run({"expected_portfolio_value": 10000.0}, state=5000.0)["portfolio"]["ok"]
    assert not run({"expected_portfolio_value": 20000.0}, state=10000.0)["portfolio"]["ok"]


def test_error_lines_counts_only_errors_inside_the_window(tmp_path):
    now = datetime.now(UTC)
    old = now - timedelta(minutes=30)
    recent = now - timedelta(minutes=1)

    def stamp(moment):
        return f"{moment:%Y-%m-%dT%H:%M:%S}.000Z"

    lines = [f"{stamp(old)} ERROR old failure", f"{stamp(recent)} INFO trade", f"{stamp(recent)} ERROR new failure"]
    (tmp_path / f"trading-bot-{now:%Y%m%d}.log").write_text("\n".join(lines) + "\n")
    found = bot_verify.error_lines(str(tmp_path), now - timedelta(minutes=15))
    assert found == [f"{stamp(recent)} ERROR new failure"] or now.date() != recent.date()
