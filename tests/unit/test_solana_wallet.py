"""solana_wallet: keypairs in solana-keygen form and transfers that verify offline."""

from __future__ import annotations

import base64

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
