"""Unit tests for the pure logic inside the modules: gpg_key.parse_colons, bot_health, db_probe.drift."""

from __future__ import annotations

import subprocess

import pytest
from ansible_collections.mojorust.dr.plugins.modules import bot_health, db_probe, gpg_key

parse_colons = gpg_key.parse_colons


# ------------------------------------------------------------------------------------------- parse_colons
def _colons(keys, home, *args: str) -> str:
    return keys.gpg(home, "--with-colons", *args).stdout.decode()


def _subkey_fingerprints(text: str) -> list[str]:
    lines = text.splitlines()
    return [
        lines[i + 1].split(":")[9]
        for i, line in enumerate(lines[:-1])
        if line.startswith(("sub:", "ssb:")) and lines[i + 1].startswith("fpr:")
    ]


def test_parse_colons_public_key_takes_the_primary_fingerprint(gpg_keys):
    text = _colons(gpg_keys, gpg_keys.operator_home, "--list-keys")
    subkeys = _subkey_fingerprints(text)
    assert len(subkeys) == 1  # the encryption subkey, whose fpr line comes after the primary's
    expected = {"fingerprint": gpg_keys.operator_fpr, "uids": [gpg_keys.operator_uid], "secret": False}
    assert parse_colons(text) == [expected]
    assert subkeys[0] != gpg_keys.operator_fpr


def test_parse_colons_secret_keys_are_marked_secret(gpg_keys):
    text = _colons(gpg_keys, gpg_keys.operator_home, "--list-secret-keys")
    expected = {"fingerprint": gpg_keys.operator_fpr, "uids": [gpg_keys.operator_uid], "secret": True}
    assert parse_colons(text) == [expected]


def test_parse_colons_several_keys_in_keyring_order(gpg_keys):
    keys = parse_colons(_colons(gpg_keys, gpg_keys.host_home, "--list-keys"))
    assert [(k["fingerprint"], k["uids"], k["secret"]) for k in keys] == [
        (gpg_keys.host_fpr, [gpg_keys.host_uid], False),
        (gpg_keys.operator_fpr, [gpg_keys.operator_uid], False),
    ]
    secret = parse_colons(_colons(gpg_keys, gpg_keys.host_home, "--list-secret-keys"))
    assert [(k["fingerprint"], k["secret"]) for k in secret] == [(gpg_keys.host_fpr, True)]


def test_parse_colons_of_an_armored_key_shown_before_import(gpg_keys):
    armored = gpg_keys.gpg(gpg_keys.operator_home, "--armor", "--export", gpg_keys.operator_fpr).stdout
    out = gpg_keys.gpg(
        gpg_keys.stranger_home, "--with-colons", "--import-options", "show-only", "--import", data=armored
    ).stdout.decode()
    keys = parse_colons(out)
    assert [k["fingerprint"] for k in keys] == [gpg_keys.operator_fpr]
    assert keys[0]["uids"] == [gpg_keys.operator_uid]
    assert keys[0]["secret"] is False


def test_parse_colons_fingerprint_upper_case_and_several_uids():
    text = "\n".join(
        [
            "tru::1:1700000000:0:3:1:5",
            "pub:u:255:22:AAAA1111BBBB2222:1700000000:::u:::scESC:::::ed25519:::0:",
            "fpr:::::::::aaaa1111bbbb2222cccc3333dddd4444eeee5555:",
            "uid:u::::1700000000::HASH1::First <first@example.test>::::::::::0:",
            "uid:u::::1700000000::HASH2::Second <second@example.test>::::::::::0:",
            "sub:u:255:18:FFFF6666AAAA7777:1700000000::::::e:::::cv25519::",
            "fpr:::::::::ffff6666aaaa7777bbbb8888cccc9999dddd0000:",
        ]
    )
    assert parse_colons(text) == [
        {
            "fingerprint": "AAAA1111BBBB2222CCCC3333DDDD4444EEEE5555",
            "uids": ["First <first@example.test>", "Second <second@example.test>"],
            "secret": False,
        }
    ]


@pytest.mark.parametrize("text", ["", "tru::1:1700000000:0:3:1:5\n", "fpr:::::::::ABCD:\nuid:::::::::x:\n"])
def test_parse_colons_without_keys_is_empty(text):
    assert parse_colons(text) == []


