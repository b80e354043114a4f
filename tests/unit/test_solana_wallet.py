"""solana_wallet: keypairs in solana-keygen form and transfers that verify offline."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import edge
import pytest
from ansible_collections.mojorust.dr.plugins.modules import solana_wallet as sw
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LAB_KEYPAIR = [152, 40, 37, 169, 159, 91, 78, 70, 247, 155, 249, 87, 165, 123, 82, 133, 122, 19, 209, 225, 253, 178,
               148, 123, 62, 71, 217, 55, 177, 189, 55, 51, 232, 51, 72, 33, 196, 236, 242, 142, 231, 154, 109, 27,
               149, 120, 11, 146, 13, 67, 210, 198, 54, 24, 75, 230, 114, 44, 46, 116, 49, 144, 26, 85]  # fmt: skip


def test_a_new_keypair_is_solana_keygen_json_whose_halves_belong_together():
    keypair, pubkey = sw.generate()
    assert len(keypair) == 64 and all(0 <= n <= 255 for n in keypair)
    derived = Ed25519PrivateKey.from_private_bytes(bytes(keypair[:32])).public_key().public_bytes_raw()
    assert derived == bytes(keypair[32:])
    assert sw.b58decode(pubkey) == bytes(keypair[32:]) and 32 <= len(pubkey) <= 44


def test_two_keypairs_differ():
    assert sw.generate()[1] != sw.generate()[1]


@pytest.mark.parametrize("data", [b"", b"\0", b"\0\0\1", bytes(range(32)), b"\xff" * 32])
def test_base58_round_trip_keeps_leading_zero_bytes(data):
    assert sw.b58decode(sw.b58encode(data)) == data


def test_the_system_program_is_all_ones_in_base58():
    assert sw.b58encode(sw.SYSTEM_PROGRAM) == "1" * 32


def test_compact_u16_is_solanas_short_vec():
    assert [sw.compact_u16(n) for n in (0, 1, 127, 128, 16383, 16384)] == [
        b"\0", b"\1", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01"
    ]  # fmt: skip


def test_a_signed_transfer_verifies_offline_and_says_what_it_moves():
    _, to = sw.generate()
    blockhash = sw.b58encode(bytes(range(1, 33)))
    signed = sw.sign_transfer(LAB_KEYPAIR, to, 1_234_567, blockhash)
    assert sw.verify_transaction(signed["transaction"])
    raw = base64.b64decode(signed["transaction"])
    assert raw[0] == 1 and sw.b58encode(raw[1:65]) == signed["signature"]
    message = raw[65:]
    assert message[:3] == bytes([1, 0, 1]) and message[3] == 3
    assert message[4:36] == bytes(LAB_KEYPAIR[32:]) and message[36:68] == sw.b58decode(to)
    assert message[68:100] == sw.SYSTEM_PROGRAM and message[100:132] == sw.b58decode(blockhash)
    data = message[-12:]
    assert int.from_bytes(data[:4], "little") == 2 and int.from_bytes(data[4:], "little") == 1_234_567
    Ed25519PublicKey.from_public_bytes(bytes(LAB_KEYPAIR[32:])).verify(raw[1:65], message)


def test_a_tampered_transfer_does_not_verify():
    _, to = sw.generate()
    signed = sw.sign_transfer(LAB_KEYPAIR, to, 5, sw.b58encode(bytes(32)))
    raw = bytearray(base64.b64decode(signed["transaction"]))
    raw[-1] ^= 1  # a different amount
    assert not sw.verify_transaction(base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize(
    ("keypair", "to", "blockhash", "message"),
    [
        (LAB_KEYPAIR[:32], "1" * 32, "1" * 32, "64 numbers"),
        (LAB_KEYPAIR, "abc", "1" * 32, "32 bytes"),
        (LAB_KEYPAIR, "0OIl", "1" * 32, "not base58"),
    ],
)
def test_bad_input_is_refused_with_the_reason(keypair, to, blockhash, message):
    with pytest.raises(ValueError, match=message):
        sw.sign_transfer(keypair, to, 1, blockhash)


# ------------------------------------------------------------------- the drain, against the edge (issue 15)
def params(**overrides) -> dict:
    values = {"keypair": json.dumps(LAB_KEYPAIR), "to": sw.generate()[1], "lamports": None, "recent_blockhash": None,
              "rpc_url": None, "fee_lamports": 5000, "send": True, "confirm_timeout": 5}  # fmt: skip
    return {**values, **overrides}


def test_keypairs_come_as_keygen_json_or_base58():
    assert sw.parse_keypair(json.dumps(LAB_KEYPAIR)) == LAB_KEYPAIR
    assert sw.parse_keypair(sw.b58encode(bytes(LAB_KEYPAIR))) == LAB_KEYPAIR
    with pytest.raises(ValueError, match="solana-keygen JSON"):
        sw.parse_keypair("[1, 2, 300]")


def test_the_whole_balance_but_the_fee_moves_and_is_confirmed_on_chain(lab):
    payer = sw.b58encode(bytes(LAB_KEYPAIR[32:]))
    lab.call("POST", "/admin/balance", {"pubkey": payer, "lamports": 3_000_000_000})
    usdc = [{"pubkey": "TokAcc1", "mint": edge.USDC_MINT, "amount": 1_500_000, "decimals": 6}]
    lab.call("POST", "/admin/token_accounts", {"owner": payer, "accounts": usdc})
    result = sw.drain(params(rpc_url=lab.base + "/rpc", to=(to := sw.generate()[1])), check_mode=False)
    assert result["sent"] and result["confirmed"] and result["confirmation_status"] == "finalized"
    assert result["error"] == "" and result["lamports"] == 3_000_000_000 - 5000
    assert lab.rpc("getBalance", [to])[1]["result"]["value"] == 3_000_000_000 - 5000
    assert lab.rpc("getBalance", [payer])[1]["result"]["value"] == 0
    assert [(a["mint"], a["amount"]) for a in result["token_accounts"]] == [(edge.USDC_MINT, 1_500_000)]
    assert "keypair" not in result and json.dumps(LAB_KEYPAIR) not in json.dumps(result)


def test_a_node_that_refuses_the_transfer_is_reported_not_sent(lab):
    """Before, a JSON-RPC error came back with HTTP 200 and the record said transfer_sent: true."""
    payer = sw.b58encode(bytes(LAB_KEYPAIR[32:]))
    lab.call("POST", "/admin/balance", {"pubkey": payer, "lamports": 1_000_000})
    stale = sw.b58encode(bytes(range(32)))
    result = sw.drain(params(rpc_url=lab.base + "/rpc", recent_blockhash=stale), check_mode=False)
    assert not result["sent"] and not result["confirmed"]
    assert "Blockhash not found" in result["error"]
    assert lab.records("transactions.jsonl") == []


def test_check_mode_and_send_false_sign_but_never_send(lab):
    payer = sw.b58encode(bytes(LAB_KEYPAIR[32:]))
    lab.call("POST", "/admin/balance", {"pubkey": payer, "lamports": 1_000_000})
    for result in (sw.drain(params(rpc_url=lab.base + "/rpc"), check_mode=True),
                   sw.drain(params(rpc_url=lab.base + "/rpc", send=False), check_mode=False)):  # fmt: skip
        assert sw.verify_transaction(result["transaction"]) and not result["sent"]
    assert lab.records("transactions.jsonl") == []


def test_an_empty_wallet_has_nothing_to_move(lab):
    result = sw.drain(params(rpc_url=lab.base + "/rpc"), check_mode=False)
    assert not result["sent"] and "nothing to move" in result["error"] and "transaction" not in result


def test_confirmation_waits_then_gives_up_with_the_last_status():
    class Pending:
        def call(self, method, params):
            return {"value": [{"confirmationStatus": "processed", "err": None}]}

    clock = iter(range(100))
    assert sw.confirm(Pending(), "sig", 3, sleep=lambda s: None, clock=lambda: next(clock)) == (
        False, "processed", "not confirmed after 3 s (last status: processed)")  # fmt: skip


def test_through_ansible_the_transaction_is_not_masked(tmp_path):
    """The module run by Ansible with the keypair as its no_log option: the returned transaction is intact and
    verifies. With the keypair as a no_log list of numbers, Ansible masked each number's digits in the base64."""
    root = Path(__file__).resolve().parents[2]
    playbook = tmp_path / "drain.yml"
    playbook.write_text(
        f"""- hosts: localhost
  gather_facts: false
  vars:
    old_wallet: {json.dumps(LAB_KEYPAIR)}
  tasks:
    - mojorust.dr.solana_wallet:
        state: transfer
        keypair: "{{{{ old_wallet | to_json }}}}"
        to: "{sw.generate()[1]}"
        lamports: 1000000
        recent_blockhash: "{sw.b58encode(bytes(range(1, 33)))}"
      register: signed
    - ansible.builtin.copy:
        content: "{{{{ signed | to_json }}}}"
        dest: "{tmp_path}/signed.json"
        mode: "0600"
"""
    )
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root / "collections"), ANSIBLE_CONFIG=str(root / "ansible.cfg"))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=root)
    assert run.returncode == 0, run.stdout + run.stderr
    signed = json.loads((tmp_path / "signed.json").read_text())
    assert "*" not in signed["transaction"] and sw.verify_transaction(signed["transaction"])
