"""Breach response logic: the incident record's steps (names, never values), and the sweep for old values."""

from __future__ import annotations

import os

from ansible_collections.mojorust.dr.plugins.filter import key_rotation as kr
from ansible_collections.mojorust.dr.plugins.module_utils.wallet import b58encode
from ansible_collections.mojorust.dr.plugins.modules import secret_sweep as sweep

SECRET = {"name": "HELIUS_API_KEY", "provider": "Helius", "revoke": "manual", "how": "dashboard: delete it"}


def test_an_api_revocation_is_done_only_on_a_success_status():
    api = {"name": "INFISICAL_TOKEN", "provider": "Infisical", "revoke": "api", "url": "https://x"}
    assert kr.revocation_step({"item": api, "status": 200})["done"]
    refused = kr.revocation_step({"item": api, "status": 401})
    assert not refused["done"] and refused["detail"] == "HTTP 401"
    assert kr.revocation_step({"item": api, "msg": "connection refused"})["detail"] == "connection refused"


def test_a_manual_revocation_stays_open_until_the_operator_confirms_it():
    assert kr.manual_step(SECRET, ["HELIUS_API_KEY"])["done"]
    open_step = kr.manual_step(SECRET, ["QUICKNODE_API_KEY"])
    assert not open_step["done"] and open_step["detail"].startswith("OPEN, not confirmed: dashboard")


def test_a_new_value_equal_to_the_stolen_one_is_named():
    assert kr.unchanged_secrets({"A": "1", "B": "new"}, {"A": "1", "B": "old"}) == ["A"]


def test_the_public_key_of_the_lab_wallet():
    keypair = list(range(64))
    assert kr.FilterModule().filters()["wallet_pubkey"](keypair) == b58encode(bytes(range(32, 64)))


def test_the_sweep_finds_files_that_hold_a_value_and_names_the_secret(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "leak.txt").write_text("token=old-secret-1\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    (tmp_path / "AnsiballZ_secret_sweep.py").write_text("old-secret-1")  # the module's own arguments
    found, read = sweep.search([str(tmp_path)], set(), {b"old-secret-1": "HELIUS_API_KEY"}, 1 << 20)
    paths = [f for f in found if "path" in f]
    assert paths == [{"path": str(tmp_path / "a" / "leak.txt"), "secret": "HELIUS_API_KEY"}]
    assert read == 2


def test_excluded_paths_and_big_files_are_not_read(tmp_path):
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "x").write_text("old")
    (tmp_path / "big").write_text("old" * 100)
    found, read = sweep.search([str(tmp_path)], {str(tmp_path / "skip")}, {b"old": "A"}, 10)
    assert [f for f in found if "path" in f] == [] and read == 0


def test_a_history_is_scrubbed_in_place_keeping_owner_and_mode(tmp_path):
    history = tmp_path / ".bash_history"
    history.write_text("ls\ncurl 'https://x/?api-key=old-secret-1'\n")
    history.chmod(0o600)
    assert sweep.scrub_file(str(history), [b"old-secret-1"], check=False)
    assert history.read_text() == "ls\ncurl 'https://x/?api-key=[REVOKED]'\n"
    assert oct(os.stat(history).st_mode & 0o777) == "0o600"
    assert not sweep.scrub_file(str(history), [b"old-secret-1"], check=False)  # nothing left: no change


def test_check_mode_scrubs_nothing(tmp_path):
    history = tmp_path / ".bash_history"
    history.write_text("old-secret-1\n")
    assert sweep.scrub_file(str(history), [b"old-secret-1"], check=True)
    assert history.read_text() == "old-secret-1\n"


def test_an_unconfirmed_transfer_and_every_token_account_stay_open_steps():
    usdc = {"pubkey": "Acc1", "mint": "USDC", "amount": 1_500_000, "decimals": 6}
    empty = {"pubkey": "Acc2", "mint": "BONK", "amount": 0, "decimals": 5}
    refused = {"pubkey": "Old", "lamports": 10, "confirmed": False, "error": "not sent: Blockhash not found",
               "token_accounts": [usdc, empty]}  # fmt: skip
    steps = kr.wallet_steps(refused, "New")
    assert [s["name"] for s in steps] == ["WALLET_TRANSFER", "SPL_TOKEN_USDC"]
    assert not any(s["done"] for s in steps)
    assert "Blockhash not found" in steps[0]["detail"] and "move 1.5 of token USDC" in steps[1]["detail"]
    confirmed = {**refused, "confirmed": True, "token_accounts": [empty]}
    assert kr.wallet_steps(confirmed, "New") == []
    assert kr.wallet_steps({"skipped": True}, "New") == []


def test_a_node_that_fails_leaves_the_whole_transfer_open_instead_of_stopping_the_response():
    """The transfer task does not fail the breach run (keys revoked, nothing deployed yet): its failure is a step."""
    failed = {"failed": True, "msg": "getBalance: connection refused", "changed": False}
    steps = kr.wallet_steps(failed, "New")
    assert [s["name"] for s in steps] == ["WALLET_TRANSFER"]
    assert not steps[0]["done"]
    assert "connection refused" in steps[0]["detail"] and "New" in steps[0]["detail"]
