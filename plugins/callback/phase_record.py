# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""phase_record: times every numbered step of a run, "(n/N) ...", and writes the phase record."""

from __future__ import annotations

DOCUMENTATION = r"""
name: phase_record
author: mojorust.dr maintainers (@mojorust)
version_added: 0.1.0
type: aggregate
short_description: Times every numbered step of a run and writes the phase record
description:
  - Stamps every play and every task whose name begins with its step number in parentheses, the way the
    runbooks number their steps, for example "(2/7) FAILOVER TO A NEW HOST | provision a new host" or
    "(6/7, 7/7) ..."; consecutive plays, or tasks, of one step are one phase. A task in a numbered block of
    its role belongs to the block's step. Nothing in the playbooks marks time.
  - A play phase lasts until the next play starts or the run ends. A task phase lasts until the next numbered
    task of its scope (its play, and the role it belongs to), until a task outside that role starts, or until
    its play ends.
  - Writes the record, one JSON file per run, after every stamp and at the end, so that a later play of the same
    run can read what it holds so far; C(finished) says whether the run has ended, C(ok) whether it ended
    without a failed or unreachable host.
  - A step in which nothing ran (every task skipped, or no host matched, as for the plays of a path not taken)
    is left out of the record.
  - The record holds step names and times only (no results, no variables).
requirements:
  - Enabled in C(callbacks_enabled) (ansible.cfg or E(ANSIBLE_CALLBACKS_ENABLED)); this repository's
    ansible.cfg enables it.
options:
  record_dir:
    description:
      - Directory of the records, made if missing; one file per run,
        C(<first playbook's name>-<UTC start time>-<process id>.json).
    type: path
    default: ~/.ansible/mojorust_dr/phases
    env:
      - name: MOJORUST_DR_PHASE_RECORD_DIR
    ini:
      - section: callback_phase_record
        key: record_dir
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = mojorust.dr.phase_record
# [callback_phase_record]
# record_dir = ./reports/phases
#
# A record (reports/phases/failover_standby-20261206T201500Z-4242.json):
# {"playbook": "failover_standby.yml", "started_at": "2026-12-06T20:15:00Z", "finished": true, "ok": true,
#  "seconds": 41.2,
#  "phases": [{"kind": "play", "step": "1/4", "name": "FAILOVER TO THE STANDBY | fence the old primary",
#              "role": null, "started_at": 1796588100.5, "seconds": 3.1}, ...]}
"""

import json
import os
import re
import tempfile
import time
from datetime import UTC, datetime

from ansible.playbook.block import Block
from ansible.plugins.callback import CallbackBase

# "(2/7) name", "(6/7, 7/7) name": the step is what the parentheses hold.
STEP = re.compile(r"^\((?P<step>\d+/\d+(?:,\s*\d+/\d+)*)\)\s*(?P<name>.*)$")


def parse_step(name: str) -> tuple[str, str] | None:
    """(step, name without it) of a numbered name, or None."""
    match = STEP.match((name or "").strip())
    return (re.sub(r"\s+", "", match["step"]).replace(",", ", "), match["name"].strip()) if match else None


def roles_of(task) -> list[str]:
    """Names of the role the task belongs to and of the roles that included it (innermost first)."""
    names, node = [], task
    while node is not None:
        name = _role_name(node)
        if name is not None and name not in names:
            names.append(name)
        node = getattr(node, "_parent", None)
    return names


def _role_name(node) -> str | None:
    role = getattr(node, "_role", None)
    return role.get_name(include_role_fqcn=False) if role is not None else None


def step_name(task) -> str:
    """The name that numbers the task's step: its own, else that of the nearest block of its role around it
    (a numbered block, "(5/6) Swap the restored database in", is one step of all the tasks it holds)."""
    name = task_name(task)
    if parse_step(name):
        return name
    role, node = _role_name(task), getattr(task, "_parent", None)
    while isinstance(node, Block) and _role_name(node) == role:
        if parse_step(node.name or ""):
            return node.name
        node = getattr(node, "_parent", None)
    return name


def task_name(task) -> str:
    """The task's name as written (templated), without the "role : " that get_name() puts before a role's tasks."""
    name = task.get_name()
    role = getattr(task, "_role", None)
    if role is not None:
        for prefix in {f"{role.get_name(include_role_fqcn=flag)} : " for flag in (True, False)}:
            if name.startswith(prefix):
                return name[len(prefix) :]
    return name


