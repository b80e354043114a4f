"""The phase_record callback: every numbered step "(n/N) ..." of a real ansible-playbook run is timed and recorded,
the record can be read by a later play of the same run, and a failed run says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.mojorust.dr.plugins.callback.phase_record import PhaseClock, parse_step

ROOT = Path(__file__).resolve().parents[2]

ROLE = """
- name: (1/2) first step of the role
  ansible.builtin.command: sleep 0.2
  changed_when: false
- name: not numbered, still the first step
  ansible.builtin.command: sleep 0.1
  changed_when: false
- name: (2/2) second step of the role, a block
  block:
    - name: First task of the block
      ansible.builtin.command: sleep 0.1
      changed_when: false
    - name: Second task of the block
      ansible.builtin.command: sleep 0.1
      changed_when: false
"""

PLAYBOOK = """
- name: "({{ step }}) RUNBOOK | a step whose number is a variable"
  hosts: localhost
  gather_facts: false
  vars:
    step: 1/3
  tasks:
    - name: (1/2) a play's own step
      ansible.builtin.command: sleep 0.1
      changed_when: false
    - name: (2/2) a step that runs a role
      ansible.builtin.include_role:
        name: stepped

- name: (1/3) RUNBOOK | a second play of the same step
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Sleep
      ansible.builtin.command: sleep 0.1
      changed_when: false

- name: (2/3) RUNBOOK | the record so far can be read in the same run
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Step 1/3 is closed, the run is not finished
      ansible.builtin.assert:
        that:
          - record.finished == false
          - record.phases[0].step == '1/3' and record.phases[0].seconds > 0.3
      vars:
        files: "{{ lookup('ansible.builtin.fileglob', lookup('ansible.builtin.env', 'MOJORUST_DR_PHASE_RECORD_DIR')
                   ~ '/play-*.json', wantlist=True) }}"
        record: "{{ lookup('ansible.builtin.file', files | first) | from_json }}"

- name: (8/9) OTHER PATH | a path not taken, every task skipped
  hosts: localhost
  gather_facts: false
  tasks:
    - name: (1/1) skipped
      ansible.builtin.command: sleep 0.1
      changed_when: false
      when: false

- name: (9/9) OTHER PATH | no host matched
  hosts: nobody_at_all
  gather_facts: false
  tasks:
    - name: Never runs
      ansible.builtin.command: "true"
      changed_when: false

- name: Not numbered, ends step 2/3
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Fail when asked
      ansible.builtin.fail:
        msg: asked to fail
      when: fail_it | default(false) | bool
"""


def run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "roles/stepped/tasks").mkdir(parents=True)
    (tmp_path / "roles/stepped/tasks/main.yml").write_text(ROLE)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    records = tmp_path / "phases"
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_ROLES_PATH=str(tmp_path / "roles"),
        ANSIBLE_CALLBACKS_ENABLED="mojorust.dr.phase_record",
        MOJORUST_DR_PHASE_RECORD_DIR=str(records),
        ANSIBLE_NOCOLOR="1",
    )
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local"]
    command += ["-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml"), *extra]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    files = sorted(records.glob("play-*.json"))
    assert len(files) == 1, (files, result.stdout[-3000:])
    assert oct(files[0].stat().st_mode & 0o777) == "0o644"
    return result, json.loads(files[0].read_text())


def test_every_numbered_step_of_a_run_is_timed_plays_and_the_role_steps_inside_them(tmp_path):
    result, record = run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert record["playbook"] == "play.yml" and record["finished"] and record["ok"]
    summary = [(p["kind"], p["step"], p["name"], p["role"]) for p in record["phases"]]
    assert summary == [
        ("play", "1/3", "RUNBOOK | a step whose number is a variable", None),
        ("task", "1/2", "a play's own step", None),
        ("task", "2/2", "a step that runs a role", None),
        ("task", "1/2", "first step of the role", "stepped"),
        ("task", "2/2", "second step of the role, a block", "stepped"),
        ("play", "2/3", "RUNBOOK | the record so far can be read in the same run", None),
    ]  # and not the steps of the path not taken, in which nothing ran
    phases = {(p["step"], p["role"], p["kind"]): p for p in record["phases"]}
    # Step 1/3 holds both of its plays; the role's first step holds its unnumbered task (0.2 s + 0.1 s of sleep),
    # its numbered block both tasks in it.
    assert phases[("1/3", None, "play")]["seconds"] >= 0.5
    assert phases[("1/2", "stepped", "task")]["seconds"] >= 0.3
    assert phases[("2/2", "stepped", "task")]["seconds"] >= 0.2
    # The unnumbered last play ends step 2/3: the run's time is more than the sum of its steps.
    assert all(p["seconds"] is not None for p in record["phases"])
    assert record["seconds"] >= sum(p["seconds"] for p in record["phases"] if p["kind"] == "play")


def test_a_failed_run_is_recorded_as_failed_with_its_steps(tmp_path):
    result, record = run(tmp_path, "-e", "fail_it=true")
    assert result.returncode != 0
    assert record["finished"] and record["ok"] is False
    assert [p["step"] for p in record["phases"] if p["kind"] == "play"] == ["1/3", "2/3"]


def test_steps_are_parsed_from_names_and_others_are_not_steps():
    assert parse_step("(2/7) FAILOVER TO A NEW HOST | provision") == ("2/7", "FAILOVER TO A NEW HOST | provision")
    assert parse_step("(6/7,7/7) FAILOVER | DNS") == ("6/7, 7/7", "FAILOVER | DNS")
    assert parse_step("( - ) FAILOVER | fence") is None
    assert parse_step("Sleep (1/2)") is None
    assert parse_step("") is None


def test_a_phase_lasts_until_the_next_step_of_its_scope():
    clock = PhaseClock("x.yml", 100.0)
    clock.play("(1/2) A", 100.0)
    clock.task("(1/3) role step", ["r", "outer"], 101.0)
    clock.ran()
    clock.task("(1/1) nested role's step", ["inner", "r", "outer"], 102.0)
    clock.ran()
    clock.task("back in r, unnumbered", ["r", "outer"], 103.0)  # the nested role's step ends here
    clock.task("(2/3) role step", ["r", "outer"], 104.0)
    clock.ran()
    clock.task("a task of the play itself", [], 106.0)  # outside the role: its step ends
    clock.play("(2/2) B", 110.0)
    clock.ran()
    clock.end(True, 115.0)
    seconds = [(p["step"], p["role"], p["seconds"]) for p in clock.phases]
    assert seconds == [
        ("1/2", None, 10.0),
        ("1/3", "r", 3.0),
        ("1/1", "inner", 1.0),
        ("2/3", "r", 2.0),
        ("2/2", None, 5.0),
    ]
    assert clock.record(200.0)["seconds"] == 15.0


def test_a_step_in_which_nothing_ran_is_left_out():
    """The plays of a path not taken (breach.yml imports failover_fresh.yml for its rebuild) are not phases."""
    clock = PhaseClock("x.yml", 100.0)
    clock.play("(1/2) BREACH | contain", 100.0)
    clock.ran()
    clock.play("(2/7) FAILOVER | provision (skipped)", 101.0)
    clock.task("(1/3) a role's step, skipped", ["r"], 101.5)
    clock.play("(2/2) BREACH | record", 102.0)
    clock.task("(1/1) its step ran", [], 102.5)
    clock.ran()
    clock.end(True, 104.0)
    assert [(p["step"], p["seconds"]) for p in clock.phases] == [("1/2", 1.0), ("2/2", 2.0), ("1/1", 1.5)]