# ---------------------------------------------------------------------------------------------- bot_health
@pytest.mark.parametrize(
    ("status", "body", "healthy"),
    [
        (200, {"db_ok": True}, True),
        (200, {"db_ok": True, "last_trade_id": 5}, True),
        (200, {"db_ok": False}, False),
        (200, {}, False),
        (200, {"db_ok": None}, False),
        (503, {"db_ok": True}, False),
        (None, {}, False),
        (204, {"db_ok": True}, False),
    ],
)
def test_is_healthy(status, body, healthy):
    assert bot_health.is_healthy(status, body) is healthy


@pytest.mark.parametrize(
    ("first_id", "body", "advanced"),
    [
        (10, {"last_trade_id": 11}, True),
        (10, {"last_trade_id": 10}, False),
        (10, {"last_trade_id": 9}, False),
        (10, {}, False),
        (10, {"last_trade_id": None}, False),
        (None, {"last_trade_id": 1}, True),  # no trade at the first healthy answer, one since
        (None, {"last_trade_id": 0}, True),
        (None, {}, False),
        (0, {"last_trade_id": 1}, True),
    ],
)
def test_trading_advanced(first_id, body, advanced):
    assert bot_health.trading_advanced(first_id, body) is advanced


@pytest.mark.parametrize(
    ("state", "down"),
    [
        ({"ActiveExitTimestampMonotonic": "95250000"}, 4.75),  # stopped at 95.25 s after boot, healthy at 100 s
        ({"ActiveExitTimestampMonotonic": "0"}, None),  # never stopped since boot
        ({}, None),  # no unit (systemctl failed, or no service to watch)
    ],
)
def test_down_seconds_from_the_units_last_stop_to_the_healthy_answer(state, down):
    assert bot_health.down_seconds(state, 100.0) == down


# ------------------------------------------------------------------------------------------------ db_probe
EXPECTED = {
    "public.trades": {"rows": 120, "checksum": "1"},
    "public.positions": {"rows": 3, "checksum": "2"},
    "public.orders": {"rows": 40, "checksum": "3"},
}


def test_drift_none_when_every_count_matches():
    probe = {"reachable": True, "error": "", "tables": {n: {"rows": r["rows"]} for n, r in EXPECTED.items()}}
    assert db_probe.drift(EXPECTED, probe) == []


def test_drift_unreachable_database_is_one_sentence():
    probe = {"reachable": False, "error": "connection refused", "tables": {}}
    assert db_probe.drift(EXPECTED, probe) == ["database unreachable: connection refused"]


def test_drift_row_deltas_and_unreadable_tables_sorted_by_name():
    probe = {
        "reachable": True,
        "error": "",
        "tables": {
            "public.trades": {"rows": 117},
            "public.positions": {"error": 'relation "public.positions" does not exist'},
            "public.orders": {"rows": 41},
            "public.extra": {"rows": 9},  # not in the manifest: not drift
        },
    }
    assert db_probe.drift(EXPECTED, probe) == [
        "public.orders: 41 rows, the set 40 (+1)",
        'public.positions: unreadable (relation "public.positions" does not exist)',
        "public.trades: 117 rows, the set 120 (-3)",
    ]


def test_drift_empty_table_against_the_set():
    probe = {"reachable": True, "error": "", "tables": {n: {"rows": 0} for n in EXPECTED}}
    assert db_probe.drift({"public.trades": EXPECTED["public.trades"]}, probe) == [
        "public.trades: 0 rows, the set 120 (-120)"
    ]


# ------------------------------------------------------------------------------------------- vault_update
def test_vault_update_sets_dotted_keys_and_returns_the_previous_values():
    from ansible_collections.mojorust.dr.plugins.module_utils import vault_values as vault_update

    data = {"vault_env": {"HELIUS_API_KEY": "old-h", "QUICKNODE_API_KEY": "old-q"}, "db": "old-db"}
    changed, previous = vault_update.update(data, {"vault_env.HELIUS_API_KEY": "new-h", "db": "old-db"}, False)
    assert changed == ["vault_env.HELIUS_API_KEY"] and previous == {"vault_env.HELIUS_API_KEY": "old-h"}
    assert data == {"vault_env": {"HELIUS_API_KEY": "new-h", "QUICKNODE_API_KEY": "old-q"}, "db": "old-db"}


def test_vault_update_refuses_a_key_that_is_not_there_unless_told():
    from ansible_collections.mojorust.dr.plugins.module_utils import vault_values as vault_update

    with pytest.raises(vault_update.VaultError, match="HELIUS_APIKEY is not in the vault file"):
        vault_update.update({"vault_env": {"HELIUS_API_KEY": "x"}}, {"vault_env.HELIUS_APIKEY": "y"}, False)
    data: dict = {}
    assert vault_update.update(data, {"a.b": 1}, True) == (["a.b"], {"a.b": None}) and data == {"a": {"b": 1}}