class PhaseClock:
    """The phases of one run: plain data, no Ansible objects, so it can be tested on its own."""

    def __init__(self, playbook: str, now: float):
        self.playbook = playbook
        self.started = now
        self.phases: list[dict] = []
        self.finished = False
        self.ok: bool | None = None
        self.ended = now
        self._open_play: dict | None = None
        # Open task phases, outermost first: a role's numbered steps inside a play's numbered task.
        self._tasks: list[dict] = []
        # Open phases in which a task ran (by id): the others are dropped when they close.
        self._ran: set[int] = set()

    def _close(self, phase: dict | None, now: float) -> None:
        """The phase ends now; one in which nothing ran (a path not taken) leaves the record."""
        if phase is None or phase["seconds"] is not None:
            return
        if id(phase) in self._ran:
            phase["seconds"] = round(now - phase["started_at"], 2)
        else:
            self.phases.remove(phase)

    def _open(self, kind: str, step: str, name: str, role: str | None, now: float) -> dict:
        phase = {"kind": kind, "step": step, "name": name, "role": role, "started_at": round(now, 3), "seconds": None}
        self.phases.append(phase)
        return phase

    def ran(self) -> None:
        """A task ran on a host (not skipped): the open phases did something."""
        self._ran.update(id(phase) for phase in [self._open_play, *self._tasks] if phase is not None)

    def play(self, name: str, now: float) -> bool:
        """A play starts; True when the record changed."""
        changed = self._close_tasks(now)
        parsed = parse_step(name)
        if self._open_play is not None and parsed and parsed[0] == self._open_play["step"]:
            return changed
        changed = changed or self._open_play is not None
        self._close(self._open_play, now)
        self._open_play = self._open("play", *parsed, None, now) if parsed else None
        return changed or parsed is not None

    def task(self, name: str, roles: list[str], now: float) -> bool:
        """A task starts (roles: its role and those that included it, innermost first); True when changed."""
        changed = False
        while self._tasks and not self._inside(self._tasks[-1], roles):
            self._close(self._tasks.pop(), now)
            changed = True
        parsed = parse_step(name)
        if parsed is None:
            return changed
        role = roles[0] if roles else None
        if self._tasks and self._tasks[-1]["role"] == role:
            if self._tasks[-1]["step"] == parsed[0]:
                return changed
            self._close(self._tasks.pop(), now)
        self._tasks.append(self._open("task", *parsed, role, now))
        return True

    @staticmethod
    def _inside(phase: dict, roles: list[str]) -> bool:
        """Whether a task of these roles is still inside the phase (a play's own step holds every task of it)."""
        return phase["role"] is None or phase["role"] in roles

    def _close_tasks(self, now: float) -> bool:
        closed = bool(self._tasks)
        while self._tasks:
            self._close(self._tasks.pop(), now)
        return closed

    def end(self, ok: bool, now: float) -> None:
        self._close_tasks(now)
        self._close(self._open_play, now)
        self._open_play = None
        self.finished, self.ok = True, ok
        self.ended = now

    def record(self, now: float) -> dict:
        return {
            "playbook": self.playbook,
            "started_at": datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished": self.finished,
            "ok": self.ok,
            "seconds": round((self.ended if self.finished else now) - self.started, 2),
            "phases": self.phases,
        }


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mojorust.dr.phase_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clock: PhaseClock | None = None
        self._path: str | None = None
        self._failed = False

    def v2_playbook_on_start(self, playbook):
        if self._clock is not None:  # a second playbook on the command line: one record per run
            return
        now = time.time()
        name = os.path.basename(playbook._file_name)
        self._clock = PhaseClock(name, now)
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        directory = os.path.expanduser(self.get_option("record_dir"))
        self._path = os.path.join(directory, f"{os.path.splitext(name)[0]}-{stamp}-{os.getpid()}.json")

    def v2_playbook_on_play_start(self, play):
        if self._clock is not None and self._clock.play(play.get_name(), time.time()):
            self._write()

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self._clock is not None and self._clock.task(step_name(task), roles_of(task), time.time()):
            self._write()

    def v2_runner_on_ok(self, result):
        if self._clock is not None:
            self._clock.ran()

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._failed = self._failed or not ignore_errors
        if self._clock is not None:
            self._clock.ran()

    def v2_runner_on_unreachable(self, result):
        self._failed = True
        if self._clock is not None:
            self._clock.ran()

    def v2_playbook_on_stats(self, stats):
        if self._clock is None:
            return
        self._clock.end(not self._failed and not stats.failures and not stats.dark, time.time())
        if self._clock.phases:
            self._write()

    def _write(self) -> None:
        """Replace the record in one rename (a reader sees the old record or the new one, never half of one)."""
        directory = os.path.dirname(self._path)
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".phase-", suffix=".json")
            with os.fdopen(descriptor, "w") as out:
                json.dump(self._clock.record(time.time()), out, indent=1)
                out.write("\n")
            os.chmod(temporary, 0o644)
            os.replace(temporary, self._path)
        except OSError as error:
            self._display.warning(f"phase_record: cannot write {self._path}: {error}")
