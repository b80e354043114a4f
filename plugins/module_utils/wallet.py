"""Solana keys: base58, and the public key of a solana-keygen keypair (a JSON list of 64 numbers, the 32-byte
secret seed then the 32-byte public key). Shared by the backup sets (the wallet's public key in a manifest), the
solana_wallet module and the key rotation filters."""

from __future__ import annotations

import json

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rest = divmod(number, 58)
        out = ALPHABET[rest] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in ALPHABET:
            raise ValueError(f"{text!r} is not base58")
        number = number * 58 + ALPHABET.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def keypair_pubkey(keypair: list) -> str:
    """Base58 public key of a keypair (its last 32 numbers)."""
    return b58encode(bytes(keypair[32:64]))


def wallet_pubkey(path: str) -> str:
    """Base58 public key of the keypair file at path."""
    with open(path, encoding="utf-8") as handle:
        return keypair_pubkey(json.load(handle))
