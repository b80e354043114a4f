#!/usr/bin/python
# Copyright (c) 2026, mojorust.dr maintainers
# MIT License (see LICENSE or https://opensource.org/licenses/MIT)
# SPDX-License-Identifier: MIT
"""solana_wallet: a new Solana keypair (solana-keygen JSON), and a signed transfer of the old wallet's funds to it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: solana_wallet
short_description: Generate a Solana keypair, or move a wallet's funds to another public key (signed, sent, confirmed)
version_added: 0.1.0
author: mojorust.dr maintainers (@mojorust)
description:
  - With I(state=generated), makes a new ed25519 keypair and returns it as the text of a C(solana-keygen) file (a
    JSON list of 64 numbers, the 32-byte secret seed then the 32-byte public key) with its base58 public key. Run it
    with C(no_log) and on the workstation; the keypair is meant for the vault and the bot host, nowhere else.
  - With I(state=transfer), builds a legacy Solana transaction with one System Program transfer from I(keypair) to
    I(to), signs it and checks the signature with the public key. With I(rpc_url), the balance (everything but
    I(fee_lamports) by default) and a recent blockhash come from that node, and the wallet's SPL token accounts are
    listed (a System Program transfer cannot move them, so they are returned as steps left to do). With I(send), the
    transaction is sent, the node's JSON-RPC C(error) is checked, and the signature is confirmed on chain with
    C(getSignatureStatuses); C(sent) and C(confirmed) say what really happened, with C(error) when it did not.
  - The keypair is one C(no_log) string, and only public data is returned for a transfer (public keys, the signed
    transaction, its signature). A keypair given as a list of numbers would make Ansible mask every one of those
    numbers wherever its digits appear in the output, the transaction's base64 included.
  - Needs the Python package C(cryptography) where it runs (Ansible's own dependency on the workstation).
options:
  state:
    description: C(generated) for a new keypair, C(transfer) for a transfer of the funds.
    type: str
    choices: [generated, transfer]
    default: generated
  keypair:
    description:
      - The paying keypair, for I(state=transfer) - the text of a C(solana-keygen) file (a JSON list of 64 numbers)
        or the base58 form of those 64 bytes (a wallet's "export private key").
    type: str
  to:
    description: Base58 public key that receives the funds, for I(state=transfer).
    type: str
  lamports:
    description: Amount to move; by default (with I(rpc_url)) the whole balance less I(fee_lamports).
    type: int
  recent_blockhash:
    description: Base58 blockhash; by default (with I(rpc_url)) from C(getLatestBlockhash).
    type: str
  rpc_url:
    description: A Solana JSON-RPC endpoint (balance, blockhash, token accounts, send, confirm).
    type: str
  fee_lamports:
    description: The fee left in the wallet when the whole balance moves.
    type: int
    default: 5000
  send:
    description: Send the signed transaction with I(rpc_url) and wait for it to be confirmed.
    type: bool
    default: false
  confirm_timeout:
    description: Seconds to wait for the signature to reach C(confirmed) or C(finalized).
    type: int
    default: 60
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    description: In check mode a transfer is built and signed but never sent.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: New wallet
  mojorust.dr.solana_wallet:
  delegate_to: localhost
  register: new_wallet
  no_log: true

- name: Everything but the fee moves to the new wallet, sent and confirmed
  mojorust.dr.solana_wallet:
    state: transfer
    keypair: "{{ old_keypair | to_json }}"
    to: "{{ new_wallet.pubkey }}"
    rpc_url: https://api.mainnet-beta.solana.com
    send: true
  delegate_to: localhost
  register: transfer
"""

RETURN = r"""
keypair:
  description: New keypair, the text of a solana-keygen file.
  returned: state=generated
  type: str
pubkey: {description: "Base58 public key of the new keypair, or of the payer.", returned: success, type: str}
to: {description: The receiving public key., returned: state=transfer, type: str}
lamports: {description: The amount the transaction moves., returned: state=transfer, type: int}
transaction:
  description: Signed transaction, base64 (for sendTransaction with encoding base64); public.
  returned: state=transfer and something to move
  type: str
signature: {description: The transaction's signature in base58 (its id on chain)., returned: state=transfer, type: str}
sent:
  description: The node accepted the transaction (no JSON-RPC error).
  returned: state=transfer
  type: bool
confirmed:
  description: The signature reached C(confirmed) or C(finalized) without an error.
  returned: state=transfer
  type: bool
confirmation_status: {description: The last status the node reported., returned: state=transfer, type: str}
error:
  description: Why nothing was sent or confirmed (the node's own error message), empty otherwise.
  returned: state=transfer
  type: str
token_accounts:
  description: SPL token accounts the wallet owns (pubkey, mint, amount, decimals, program); they are not moved.
  returned: state=transfer with rpc_url
  type: list
  elements: dict
"""

