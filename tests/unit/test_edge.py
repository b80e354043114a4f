"""Unit tests for lab/edge/edge.py, the drlab-edge stand-in for Telegram, RPC providers and Solana RPC."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import edge
import pytest
from ansible_collections.mojorust.dr.plugins.modules import solana_wallet as sw
from conftest import Edge

BOT_TOKEN = "123456:AAraw-telegram-token-do-not-store"
HELIUS_KEY = "helius-raw-key-0f3a9c"
QUICKNODE_KEY = "quicknode-raw-key-77be21"
INFISICAL_TOKEN = "st.infisical-raw-token-5d1e"
RAW_SECRETS = (BOT_TOKEN, HELIUS_KEY, QUICKNODE_KEY, INFISICAL_TOKEN)


def fp(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def test_health_and_unknown_path(lab):
    assert lab.call("GET", "/health") == (200, {"status": "ok"})
    status, body = lab.call("GET", "/nowhere")
    assert status == 404 and "error" in body
    assert lab.call("GET", "/rpc")[0] == 405


def test_send_message_recorded_and_listed(lab):
    before = datetime.now(UTC).isoformat()
    status, body = lab.call("POST", f"/bot{BOT_TOKEN}/sendMessage", {"chat_id": 42, "text": "bot started"})
    assert status == 200 and body["ok"] is True
    result = body["result"]
    assert result["chat"] == {"id": 42} and result["text"] == "bot started"
    assert isinstance(result["message_id"], int) and isinstance(result["date"], int)

    status, body = lab.call(
        "POST", f"/bot{BOT_TOKEN}/sendMessage", {"chat_id": "-1001", "text": "failover done"}, form=True
    )
    assert status == 200 and body["result"]["chat"] == {"id": -1001}
    assert body["result"]["message_id"] > result["message_id"]

    status, messages = lab.call("GET", "/telegram/messages")
    assert status == 200 and [m["text"] for m in messages] == ["bot started", "failover done"]
    first = messages[0]
    assert first["token_sha256"] == fp(BOT_TOKEN) and first["chat_id"] == 42
    assert datetime.fromisoformat(first["ts"]).tzinfo is not None

    found = lab.call("GET", "/telegram/messages?contains=failover")[1]
    assert [m["text"] for m in found] == ["failover done"]
    since = urllib.parse.quote(before)
    assert len(lab.call("GET", f"/telegram/messages?since={since}")[1]) == 2
    assert lab.call("GET", "/telegram/messages?since=2999-01-01T00:00:00Z")[1] == []
    assert lab.call("GET", "/telegram/messages?since=yesterday")[0] == 400

    assert lab.call("DELETE", "/telegram/messages") == (200, {"ok": True, "deleted": 2})
    assert lab.call("GET", "/telegram/messages") == (200, [])


def test_send_message_bad_request(lab):
    status, body = lab.call("POST", f"/bot{BOT_TOKEN}/sendMessage", {"chat_id": 42})
    assert status == 400
    assert body == {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
    status, body = lab.call("POST", f"/bot{BOT_TOKEN}/sendMessage", {"text": "hi"})
    assert status == 400 and body["ok"] is False and body["error_code"] == 400
    assert lab.call("GET", "/telegram/messages")[1] == []


def test_revoked_telegram_token_is_unauthorized(lab):
    assert lab.call("POST", "/admin/revoke", {"provider": "telegram", "key_sha256": fp(BOT_TOKEN)})[0] == 200
    status, body = lab.call("POST", f"/bot{BOT_TOKEN}/sendMessage", {"chat_id": 1, "text": "x"})
    assert (status, body) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    assert lab.call("POST", "/botOTHER:token/sendMessage", {"chat_id": 1, "text": "x"})[0] == 200


def test_providers_keys_and_revocation(lab):
    assert lab.call("GET", f"/helius/health?api-key={HELIUS_KEY}") == (
        200,
        {"status": "ok", "provider": "helius"},
    )
    assert lab.call("GET", "/helius/health")[0] == 401
    qn = {"x-api-key": QUICKNODE_KEY}
    assert lab.call("GET", "/quicknode/health", headers=qn)[1]["provider"] == "quicknode"
    assert lab.call("GET", "/quicknode/health")[0] == 401
    assert lab.call("GET", "/jupiter/health")[0] == 200

    status, quote = lab.call("GET", "/jupiter/quote?inputMint=So1&outputMint=EPj&amount=1000000000")
    assert status == 200 and quote["inAmount"] == "1000000000" and int(quote["outAmount"]) > 0

    status, body = lab.rpc("getBalance", ["Wallet1"], path=f"/helius/?api-key={HELIUS_KEY}")
    assert status == 200 and body["jsonrpc"] == "2.0" and body["id"] == 7 and "result" in body

    resp = lab.call("POST", "/admin/revoke", {"provider": "helius", "key_sha256": fp(HELIUS_KEY)})
    assert resp == (200, {"revoked": True, "provider": "helius", "key_sha256": fp(HELIUS_KEY)})
    assert lab.call("GET", f"/helius/health?api-key={HELIUS_KEY}") == (401, {"error": "api key revoked"})
    assert lab.call("GET", "/helius/health?api-key=another-key")[0] == 200
    assert fp(HELIUS_KEY) in lab.call("GET", "/admin/revoked")[1]["helius"]

    lab.call("POST", "/admin/revoke", {"provider": "quicknode", "key_sha256": fp(QUICKNODE_KEY)})
    assert lab.call("POST", "/quicknode/", {"x": 1}, headers=qn) == (401, {"error": "api key revoked"})

    calls = lab.records("api.jsonl")
    assert all(set(c) == {"ts", "provider", "path", "key_sha256", "status", "client"} for c in calls)
    assert calls[0] == calls[0] | {"provider": "helius", "path": "/helius/health", "status": 200}
    assert calls[0]["key_sha256"] == fp(HELIUS_KEY) and calls[0]["client"] == "127.0.0.1"
    assert {"provider": "jupiter", "key_sha256": None}.items() <= calls[4].items()
    assert [c["status"] for c in calls if c["provider"] == "quicknode"] == [200, 401, 401]


def test_admin_validation(lab):
    assert lab.call("POST", "/admin/revoke", {"provider": "helius", "key_sha256": HELIUS_KEY})[0] == 400
    assert lab.call("POST", "/admin/revoke", {"provider": "nobody", "key_sha256": "0" * 16})[0] == 400
    assert lab.call("POST", "/admin/down", {"provider": "helius", "down": "yes"})[0] == 400
    assert lab.call("POST", "/admin/balance", {"pubkey": "W", "lamports": -1})[0] == 400
    assert lab.call("POST", "/admin/balance", {"pubkey": "W", "lamports": True})[0] == 400


def test_provider_down_answers_503(lab):
    assert lab.call("POST", "/admin/down", {"provider": "quicknode", "down": True}) == (
        200,
        {"provider": "quicknode", "down": True},
    )
    assert lab.call("GET", "/quicknode/health", headers={"x-api-key": QUICKNODE_KEY})[0] == 503
    assert lab.call("GET", f"/helius/health?api-key={HELIUS_KEY}")[0] == 200
    lab.call("POST", "/admin/down", {"provider": "quicknode", "down": False})
    assert lab.call("GET", "/quicknode/health", headers={"x-api-key": QUICKNODE_KEY})[0] == 200
    lab.call("POST", "/admin/down", {"provider": "rpc", "down": True})
    assert lab.rpc("getHealth")[0] == 503


def test_solana_rpc(lab):
    assert lab.rpc("getHealth") == (200, {"jsonrpc": "2.0", "id": 7, "result": "ok"})
    status, body = lab.rpc("getBalance", ["Wallet1"])
    assert status == 200 and body["result"]["value"] == 0 and body["result"]["context"]["slot"] > 0
    assert lab.call("POST", "/admin/balance", {"pubkey": "Wallet1", "lamports": 2_500_000_000})[0] == 200
    assert lab.rpc("getBalance", ["Wallet1"])[1]["result"]["value"] == 2_500_000_000
    assert lab.rpc("getBalance", ["Wallet2"])[1]["result"]["value"] == 0
    assert lab.rpc("getBalance", [])[1]["error"]["code"] == -32602
    assert lab.rpc("noSuchMethod")[1] == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32601, "message": "Method not found"},
    }


def funded_transfer(lab, lamports: int, balance: int = 2_500_000_000, blockhash: str | None = None) -> dict:
    """A new payer with `balance` lamports on the edge, and its signed transfer of `lamports` to a new wallet."""
    payer, payer_pubkey = sw.generate()
    _, to = sw.generate()
    lab.call("POST", "/admin/balance", {"pubkey": payer_pubkey, "lamports": balance})
    blockhash = blockhash or lab.rpc("getLatestBlockhash")[1]["result"]["value"]["blockhash"]
    return {"payer": payer_pubkey, "to": to, **sw.sign_transfer(payer, to, lamports, blockhash)}


def test_a_signed_transfer_is_executed_and_confirmed(lab):
    tx = funded_transfer(lab, 1_000_000_000)
    status, body = lab.rpc("sendTransaction", [tx["transaction"], {"encoding": "base64"}])
    assert status == 200 and body["result"] == tx["signature"]  # a transaction's id is its first signature
    assert lab.rpc("getBalance", [tx["to"]])[1]["result"]["value"] == 1_000_000_000
    assert lab.rpc("getBalance", [tx["payer"]])[1]["result"]["value"] == 2_500_000_000 - 1_000_000_000 - 5000
    statuses = lab.rpc("getSignatureStatuses", [[tx["signature"], "1" * 64]])[1]["result"]["value"]
    assert statuses[0]["confirmationStatus"] == "finalized" and statuses[0]["err"] is None
    assert statuses[1] is None
    [record] = lab.records("transactions.jsonl")
    assert record["signature"] == tx["signature"] and record["transfers"] == [[tx["payer"], tx["to"], 1_000_000_000]]
    # the same transaction again is refused, and moves nothing
    assert lab.rpc("sendTransaction", [tx["transaction"], {"encoding": "base64"}])[1]["error"]["code"] == -32002
    assert lab.rpc("getBalance", [tx["to"]])[1]["result"]["value"] == 1_000_000_000


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        # what Ansible's no_log made of the transaction: every digit of the keypair masked in the base64
        (lambda b64: b64[:40] + "********" + b64[48:], -32602),
        (lambda b64: base64.b64encode(_flip_last(base64.b64decode(b64))).decode(), -32003),  # another amount
        (lambda b64: "AQIDBA==", -32602),
    ],
)
def test_a_garbled_or_wrongly_signed_transaction_is_refused_and_moves_nothing(lab, damage, code):
    tx = funded_transfer(lab, 1_000)
    status, body = lab.rpc("sendTransaction", [damage(tx["transaction"]), {"encoding": "base64"}])
    assert status == 200 and body["error"]["code"] == code and "result" not in body
    assert lab.rpc("getBalance", [tx["to"]])[1]["result"]["value"] == 0
    assert lab.records("transactions.jsonl") == []


def _flip_last(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def test_an_unknown_blockhash_or_too_little_money_is_refused(lab):
    stale = funded_transfer(lab, 1_000, blockhash=sw.b58encode(bytes(range(32))))
    assert "Blockhash not found" in lab.rpc("sendTransaction", [stale["transaction"], {"encoding": "base64"}])[1][
        "error"]["message"]  # fmt: skip
    poor = funded_transfer(lab, 1_000, balance=5_500)
    assert "insufficient funds" in lab.rpc("sendTransaction", [poor["transaction"], {"encoding": "base64"}])[1][
        "error"]["message"]  # fmt: skip
    assert lab.rpc("getBalance", [poor["payer"]])[1]["result"]["value"] == 5_500


def test_token_accounts_of_a_wallet(lab):
    accounts = [{"pubkey": "TokAcc1", "mint": edge.USDC_MINT, "amount": 1_500_000, "decimals": 6}]
    assert lab.call("POST", "/admin/token_accounts", {"owner": "W1", "accounts": accounts})[0] == 200
    assert lab.call("POST", "/admin/token_accounts", {"owner": "W1", "accounts": [{"pubkey": "x"}]})[0] == 400
    _, body = lab.rpc("getTokenAccountsByOwner", ["W1", {"programId": edge.TOKEN_PROGRAMS[0]},
                                                         {"encoding": "jsonParsed"}])  # fmt: skip
    [account] = body["result"]["value"]
    info = account["account"]["data"]["parsed"]["info"]
    assert account["pubkey"] == "TokAcc1" and info["mint"] == edge.USDC_MINT
    assert info["tokenAmount"]["amount"] == "1500000" and info["tokenAmount"]["uiAmountString"] == "1.5"
    other_program = lab.rpc("getTokenAccountsByOwner", ["W1", {"programId": edge.TOKEN_PROGRAMS[1]}, {}])[1]
    assert other_program["result"]["value"] == []
    assert lab.rpc("getTokenAccountsByOwner", ["W2", {"programId": edge.TOKEN_PROGRAMS[0]}, {}])[1]["result"][
        "value"] == []  # fmt: skip


def test_infisical_revoke(lab):
    assert lab.call("GET", "/infisical/api/v1/health")[0] == 200
    assert lab.call("POST", "/infisical/api/v1/auth/token/revoke", {})[0] == 401
    auth = {"Authorization": f"Bearer {INFISICAL_TOKEN}"}
    resp = lab.call("POST", "/infisical/api/v1/auth/token/revoke", {}, headers=auth)
    assert resp == (200, {"message": "revoked"})
    assert lab.call("GET", "/admin/revoked")[1]["infisical"] == [fp(INFISICAL_TOKEN)]


def test_state_survives_new_server_and_reset(tmp_path):
    state_dir = tmp_path / "state"
    first = Edge(state_dir)
    try:
        first.call("POST", "/admin/revoke", {"provider": "helius", "key_sha256": fp(HELIUS_KEY)})
        first.call("POST", "/admin/down", {"provider": "jupiter", "down": True})
        first.call("POST", "/admin/balance", {"pubkey": "Wallet1", "lamports": 5})
        first.call("POST", f"/bot{BOT_TOKEN}/sendMessage", {"chat_id": 1, "text": "before restart"})
        tx = funded_transfer(first, 2)
        first.rpc("sendTransaction", [tx["transaction"], {"encoding": "base64"}])
    finally:
        first.stop()

    second = Edge(state_dir)
    try:
        state = second.call("GET", "/admin/state")[1]
        assert fp(HELIUS_KEY) in state["revoked"]["helius"]
        assert state["down"]["jupiter"] is True and state["balances"]["Wallet1"] == 5
        assert state["balances"][tx["to"]] == 2 and tx["signature"] in state["signatures"]
        assert second.call("GET", f"/helius/health?api-key={HELIUS_KEY}")[0] == 401
        assert second.call("GET", "/jupiter/health")[0] == 503
        assert second.rpc("getBalance", ["Wallet1"])[1]["result"]["value"] == 5
        assert [m["text"] for m in second.call("GET", "/telegram/messages")[1]] == ["before restart"]
        status, body = second.call("POST", f"/bot{BOT_TOKEN}/sendMessage", {"chat_id": 1, "text": "after"})
        assert status == 200 and body["result"]["message_id"] == 2
        assert len(second.records("transactions.jsonl")) == 1

        assert second.call("POST", "/admin/reset") == (200, {"reset": True})
        state = second.call("GET", "/admin/state")[1]
        assert state["balances"] == {} and not any(state["revoked"].values())
        assert not any(state["down"].values())
        assert second.call("GET", "/telegram/messages")[1] == []
        assert not list(state_dir.glob("*.jsonl"))
    finally:
        second.stop()


def test_raw_keys_never_written(lab):
    lab.call("POST", f"/bot{BOT_TOKEN}/sendMessage", {"chat_id": 1, "text": "hello"})
    lab.call("GET", f"/helius/health?api-key={HELIUS_KEY}")
    lab.rpc("getBalance", ["W"], path=f"/helius/rpc?api-key={HELIUS_KEY}")
    lab.call("GET", "/quicknode/health", headers={"x-api-key": QUICKNODE_KEY})
    tx = funded_transfer(lab, 2)
    lab.rpc("sendTransaction", [tx["transaction"], {"encoding": "base64"}], path="/quicknode/",
            headers={"x-api-key": QUICKNODE_KEY})  # fmt: skip
    bearer = {"Authorization": f"Bearer {INFISICAL_TOKEN}"}
    lab.call("POST", "/infisical/api/v1/auth/token/revoke", headers=bearer)
    lab.call("POST", "/admin/revoke", {"provider": "helius", "key_sha256": fp(HELIUS_KEY)})
    lab.call("GET", f"/helius/health?api-key={HELIUS_KEY}")

    files = [p for p in lab.state_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"telegram.jsonl", "api.jsonl", "transactions.jsonl", "admin.json"}
    for path in files:
        content = path.read_bytes()
        for secret in RAW_SECRETS:
            assert secret.encode() not in content, f"raw secret in {path.name}"
    assert any(c["path"] == "/helius/rpc" for c in lab.records("api.jsonl"))


def test_log_lines_hide_tokens_and_queries():
    assert edge.safe_path(f"/bot{BOT_TOKEN}/sendMessage?x=1") == "/bot<redacted>/sendMessage"
    assert edge.safe_path(f"/helius/health?api-key={HELIUS_KEY}") == "/helius/health"


def test_hetzner_cloud_stand_in_powers_off_a_server_through_the_real_module(lab, tmp_path):
    """hetzner.hcloud.server state=stopped against the edge: what the fence does to an old server that does not
    answer. The module itself (the bundled collection) runs; the token is only ever kept as a fingerprint."""
    root = Path(__file__).resolve().parents[2]
    assert lab.call("POST", "/admin/hcloud_server", {"name": "old-prod"})[0] == 200
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root / "collections"), ANSIBLE_CONFIG=str(root / "ansible.cfg"))
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-m", "hetzner.hcloud.server",
            "-e", f"ansible_python_interpreter={sys.executable}",
            "-a", f"name=old-prod state=stopped api_token=edge-token api_endpoint={lab.base}/hcloud/v1"]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "status: 'off'" in run.stdout and "changed: true" in run.stdout
    state = lab.call("GET", "/admin/state")[1]["hcloud"]["old-prod"]
    assert state["status"] == "off" and state["by"] == fp("edge-token")
    assert lab.call("GET", "/hcloud/v1/servers?name=old-prod")[0] == 401  # no token, no answer


FENCE_PLAY = """
- name: fence an old server that does not answer
  hosts: old
  gather_facts: false
  roles:
    - role: mojorust.dr.fence
  post_tasks:
    - name: report
      ansible.builtin.debug:
        msg: "FENCE_REPORT={{ fence_report | to_json }}"
