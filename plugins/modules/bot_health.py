#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""bot_health: wait until the trading bot is healthy, or say why it is not."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bot_health
short_description: Wait until the trading bot answers /health, or fail with the reason
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - Polls the bot's C(/health) endpoint until it answers 200 with the database connected (and, with
    I(expect_trading), until the last trade id has moved on between two answers).
  - Watches the systemd unit while it waits, so a bot that exits (a configuration it refuses, a crash loop)
    fails the task at once with the unit's state and its last journal lines instead of a time-out.
  - Returns how long the bot was down, as systemd and C(/health) saw it, from the moment the unit last left the
    active state (the runbook stopped it) to the healthy answer. The runbooks report this instead of timing
    themselves.
  - Read-only; it changes nothing on the host.
options:
  url:
    description: The health endpoint.
    type: str
    default: http://127.0.0.1:8082/health
  service:
    description: The bot's systemd unit, watched while waiting; empty to skip.
    type: str
    default: trading-bot
  timeout:
    description: Seconds to wait for a healthy answer.
    type: int
    default: 90
  interval:
    description: Seconds between two polls.
    type: float
    default: 1.0
  expect_trading:
    description: Also wait until C(last_trade_id) increases between two answers (the bot is trading).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Bot is healthy and trading
  mojorust.dr.bot_health:
    expect_trading: true
    timeout: 60
"""

RETURN = r"""
health:
  description: The last C(/health) answer.
  returned: always
  type: dict
waited:
  description: Seconds from the first poll to the healthy answer.
  returned: success
  type: float
down_seconds:
  description:
    - Seconds from the moment the unit last left the active state (C(ActiveExitTimestampMonotonic), a stop or a
      restart) to the healthy answer; null when I(service) is empty or the unit has not been stopped since boot.
  returned: success
  type: float
  sample: 4.73
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

FAILED_STATES = ("failed",)


def read_health(url: str) -> tuple[int | None, dict, str]:
    """(HTTP status or None, JSON body or {}, error text)."""
    try:
        response = open_url(url, timeout=3, validate_certs=False)
        return response.status, json.loads(response.read() or b"{}"), ""
    except Exception as error:  # every failure (refused, time-out, 503) means "not yet healthy"
        status = getattr(error, "code", None)
        body = {}
        if status is not None:
            try:
                body = json.loads(error.read() or b"{}")
            except ValueError:
                body = {}
        return status, body, str(getattr(error, "reason", error))


def is_healthy(status: int | None, body: dict) -> bool:
    return status == 200 and bool(body.get("db_ok"))


def trading_advanced(first_id: int | None, body: dict) -> bool:
    last = body.get("last_trade_id")
    return last is not None and (first_id is None or last > first_id)


def unit_state(module: AnsibleModule, service: str) -> dict:
    rc, out, _err = module.run_command(
        [
            "systemctl",
            "show",
            service,
            "--property=ActiveState,SubState,Result,ExecMainStatus,NRestarts,ActiveExitTimestampMonotonic",
        ]
    )
    if rc != 0:
        return {}
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def down_seconds(state: dict, healthy_at: float) -> float | None:
    """Seconds from the unit's last exit from the active state (unit_state's ActiveExitTimestampMonotonic) to
    `healthy_at` (time.monotonic(), the clock systemd stamps it with); None without a unit or a stop since boot."""
    value = state.get("ActiveExitTimestampMonotonic", "")
    if not value.isdigit() or int(value) == 0:
        return None
    return round(healthy_at - int(value) / 1_000_000, 2)


def journal_tail(module: AnsibleModule, service: str, lines: int = 12) -> str:
    _rc, out, _err = module.run_command(["journalctl", "-u", service, "-n", str(lines), "--no-pager", "-o", "cat"])
    return out.strip()


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:8082/health"},
            "service": {"type": "str", "default": "trading-bot"},
            "timeout": {"type": "int", "default": 90},
            "interval": {"type": "float", "default": 1.0},
            "expect_trading": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    start = time.monotonic()
    deadline = start + params["timeout"]
    first_trade_id = None
    seen_healthy = False
    status, body, error = None, {}, ""
    while True:
        status, body, error = read_health(params["url"])
        if is_healthy(status, body):
            if not params["expect_trading"]:
                break
            if not seen_healthy:
                seen_healthy, first_trade_id = True, body.get("last_trade_id")
            elif trading_advanced(first_trade_id, body):
                break
        if params["service"]:
            state = unit_state(module, params["service"])
            if state.get("ActiveState") in FAILED_STATES or (
                state.get("ActiveState") == "inactive" and state.get("Result") not in (None, "success")
            ):
                module.fail_json(
                    msg=(
                        f"{params['service']}.service is {state.get('ActiveState')} "
                        f"(result {state.get('Result')}, exit status {state.get('ExecMainStatus')}). "
                        "Fix the cause in its last log lines, then start it again:\n"
                        + journal_tail(module, params["service"])
                    ),
                    health=body,
                    unit=state,
                )
        if time.monotonic() >= deadline:
            reason = f"HTTP {status}: {json.dumps(body)}" if status else f"no answer ({error})"
            module.fail_json(
                msg=(
                    f"The bot did not become healthy at {params['url']} within {params['timeout']} s; "
                    f"last answer: {reason}. Check the database and `journalctl -u {params['service']}`."
                ),
                health=body,
            )
        time.sleep(params["interval"])
    healthy_at = time.monotonic()
    module.exit_json(
        changed=False,
        health=body,
        waited=round(healthy_at - start, 3),
        down_seconds=down_seconds(unit_state(module, params["service"]) if params["service"] else {}, healthy_at),
    )


if __name__ == "__main__":
    main()
