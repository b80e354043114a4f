"""Bad input to the failover path fails at once, on the workstation, with a message that says what to set, before
anything is provisioned or fenced. These runs need no lab: every case stops in the first tasks on localhost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, play: str, *extra: str, inventory: str = "localhost,") -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(play)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
        ANSIBLE_NOCOLOR="1",
        # ansible.cfg's phase_record callback writes beside the test, not into the checkout's reports/.
        MOJORUST_DR_PHASE_RECORD_DIR=str(tmp_path / "phases"),
    )
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, str(playbook), *extra]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


PROVISION = """
- hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: mojorust.dr.provision
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["-e", "provisioner=hcloud"], "provision_hcloud_api_token"),
        (["-e", "provisioner=existing"], "provision_existing_address"),
        (["-e", "provisioner=openstack"], "podman, existing, hcloud"),
    ],
    ids=["hcloud-without-token", "existing-without-address", "unknown-provisioner"],
)
def test_provision_refuses_incomplete_input_with_what_to_set(tmp_path, extra, expected):
    result = run(tmp_path, PROVISION, *extra)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def test_hcloud_reaches_the_cloud_module_with_the_given_server(tmp_path):
    """As far as it goes without a cloud: the inputs pass and hetzner.hcloud.server itself is called, which then
    fails for want of the hcloud library or of a valid token; no host is added."""
    result = run(
        tmp_path,
        PROVISION,
        "-e",
        "provisioner=hcloud",
        "-e",
        "provision_hcloud_api_token=not-a-real-token",
        "-e",
        '{"provision_hcloud_ssh_keys": ["operator"]}',
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Hetzner Cloud server is created" in out
    assert "not-a-real-token" not in out, "the API token must not be printed"


FAILOVER_INPUTS = """
- name: inputs
  ansible.builtin.import_playbook: {root}/playbooks/failover.yml
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["-e", "failover_target=elsewhere"], "failover_target must be fresh"),
        (["-e", "failover_target=standby"], "needs a host in group standby_servers"),
        (["-e", "failover_target=fresh"], "offsite_bucket"),
    ],
    ids=["unknown-target", "no-standby", "no-bucket"],
)
def test_failover_refuses_bad_input_before_touching_any_host(tmp_path, extra, expected):
    result = run(tmp_path, FAILOVER_INPUTS.format(root=ROOT), *extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in out
    assert "FENCE" not in out.split("fatal")[0], "nothing may be fenced before the inputs are checked"


BUCKET = ["-e", "failover_target=fresh", "-e", "offsite_bucket=b", "-e", "offsite_access_key_id=k"]


@pytest.mark.parametrize(
    ("bot_hosts", "extra", "expected"),
    [
        (["prod"], [], "confirm it with -e failover_confirm=prod"),
        (["prod"], ["-e", "failover_confirm=standby"], "-e failover_confirm=prod (or -e failover_interactive=true"),
        (["prod", "prod2"], ["-e", "failover_confirm=prod"], "holds 2 (prod, prod2)"),
        ([], ["-e", "failover_confirm=prod"], "holds 0 (none)"),
    ],
    ids=["not-confirmed", "wrong-host-named", "two-old-servers", "no-old-server"],
)
def test_failover_needs_the_one_old_server_named(tmp_path, bot_hosts, extra, expected):
    """A failover fences the old server for good: it runs only when the operator names it, and there is one."""
    inventory = tmp_path / "hosts.yml"
    hosts = "".join(f"        {name}:\n          ansible_host: 192.0.2.1\n" for name in bot_hosts)
    inventory.write_text("all:\n  children:\n    tradingbot:\n" + ("      hosts:\n" + hosts if hosts else "      {}\n"))
    result = run(tmp_path, FAILOVER_INPUTS.format(root=ROOT), *BUCKET, *extra, inventory=str(inventory))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in " ".join(out.split()), out
    assert "Nothing was changed" in out
    assert "FENCE" not in out.split("fatal")[0], "nothing may be fenced before the old server is named"


def test_failover_target_the_dispatcher_cannot_see_stops_the_run(tmp_path):
    """failover.yml picks its path when it is read, from the command line only: failover_target given in an import's
    vars (or the inventory) cannot choose, so a value naming the other path stops the run before anything is fenced,
    and says how to give it."""
    play = FAILOVER_INPUTS.format(root=ROOT) + "  vars:\n    failover_target: standby\n"
    result = run(tmp_path, play, *BUCKET[2:], "-e", "failover_confirm=localhost")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "-e failover_target=standby, or run playbooks/failover_standby.yml" in out, out
    assert "FENCE" not in out.split("fatal")[0]


def test_each_failover_path_refuses_the_other_paths_target(tmp_path):
    play = f"- name: fresh\n  ansible.builtin.import_playbook: {ROOT}/playbooks/failover_fresh.yml\n"
    result = run(tmp_path, play, *BUCKET[2:], "-e", "failover_confirm=localhost", "-e", "failover_target=standby")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "This run takes the fresh path (playbooks/failover_fresh.yml)" in out, out
    assert "Nothing was changed" in out


@pytest.mark.parametrize(
    ("path", "extra", "expected"),
    [
        ("fresh", BUCKET[2:], "holds 0 (none)"),
        ("standby", [], "needs a host in group standby_servers"),
    ],
)
def test_each_failover_path_runs_on_its_own_without_failover_target(tmp_path, path, extra, expected):
    """Run directly (or imported, as breach.yml and Molecule do), a path playbook needs no failover_target: its
    checks run to the first input that is missing."""
    play = f"- name: {path}\n  ansible.builtin.import_playbook: {ROOT}/playbooks/failover_{path}.yml\n"
    result = run(tmp_path, play, *extra, "-e", "failover_confirm=localhost")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert expected in out, out
    assert "is undefined" not in out


def test_failover_without_a_target_takes_the_fresh_path(tmp_path):
    """failover_target defaults to fresh: without it, failover.yml runs failover_fresh.yml's checks (before, the
    dispatcher's own check failed on the undefined name)."""
    result = run(tmp_path, FAILOVER_INPUTS.format(root=ROOT), *BUCKET[2:], "-e", "failover_confirm=localhost")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "FAILOVER TO A NEW HOST" in out and "holds 0 (none)" in out, out
    assert "is undefined" not in out