"""


def _fence_unreachable(lab, tmp_path, server: str, token: str = "edge-token"):
    """The fence role, for real, against a host whose SSH port refuses (as a dead or split-off server does), with
    provider fencing through the edge's Hetzner Cloud stand-in."""
    root = Path(__file__).resolve().parents[2]
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    old-prod:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n"
        "      ansible_user: admin\n  children:\n    old:\n      hosts:\n        old-prod: {}\n"
    )
    (tmp_path / "play.yml").write_text(FENCE_PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root / "collections"), ANSIBLE_CONFIG=str(root / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")  # fmt: skip
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(tmp_path / "play.yml"),
            "-e", "fence_provider=hcloud", "-e", f"fence_hcloud_server={server}", "-e", "fence_connect_timeout=3",
            "-e", f"fence_hcloud_api_token={token}",
            "-e", f"fence_hcloud_api_endpoint={lab.base}/hcloud/v1"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)


def test_an_old_server_that_does_not_answer_is_fenced_by_powering_it_off_at_the_provider(lab, tmp_path):
    """issue 16: no SSH answer, so the provider's API switches it off; that counts as fenced, and says so."""
    assert lab.call("POST", "/admin/hcloud_server", {"name": "mojo-prod-1"})[0] == 200
    run = _fence_unreachable(lab, tmp_path, "mojo-prod-1")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert lab.call("GET", "/admin/state")[1]["hcloud"]["mojo-prod-1"]["status"] == "off"
    report = json.loads(re.search(r"FENCE_REPORT=(\{.*\})", out).group(1).replace('\\"', '"'))
    assert report["fenced"] and report["fenced_by"] == "provider" and not report["reachable"]
    assert not report["confirmed_down_by_operator"]
    assert "edge-token" not in out, "the API token must not be printed"


def test_a_provider_that_cannot_power_it_off_keeps_the_fence_closed(lab, tmp_path):
    """A server the provider does not know (a typo in fence_hcloud_server), or a wrong token: the run stops, naming
    the provider's answer and what to do, and nothing counts as fenced."""
    assert lab.call("POST", "/admin/hcloud_server", {"name": "mojo-prod-1"})[0] == 200
    for server, token in (("mojo-prod-typo", "edge-token"), ("mojo-prod-1", "")):
        run = _fence_unreachable(lab, tmp_path, server, token)
        out = " ".join((run.stdout + run.stderr).split())
        assert run.returncode != 0
        assert "FENCE_REPORT" not in out
        assert (
            ("powering it off at Hetzner Cloud failed too" in out) if token else ("needs fence_hcloud_api_token" in out)
        )
    assert lab.call("GET", "/admin/state")[1]["hcloud"]["mojo-prod-1"]["status"] == "running"
