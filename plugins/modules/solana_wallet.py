#!/usr/bin/python
"""solana_wallet: a new Solana keypair (solana-keygen JSON), and a signed transfer of the old wallet's funds to it."""

from __future__ import annotations

DOCUMENTATION = r"""
module: solana_wallet
short_description: Generate a Solana keypair, or build and sign a transfer from one keypair to another public key
version_added: 0.2.0
author: mojorust.dr maintainers
description:
  - With I(state=generated), makes a new ed25519 keypair in C(solana-keygen) JSON form (64 numbers, the 32-byte secret
    seed then the 32-byte public key) and returns it with its base58 public key. Run it with C(no_log) and on the
    workstation; the keypair is meant for the vault and the bot host, nowhere else.
  - With I(state=transfer), builds a legacy Solana transaction with one System Program transfer of I(lamports) from
    I(keypair) to I(to), for I(recent_blockhash), signs it, checks the signature with the public key, and returns it
    base64-encoded for C(sendTransaction). Nothing is sent; the transaction can be verified offline.
  - Needs the Python package C(cryptography) where it runs (Ansible's own dependency on the workstation).
options:
  state:
    description: C(generated) for a new keypair, C(transfer) for a signed transfer.
    type: str
    choices: [generated, transfer]
    default: generated
  keypair:
    description: The paying keypair (64 numbers), for I(state=transfer).
    type: list
    elements: int
  to:
    description: Base58 public key that receives the funds, for I(state=transfer).
    type: str
  lamports:
    description: Amount to move, for I(state=transfer).
    type: int
  recent_blockhash:
    description: Base58 blockhash from C(getLatestBlockhash), for I(state=transfer).
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: New wallet
  mojorust.dr.solana_wallet:
  delegate_to: localhost
  register: new_wallet
  no_log: true

- name: Transfer, signed, not sent
  mojorust.dr.solana_wallet:
    state: transfer
    keypair: "{{ old_keypair }}"
    to: "{{ new_wallet.pubkey }}"
    lamports: 1000000
    recent_blockhash: "{{ blockhash }}"
  delegate_to: localhost
  register: transfer
  no_log: true
"""

RETURN = r"""
keypair:
  description: New keypair (solana-keygen JSON numbers).
  returned: state=generated
  type: list
  elements: int
pubkey: {description: Base58 public key of the new keypair, or of the payer., returned: success, type: str}
transaction:
  description: Signed transaction, base64 (for sendTransaction with encoding base64).
  returned: state=transfer
  type: str
signature: {description: The transaction's signature in base58 (its id on chain)., returned: state=transfer, type: str}
"""

import base64

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.mojorust.dr.plugins.module_utils.backupset import base58

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
SYSTEM_PROGRAM = bytes(32)
TRANSFER = 2  # SystemInstruction::Transfer
# Base58 encoding is the one the backup sets use for the wallet's public key.
b58encode = base58


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in ALPHABET:
            raise ValueError(f"{text!r} is not base58")
        number = number * 58 + ALPHABET.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["generated", "transfer"], "default": "generated"},
            "keypair": {"type": "list", "elements": "int", "no_log": True},
            "to": {"type": "str"},
            "lamports": {"type": "int"},
            "recent_blockhash": {"type": "str"},
        },
        required_if=[("state", "transfer", ("keypair", "to", "lamports", "recent_blockhash"))],
        supports_check_mode=True,
    )
    try:
        import cryptography  # noqa: F401
    except ImportError:
        module.fail_json(msg="the Python package cryptography is needed where solana_wallet runs (the workstation)")
    params = module.params
    if params["state"] == "generated":
        keypair, pubkey = generate()
        module.exit_json(changed=False, keypair=keypair, pubkey=pubkey)
    try:
        result = sign_transfer(params["keypair"], params["to"], params["lamports"], params["recent_blockhash"])
    except ValueError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