import base64
import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url
from ansible_collections.mojorust.dr.plugins.module_utils.wallet import b58decode, b58encode, keypair_pubkey

SYSTEM_PROGRAM = bytes(32)
TRANSFER = 2  # SystemInstruction::Transfer


def compact_u16(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def generate() -> tuple[list[int], str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return list(seed + public), b58encode(public)


def transfer_message(payer: bytes, to: bytes, lamports: int, blockhash: bytes) -> bytes:
    """A legacy message: header, three accounts (payer, receiver, System Program), blockhash, one transfer."""
    header = bytes([1, 0, 1])  # one signer (the payer), no read-only signer, one read-only account (the program)
    accounts = compact_u16(3) + payer + to + SYSTEM_PROGRAM
    data = TRANSFER.to_bytes(4, "little") + lamports.to_bytes(8, "little")
    instruction = bytes([2]) + compact_u16(2) + bytes([0, 1]) + compact_u16(len(data)) + data
    return header + accounts + blockhash + compact_u16(1) + instruction


def sign_transfer(keypair: list[int], to: str, lamports: int, recent_blockhash: str) -> dict:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    secret = bytes(keypair)
    if len(secret) != 64:
        raise ValueError("a solana-keygen keypair has 64 numbers")
    key = Ed25519PrivateKey.from_private_bytes(secret[:32])
    payer = secret[32:]
    receiver, blockhash = b58decode(to), b58decode(recent_blockhash)
    if len(receiver) != 32 or len(blockhash) != 32:
        raise ValueError("the receiver and the blockhash must each be 32 bytes in base58")
    message = transfer_message(payer, receiver, lamports, blockhash)
    signature = key.sign(message)
    key.public_key().verify(signature, message)  # raises if the keypair's halves do not belong together
    return {
        "pubkey": b58encode(payer),
        "transaction": base64.b64encode(compact_u16(1) + signature + message).decode(),
        "signature": b58encode(signature),
    }


def verify_transaction(transaction: str) -> bool:
    """Offline check of a one-signature transaction made here: the signature is the payer's over the message."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = base64.b64decode(transaction)
    signature, message = raw[1:65], raw[65:]
    payer = message[4:36]  # after the 3-byte header and the one-byte account count
    try:
        Ed25519PublicKey.from_public_bytes(payer).verify(signature, message)
    except InvalidSignature:
        return False
    return True


TOKEN_PROGRAMS = ("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")


def parse_keypair(text: str) -> list[int]:
    """A keypair from a solana-keygen file's text (JSON list of 64 numbers) or base58 of its 64 bytes."""
    text = (text or "").strip()
    if text.startswith("["):
        try:
            numbers = json.loads(text)
        except ValueError:
            raise ValueError("the keypair is not a solana-keygen JSON list of 64 numbers") from None
        if not all(isinstance(n, int) and 0 <= n <= 255 for n in numbers):
            raise ValueError("the keypair is not a solana-keygen JSON list of 64 numbers")
        return list(numbers)
    return list(b58decode(text))


class Rpc:
    """A Solana JSON-RPC endpoint; `error` answers become RpcError with the node's message."""

    def __init__(self, url: str, timeout: float = 15):
        self.url, self.timeout = url, timeout

    def call(self, method: str, params: list):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        try:
            with open_url(self.url, data=body, headers={"Content-Type": "application/json"}, method="POST",
                          timeout=self.timeout) as response:  # fmt: skip
                answer = json.loads(response.read())
        except (OSError, ValueError, UrlConnectionError) as error:
            raise RpcError(f"{method}: no answer from {self.url} ({error})") from None
        if not isinstance(answer, dict) or "error" in answer or "result" not in answer:
            detail = answer.get("error", answer) if isinstance(answer, dict) else answer
            message = detail.get("message", detail) if isinstance(detail, dict) else detail
            raise RpcError(f"{method}: {message}")
        return answer["result"]


class RpcError(Exception):
    pass


def token_accounts(rpc: Rpc, owner: str) -> list[dict]:
    accounts = []
    for program in TOKEN_PROGRAMS:
        result = rpc.call("getTokenAccountsByOwner", [owner, {"programId": program}, {"encoding": "jsonParsed"}])
        for item in result.get("value", []):
            info = item["account"]["data"]["parsed"]["info"]
            amount = info["tokenAmount"]
            accounts.append({"pubkey": item["pubkey"], "mint": info["mint"], "amount": int(amount["amount"]),
                             "decimals": amount["decimals"], "program": program})  # fmt: skip
    return accounts


def confirm(rpc: Rpc, signature: str, timeout: float, sleep=time.sleep, clock=time.monotonic) -> tuple[bool, str, str]:
    """(confirmed, last status, error): getSignatureStatuses until confirmed/finalized, an error, or the timeout."""
    deadline = clock() + timeout
    status = "unknown"
    while True:
        value = rpc.call("getSignatureStatuses", [[signature], {"searchTransactionHistory": True}])["value"][0]
        if value is not None:
            if value.get("err") is not None:
                return False, value.get("confirmationStatus") or "failed", f"the transaction failed: {value['err']}"
            status = value.get("confirmationStatus") or "processed"
            if status in ("confirmed", "finalized"):
                return True, status, ""
        if clock() >= deadline:
            return False, status, f"not confirmed after {timeout:g} s (last status: {status})"
        sleep(1)


def drain(params: dict, check_mode: bool) -> dict:
    """The transfer of state=transfer, as the module returns it (public data only)."""
    keypair = parse_keypair(params["keypair"])
    payer = keypair_pubkey(keypair) if len(keypair) == 64 else ""
    result = {"pubkey": payer, "to": params["to"], "sent": False, "confirmed": False, "confirmation_status": "",
              "error": "", "signature": "", "lamports": 0}  # fmt: skip
    lamports, blockhash = params["lamports"], params["recent_blockhash"]
    rpc = Rpc(params["rpc_url"]) if params["rpc_url"] else None
    if rpc:
        result["token_accounts"] = token_accounts(rpc, payer)
        if lamports is None:
            balance = rpc.call("getBalance", [payer])["value"]
            lamports = balance - params["fee_lamports"]
        if blockhash is None:
            blockhash = rpc.call("getLatestBlockhash", [])["value"]["blockhash"]
    if lamports is None or blockhash is None:
        raise ValueError("give lamports and recent_blockhash, or rpc_url to read them from a node")
    if lamports <= 0:
        result["error"] = f"nothing to move: the balance does not cover the fee of {params['fee_lamports']} lamports"
        return result
    result.update(sign_transfer(keypair, params["to"], lamports, blockhash), lamports=lamports)
    if not params["send"] or check_mode:
        return result
    if not rpc:
        raise ValueError("send needs rpc_url")
    try:
        signature = rpc.call("sendTransaction", [result["transaction"], {"encoding": "base64"}])
    except RpcError as error:
        result["error"] = f"not sent: {error}"
        return result
    if signature != result["signature"]:
        result["error"] = f"the node answered signature {signature}, not the transaction's {result['signature']}"
        return result
    result["sent"] = True
    try:
        result["confirmed"], result["confirmation_status"], result["error"] = confirm(
            rpc, signature, params["confirm_timeout"]
        )
    except RpcError as error:
        result["error"] = f"sent, not confirmed: {error}"
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["generated", "transfer"], "default": "generated"},
            "keypair": {"type": "str", "no_log": True},
            "to": {"type": "str"},
            "lamports": {"type": "int"},
            "recent_blockhash": {"type": "str"},
            "rpc_url": {"type": "str"},
            "fee_lamports": {"type": "int", "default": 5000},
            "send": {"type": "bool", "default": False},
            "confirm_timeout": {"type": "int", "default": 60},
        },
        required_if=[("state", "transfer", ("keypair", "to"))],
        supports_check_mode=True,
    )
    try:
        import cryptography  # noqa: F401
    except ImportError:
        module.fail_json(msg="the Python package cryptography is needed where solana_wallet runs (the workstation)")
    params = module.params
    if params["state"] == "generated":
        keypair, pubkey = generate()
        module.exit_json(changed=False, keypair=json.dumps(keypair, separators=(",", ":")), pubkey=pubkey)
    try:
        result = drain(params, module.check_mode)
    except (ValueError, RpcError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=result["sent"], **result)


if __name__ == "__main__":
    main()