# ------------------------------------------------------------------------ gpg_key_file: rotation and distrust
def test_a_rotated_out_signing_key_file_makes_every_keyring_refuse_its_signatures(tmp_path):
    """The signing key of a breached host: its public key with its revocation merged in, as the backup role puts it
    beside the trusted keys; a keyring built from that directory refuses what the key signed (REVKEYSIG)."""
    from ansible_collections.mojorust.dr.plugins.module_utils.backup import config, gpg
    from ansible_collections.mojorust.dr.plugins.modules import gpg_key_file as gkf

    signer = gkf.Gpg()
    try:
        fpr, _secret, public, revocation = gkf.generate(signer, "mojorust backup signing key (breached)")
        data = tmp_path / "data"
        data.write_bytes(b"a set's archive")
        sig = tmp_path / "data.sig"
        signed = subprocess.run(gpg.gpg_sign_command(signer.home, fpr, str(sig), str(data), "20261126T010203Z", "prod"),
                                capture_output=True)  # fmt: skip
        assert signed.returncode == 0, signed.stderr
    finally:
        signer.close()
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "prod.asc").write_bytes(public)
    with gpg.keyring(str(trusted)) as home:
        good = subprocess.run([*gpg.gpg_base(home), "--status-fd", "1", "--verify", str(sig), str(data)],
                              capture_output=True, text=True)  # fmt: skip
        assert gpg.parse_verify_status(good.stdout, [fpr]).fingerprint == fpr
    revoked = gkf.revoked_public_key(public.decode(), revocation.decode())
    checker = gkf.Gpg()
    try:
        assert [k["revoked"] for k in checker.show_revoked(revoked.encode())] == [True]
    finally:
        checker.close()
    (trusted / f"prod.{fpr}.revoked.asc").write_text(revoked)
    with gpg.keyring(str(trusted)) as home:
        refused = subprocess.run([*gpg.gpg_base(home), "--status-fd", "1", "--verify", str(sig), str(data)],
                                 capture_output=True, text=True)  # fmt: skip
        with pytest.raises(config.BackupError, match="revoked"):
            gpg.parse_verify_status(refused.stdout, [fpr])


def _gpg_key_file(tmp_path, **args) -> dict:
    """mojorust.dr.gpg_key_file run for real through ansible (localhost), its JSON result."""
    import json
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root / "collections"), ANSIBLE_CONFIG=str(root / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")  # fmt: skip
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-m", "mojorust.dr.gpg_key_file",
            "-e", f"ansible_python_interpreter={sys.executable}", "-a", json.dumps(args)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    status, _, body = result.stdout.partition(" => ")  # localhost | FAILED! => {...}
    return {**json.loads(body), "failed": "FAILED" in status}


def test_a_rotation_without_the_current_keys_revocation_changes_nothing(tmp_path):
    """After an interrupted rotation the revocation file may belong to another key (or be gone): rotating then would
    hand the stolen key on as "revoked" while nothing revokes it. It stops, names the fix, and leaves both files."""
    key, rev = tmp_path / "signing-key.asc", tmp_path / "signing-key.rev"
    made = _gpg_key_file(tmp_path, path=str(key), generate_uid="unit (rotation)", revocation_path=str(rev), mode="0600")
    assert made["changed"] and not made.get("failed"), made
    other = tmp_path / "other"
    other.mkdir()
    _gpg_key_file(other, path=str(other / "k.asc"), generate_uid="unit (other)", revocation_path=str(other / "k.rev"),
                  mode="0600")  # fmt: skip
    before = key.read_bytes()
    rev.write_bytes((other / "k.rev").read_bytes())  # another key's revocation
    refused = _gpg_key_file(tmp_path, path=str(key), generate_uid="unit (rotation)", revocation_path=str(rev),
                            rotate=True, mode="0600")  # fmt: skip
    assert refused.get("failed"), refused
    assert f"does not revoke the current signing key {made['fingerprint']}" in refused["msg"]
    assert "nothing was changed" in refused["msg"]
    assert key.read_bytes() == before and not list(tmp_path.glob("*.retired"))
    rev.unlink()
    assert _gpg_key_file(tmp_path, path=str(key), generate_uid="unit (rotation)", revocation_path=str(rev),
                         rotate=True, mode="0600").get("failed")  # fmt: skip
    assert key.read_bytes() == before
