#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""bot_verify: the recovery plan's verification checklist (section 3) against a running bot host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bot_verify
short_description: Run the recovery plan's verification checklist on a bot host and report each check
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Every item of the plan's section 3, each with its own pass or fail and the reason, in this order -
    C(process) (the unit is active with a main process), C(health) (C(/health) answers 200), C(database)
    (the bot's database connection is up), C(apis) (each provider in I(apis) answered the bot's last poll),
    C(portfolio) (value within I(portfolio_tolerance) of I(expected_portfolio_value), by default the value in the
    bot's state file), C(positions) (open positions equal I(expected_open_positions)), C(logs) (no more than
    I(max_error_lines) ERROR lines in the last I(log_window_minutes)), C(metrics) (C(/metrics) exports
    I(metrics)), C(alert) (a test message through the bot's Telegram settings is accepted), C(circuit_breaker)
    (closed).
  - Never fails by itself; C(failed_checks) lists the failures (C(playbooks/verify.yml) turns them into a
    non-zero exit after printing the table). Reads the bot's C(.env) for the alert, never returns its values.
options:
  url: {description: Base URL of the bot's health server., type: str, default: "http://127.0.0.1:8082"}
  service: {description: The bot's systemd unit., type: str, default: trading-bot}
  bot_home: {description: "The bot's directory (C(.env), C(logs/), C(data/)).",
             type: path, default: /home/tradingbot/mojo-trading-bot}
  apis: {description: Providers that must be reachable., type: list, elements: str,
         default: [helius, quicknode, jupiter]}
  expected_portfolio_value: {description: Last known value; empty takes the bot's state file., type: float}
  portfolio_tolerance: {description: Allowed relative difference., type: float, default: 0.05}
  expected_open_positions: {description: Open positions expected., type: int, default: 0}
  log_window_minutes: {description: How far back the logs are read., type: int, default: 15}
  max_error_lines: {description: ERROR lines allowed in that window., type: int, default: 0}
  metrics:
    description: Metric names C(/metrics) must export.
    type: list
    elements: str
    default: [tradebot_up, tradebot_db_up, tradebot_trades_total, tradebot_portfolio_value]
  alert: {description: Send the test alert., type: bool, default: true}
  telegram_api_base: {description: Telegram Bot API base for the test alert., type: str,
                      default: "https://api.telegram.org"}
  alert_text: {description: Text of the test alert., type: str, default: "mojorust verify: test alert"}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: Runs the read-only checks; the test alert is not sent in check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Recovery verification checklist
  mojorust.dr.bot_verify:
    expected_open_positions: 0
    telegram_api_base: "{{ vps_setup_telegram_api_base }}"
  become: true
  become_user: tradingbot
  register: checklist
"""

RETURN = r"""
checks:
  description: Each check in order, with C(check), C(ok) and C(reason).
  returned: always
  type: list
  elements: dict
failed_checks: {description: Names of the checks that failed., returned: always, type: list, elements: str}
"""

import json
import os
import subprocess
import urllib.error
from datetime import UTC, datetime, timedelta

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.mojorust.dr.plugins.module_utils.backup.config import read_env


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with open_url(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def error_lines(log_dir: str, since: datetime) -> list[str]:
    """ERROR lines of the bot's daily logs written since `since` (lines start with an ISO UTC time)."""
    found = []
    if not os.path.isdir(log_dir):
        return found
    for day in sorted({since.date(), datetime.now(UTC).date()}):
        path = os.path.join(log_dir, f"trading-bot-{day:%Y%m%d}.log")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                parts = line.split(" ", 2)
                if len(parts) < 2 or parts[1] != "ERROR":
                    continue
                try:
                    when = datetime.strptime(parts[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
                except ValueError:
                    continue
                if when >= since:
                    found.append(line.rstrip())
    return found


def evaluate(
    p: dict,
    active: bool,
    health: tuple[int, dict | None],
    metrics: tuple[int, str],
    state_value,
    errors: list[str],
    alert: tuple[bool, str] | None,
) -> list[dict]:
    """The checklist from what was read: pure, so every rule is unit-tested."""
    checks = []

    def add(name, ok, reason):
        checks.append({"check": name, "ok": bool(ok), "reason": reason})

    status, body = health
    body = body or {}
    add("process", active, f"{p['service']} is active" if active else f"{p['service']} is not running")
    add("health", status == 200, f"/health answered {status}" + ("" if status == 200 else f": {body.get('status')}"))
    add(
        "database",
        body.get("db_ok") is True,
        "database connected" if body.get("db_ok") else "the bot reports no database connection",
    )
    apis = body.get("apis", {})
    down = [a for a in p["apis"] if apis.get(a) is not True]
    add(
        "apis",
        not down,
        "all providers answered: " + ", ".join(p["apis"])
        if not down
        else "not answering (last poll): " + ", ".join(down),
    )
    expected = p["expected_portfolio_value"] if p["expected_portfolio_value"] is not None else state_value
    value = body.get("portfolio_value")
    if expected is None or value is None:
        add("portfolio", False, "no portfolio value to compare (no /health value or no last known value)")
    else:
        drift = abs(value - expected) / max(abs(expected), 1e-9)
        add(
            "portfolio",
            drift <= p["portfolio_tolerance"],
            f"{value:.2f} vs last known {expected:.2f}: {drift:.2%} (tolerance {p['portfolio_tolerance']:.2%})",
        )
    positions = body.get("open_positions")
    add(
        "positions",
        positions == p["expected_open_positions"],
        f"{positions} open, {p['expected_open_positions']} expected",
    )
    add(
        "logs",
        len(errors) <= p["max_error_lines"],
        f"{len(errors)} ERROR lines in the last {p['log_window_minutes']} min (at most {p['max_error_lines']})"
        + (f"; latest: {errors[-1][:200]}" if errors else ""),
    )
    m_status, m_text = metrics
    exported = {line.split("{")[0].split(" ")[0] for line in m_text.splitlines() if line and not line.startswith("#")}
    missing = [m for m in p["metrics"] if m not in exported]
    add(
        "metrics",
        m_status == 200 and not missing,
        f"/metrics answered {m_status}"
        + (f", missing {', '.join(missing)}" if missing else f", {len(exported)} series"),
    )
    if alert is None:
        add("alert", True, "not sent (check mode, or alert=false)")
    else:
        add("alert", alert[0], alert[1])
    breaker = body.get("circuit_breaker")
    add("circuit_breaker", breaker == "closed", f"circuit breaker {breaker}")
    return checks


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8082"},
            "service": {"type": "str", "default": "trading-bot"},
            "bot_home": {"type": "path", "default": "/home/tradingbot/mojo-trading-bot"},
            "apis": {"type": "list", "elements": "str", "default": ["helius", "quicknode", "jupiter"]},
            "expected_portfolio_value": {"type": "float"},
            "portfolio_tolerance": {"type": "float", "default": 0.05},
            "expected_open_positions": {"type": "int", "default": 0},
            "log_window_minutes": {"type": "int", "default": 15},
            "max_error_lines": {"type": "int", "default": 0},
            "metrics": {
                "type": "list",
                "elements": "str",
                "default": ["tradebot_up", "tradebot_db_up", "tradebot_trades_total", "tradebot_portfolio_value"],
            },
            "alert": {"type": "bool", "default": True},
            "telegram_api_base": {"type": "str", "default": "https://api.telegram.org"},
            "alert_text": {"type": "str", "default": "mojorust verify: test alert"},
        },
        supports_check_mode=True,
    )
    p = module.params
    active = subprocess.run(["systemctl", "is-active", "--quiet", p["service"]], check=False).returncode == 0
    try:
        status, text = http_get(p["url"].rstrip("/") + "/health")
        health = (status, json.loads(text))
    except (OSError, ValueError) as error:
        health = (0, {"status": f"no answer ({type(error).__name__})"})
    try:
        metrics = http_get(p["url"].rstrip("/") + "/metrics")
    except OSError as error:
        metrics = (0, f"# no answer ({type(error).__name__})")
    state_value = None
    try:
        with open(os.path.join(p["bot_home"], "data", "portfolio_state.json"), encoding="utf-8") as handle:
            state_value = json.load(handle).get("portfolio_value")
    except (OSError, ValueError):
        pass
    since = datetime.now(UTC) - timedelta(minutes=p["log_window_minutes"])
    errors = error_lines(os.path.join(p["bot_home"], "logs"), since)
    alert = None
    if p["alert"] and not module.check_mode:
        try:
            env = read_env(os.path.join(p["bot_home"], ".env"))
            with open_url(
                f"{p['telegram_api_base'].rstrip('/')}/bot{env['TELEGRAM_BOT_TOKEN']}/sendMessage",
                data=json.dumps({"chat_id": env["TELEGRAM_CHAT_ID"], "text": p["alert_text"]}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
                timeout=5,
            ) as response:
                accepted = json.loads(response.read() or b"{}").get("ok", response.status == 200)
            alert = (bool(accepted), "test alert accepted by the Telegram API" if accepted else "test alert refused")
        except Exception as error:  # never the token: only the kind of failure
            alert = (False, f"test alert not delivered: {type(error).__name__}")
    checks = evaluate(p, active, health, metrics, state_value, errors, alert)
    module.exit_json(changed=False, checks=checks, failed_checks=[c["check"] for c in checks if not c["ok"]])


if __name__ == "__main__":
    main()
