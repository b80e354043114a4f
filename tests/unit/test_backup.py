"""Unit tests for the plugins/module_utils/backup package: everything that needs no PostgreSQL.

Backup sets are built here the way _create_locked builds them (same members, tar layout, .sha256, .sig and
summary), with a fake database dump instead of pg_dump, and real GnuPG keys made once per session (conftest).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ansible_collections.mojorust.dr.plugins.module_utils import wallet
from ansible_collections.mojorust.dr.plugins.module_utils.backup import (
    cli,
    config,
    create,
    gpg,
    hostdir,
    pgstats,
    pipeline,
    restore,
    sets,
    status,
    verify,
)
from hypothesis import given, settings
from hypothesis import strategies as st

SET_ID = "20261125T020000Z"
WALLET = list(range(64))
FILES = {
    "config/trading.toml": (b'[bot]\nname = "mojorust"\nmode = "paper"\n', 0o644),
    ".env": (b'DB_PASSWORD="s3cret"\nHELIUS_API_KEY=helius-key\n', 0o600),
    "wallet/id.json": (json.dumps(WALLET).encode(), 0o600),
    "data/portfolio_state.json": (b'{"portfolio_value": 10234.5}\n', 0o640),
}
DB_BYTES = b"PGDMP\x01\x0e\x00" + bytes(range(256)) * 300
TABLES = {"public.trades": {"rows": 3, "checksum": "1234567"}, "public.positions": {"rows": 0, "checksum": "0"}}


# ----------------------------------------------------------------------------------------------- helpers
def make_cfg(keys, root: Path, **overrides) -> config.Config:
    values = {
        "backup_dir": str(root / "backups"),
        "bot_home": str(root / "bot"),
        "wallet_path": str(root / "bot" / "wallet" / "id.json"),
        "operator_keys_file": str(keys.key_files / "operator-keys.asc"),
        "signing_key_file": str(keys.key_files / "signing-key.asc"),
        "trusted_keys_dir": str(keys.key_files / "trusted-keys"),
        "backup_user": "root",
        "recipients": [keys.operator_fpr],
        "signing_key": keys.host_fpr,
        "alert_api_base": "",
        "host": "unit-host",
    }
    values.update(overrides)
    return config.Config(**values)


def _raw_files_member(
    cfg: config.Config, home: str, entries: list[tuple[str, bytes, int]], out_path: str
) -> list[dict]:
    """A files member written by hand (tar | zstd | gpg), for member names _pack_files cannot produce."""
    buffer = io.BytesIO()
    records = []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
            records.append(
                {"name": name, "size": len(data), "mode": f"{mode:04o}", "sha256": hashlib.sha256(data).hexdigest()}
            )
    compressed = subprocess.run(["zstd", "-q", "-c"], input=buffer.getvalue(), capture_output=True, check=True)
    gpg.encrypt_bytes(home, cfg.recipients, compressed.stdout, out_path)
    return records


def build_set(
    keys,
    root: Path,
    set_id: str = SET_ID,
    files: dict[str, tuple[bytes, int]] | None = None,
    edit_manifest=None,
    sign_home: Path | None = None,
    sign_key: str | None = None,
    raw_files: list[tuple[str, bytes, int]] | None = None,
    sign_as: str | None = None,
) -> sets.SetInfo:
    """A published set in root/backups, laid out as _create_locked lays it out, with a fake database dump."""
    files = FILES if files is None else files
    cfg = make_cfg(keys, root)
    backup_dir = Path(cfg.backup_dir)
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = backup_dir / f".partial-{set_id}"
    partial.mkdir(mode=0o700)
    if raw_files is not None:
        records = _raw_files_member(cfg, str(keys.host_home), raw_files, str(partial / sets.MEMBERS[2]))
    else:
        source = root / f"source-{set_id}"
        source.mkdir()
        members = []
        for index, (name, (data, mode)) in enumerate(files.items()):
            path = source / f"file{index}"
            path.write_bytes(data)
            path.chmod(mode)
            members.append((name, str(path)))
        records = create._pack_files(members, str(partial / sets.MEMBERS[2]), cfg, str(keys.host_home))
    compressed = subprocess.run(["zstd", "-q", "-c"], input=DB_BYTES, capture_output=True, check=True).stdout
    gpg.encrypt_bytes(str(keys.host_home), cfg.recipients, compressed, str(partial / sets.MEMBERS[1]))
    manifest = {
        "id": set_id,
        "created_at": sets.parse_id(set_id).isoformat(),
        "host": cfg.host,
        "tool_version": create.TOOL_VERSION,
        "postgresql_version": "16.4",
        "database": {
            "name": cfg.db_name,
            "format": "pg_dump custom, zstd",
            "size": len(DB_BYTES),
            "sha256": hashlib.sha256(DB_BYTES).hexdigest(),
            "tables": TABLES,
        },
        "files": records,
        "portfolio_value": 10234.5,
        "config_git_commit": None,
        "key_fingerprints": {"env": {}, "wallet_pubkey": wallet.b58encode(bytes(WALLET[32:]))},
        "recipients": list(cfg.recipients),
        "signer": cfg.signing_key,
    }
    if edit_manifest:
        edit_manifest(manifest)
    gpg.encrypt_bytes(str(keys.host_home), cfg.recipients, json.dumps(manifest, indent=2).encode(),
                      str(partial / sets.MEMBERS[0]))  # fmt: skip
    names = sets.set_files(set_id)
    tar_path = partial / names["tar"]
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for member in sets.MEMBERS:
            tar.add(partial / member, arcname=member)
    for member in sets.MEMBERS:
        (partial / member).unlink()
    digest = pipeline.sha256_file(str(tar_path))
    (partial / names["sha256"]).write_text(f"{digest}  {names['tar']}\n", encoding="utf-8")
    sign = gpg.gpg_sign_command(
        str(sign_home or keys.host_home), sign_key or keys.host_fpr, str(partial / names["sig"]), str(tar_path),
        sign_as or set_id, cfg.host,
    )  # fmt: skip
    subprocess.run(sign, check=True, capture_output=True)
    summary = {
        "id": set_id,
        "created_at": manifest["created_at"],
        "host": cfg.host,
        "tool_version": create.TOOL_VERSION,
        "size": tar_path.stat().st_size,
        "sha256": digest,
        "recipients": list(cfg.recipients),
        "signer": cfg.signing_key,
    }
    (partial / names["summary"]).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    for name in os.listdir(partial):
        os.chmod(partial / name, 0o600)
    os.rename(partial, backup_dir / set_id)
    return sets.resolve_set(str(backup_dir), set_id)


def copy_set(set_info: sets.SetInfo, root: Path) -> sets.SetInfo:
    """A private copy of a set, to damage."""
    backup_dir = root / "backups"
    backup_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(set_info.path, backup_dir / set_info.id)
    return sets.resolve_set(str(backup_dir), set_info.id)


def rewrite_sha256(set_info: sets.SetInfo) -> None:
    names = sets.set_files(set_info.id)
    Path(set_info.path, names["sha256"]).write_text(f"{pipeline.sha256_file(set_info.tar)}  {names['tar']}\n")


def verify_error(set_info, keys, decrypt_home=None, signers=None, checks=None) -> config.BackupError:
    with pytest.raises(config.BackupError) as caught:
        verify.verify_set(set_info, str(keys.host_home), signers or [keys.host_fpr], decrypt_home, checks)
    return caught.value


def fake_set(backup_dir: Path, set_id: str, summary: dict | None = None, bad: bool = False, skip=()) -> Path:
    """A set directory with the four files (no real content), for list_sets and resolve_set."""
    path = backup_dir / set_id
    path.mkdir(parents=True)
    for kind, name in sets.set_files(set_id).items():
        if kind in skip:
            continue
        text = (
            json.dumps(summary if summary is not None else {"size": 10, "sha256": "ab" * 32})
            if kind == "summary"
            else ""
        )
        (path / name).write_text(text)
    if bad:
        (path / "BAD").write_text("sha256: damaged\n")
    return path


@pytest.fixture(scope="session")
def good_set(gpg_keys, tmp_path_factory) -> sets.SetInfo:
    return build_set(gpg_keys, tmp_path_factory.mktemp("goodset"))


# --------------------------------------------------------------------------------------------- retention
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def info(set_id: str, good: bool = True) -> sets.SetInfo:
    return sets.SetInfo(id=set_id, path=f"/b/{set_id}", created_at="", size=1, sha256="", good=good)


def sid(when: datetime) -> str:
    return when.strftime(sets.ID_FORMAT)


@st.composite
def retention_cases(draw):
    offsets = draw(st.lists(st.integers(0, 120 * 86400), unique=True, max_size=40))
    set_list = [info(sid(BASE + timedelta(seconds=o)), draw(st.booleans())) for o in offsets]
    set_list = draw(st.permutations(sorted(set_list, key=lambda s: s.id)))
    now = BASE + timedelta(seconds=draw(st.integers(0, 150 * 86400)))
    return set_list, now, draw(st.integers(0, 60)), draw(st.integers(0, 12))


@settings(max_examples=300, deadline=None)
@given(retention_cases(), st.booleans())
def test_retention_plan_properties(case, last_run_ok):
    set_list, now, keep_days, min_keep = case
    keep, delete = sets.retention_plan(set_list, now, keep_days, min_keep, last_run_ok)
    ids = [s.id for s in set_list]
    # (e) keep and delete partition the input ids
    assert sorted(keep + delete) == sorted(ids)
    assert not set(keep) & set(delete)
    # (a) a failed last run deletes nothing
    if not last_run_ok:
        assert delete == []
    # (b) the newest min(min_keep, good) good set_list are never deleted
    good_newest_first = sorted((s.id for s in set_list if s.good), reverse=True)
    assert not set(good_newest_first[: min(min_keep, len(good_newest_first))]) & set(delete)
    # (c) nothing newer than keep_days is deleted
    cutoff = now - timedelta(days=keep_days)
    assert all(sets.parse_id(i) < cutoff for i in delete)
    # (d) set_list marked bad are never deleted
    assert not {s.id for s in set_list if not s.good} & set(delete)
    # and everything else (good, old, beyond the floor) is deleted: retention does free space
    if last_run_ok and min_keep >= 1:
        floor = set(good_newest_first[:min_keep])
        expected = {s.id for s in set_list if s.good and s.id not in floor and sets.parse_id(s.id) < cutoff}
        assert set(delete) == expected


def test_retention_30_daily_sets_keeps_a_week():
    now = datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
    set_list = [info(sid(datetime(2026, 11, 25, 2, 0, tzinfo=UTC) - timedelta(days=d))) for d in range(29, -1, -1)]
    keep, delete = sets.retention_plan(set_list, now, keep_days=7, min_keep=7, last_run_ok=True)
    assert keep == [s.id for s in set_list[-7:]]
    assert keep[0] == "20261119T020000Z"
    assert delete == [s.id for s in set_list[:-7]]
    assert len(delete) == 23


def test_retention_old_sets_below_min_keep_are_all_kept():
    now = datetime(2026, 11, 25, tzinfo=UTC)
    set_list = [info(sid(now - timedelta(days=60, hours=h))) for h in (3, 2, 1)]
    keep, delete = sets.retention_plan(set_list, now, keep_days=30, min_keep=7, last_run_ok=True)
    assert delete == []
    assert keep == [s.id for s in set_list]


def test_retention_keeps_bad_sets_and_counts_only_good_ones_for_the_floor():
    now = datetime(2026, 11, 25, tzinfo=UTC)
    set_list = [info(sid(now - timedelta(days=40 + d)), good=d % 2 == 0) for d in range(6)]  # 40..45 days old
    keep, delete = sets.retention_plan(set_list, now, keep_days=30, min_keep=2, last_run_ok=True)
    good_newest = [s.id for s in sorted(set_list, key=lambda s: s.id, reverse=True) if s.good]
    assert set(keep) == {s.id for s in set_list if not s.good} | set(good_newest[:2])
    assert delete == [good_newest[2]]


def test_retention_after_a_failed_run_deletes_nothing():
    now = datetime(2026, 11, 25, tzinfo=UTC)
    set_list = [info(sid(now - timedelta(days=100 + d))) for d in range(10)]
    assert sets.retention_plan(set_list, now, 7, 1, last_run_ok=False) == ([s.id for s in set_list], [])


# ------------------------------------------------------------------------------------------ small helpers
def test_compare_tables_equal_is_empty():
    assert pgstats.compare_tables(TABLES, json.loads(json.dumps(TABLES))) == []


def test_compare_tables_names_every_difference_in_table_order():
    expected = {
        "public.a": {"rows": 1, "checksum": "1"},
        "public.b": {"rows": 2, "checksum": "2"},
        "public.c": {"rows": 3, "checksum": "3"},
        "public.d": {"rows": 4, "checksum": "4"},
    }
    actual = {
        "public.b": {"rows": 5, "checksum": "2"},
        "public.c": {"rows": 3, "checksum": "x"},
        "public.d": {"rows": 4, "checksum": "4"},
        "public.e": {"rows": 0, "checksum": "0"},
    }
    assert pgstats.compare_tables(expected, actual) == [
        "table public.a is missing",
        "table public.b has 5 rows, the backup 2",
        "table public.c has the same row count but different content",
        "table public.e is not in the backup",
    ]


class _PgError(Exception):
    def __init__(self, pgcode: str):
        super().__init__(f"pgcode {pgcode}")
        self.pgcode = pgcode


class _ChecksumCursor:
    """Stands in for a psycopg2 cursor: two tables; hash_record_extended fails with the given SQLSTATE on
    public.events (a json column, in real life); every statement is kept."""

    def __init__(self, hash_error: str = pgstats.UNDEFINED_FUNCTION):
        self.hash_error = hash_error
        self.statements: list[str] = []
        self.result = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, query):
        text = repr(query)
        self.statements.append(text)
        if "pg_tables" in text:
            self.result = [("public", "events"), ("public", "trades")]
        elif "hash_record_extended" in text and "events" in text:
            raise _PgError(self.hash_error)
        elif "FROM" in text:
            self.result = [(7 if "events" in text else 3, "hash" if "hash_record" in text else "md5sum")]
        else:  # SAVEPOINT, RELEASE, ROLLBACK TO: no rows to fetch, as in psycopg2
            self.result = None

    def fetchall(self):
        return self.result

    def fetchone(self):
        if self.result is None:
            raise RuntimeError("no results to fetch")
        return self.result[0]


class _ChecksumConn:
    def __init__(self, cursor):
        self._cursor = cursor

    def cursor(self):
        return self._cursor


def test_table_stats_uses_the_fast_hash_and_falls_back_to_md5_per_table():
    cursor = _ChecksumCursor()
    stats = pgstats.table_stats(_ChecksumConn(cursor))
    assert stats == {
        "public.events": {"rows": 7, "checksum": "md5sum", "algorithm": "md5"},
        "public.trades": {"rows": 3, "checksum": "hash", "algorithm": "hash_record_extended"},
    }
    # The failed attempt is rolled back to its savepoint, so the snapshot stays usable for the next table.
    assert sum("ROLLBACK TO SAVEPOINT" in s for s in cursor.statements) == 1


def test_table_stats_computes_what_the_manifest_says_each_table_used():
    cursor = _ChecksumCursor()
    stats = pgstats.table_stats(_ChecksumConn(cursor), {"public.events": "md5", "public.trades": "md5"})
    assert {name: stat["algorithm"] for name, stat in stats.items()} == {"public.events": "md5", "public.trades": "md5"}
    assert not any("hash_record_extended" in s or "SAVEPOINT" in s for s in cursor.statements)


def test_table_stats_raises_on_a_damaged_table_instead_of_falling_back():
    with pytest.raises(_PgError):
        pgstats.table_stats(_ChecksumConn(_ChecksumCursor(hash_error="XX001")))


def test_checksum_algorithms_of_a_set_made_before_the_field_existed_are_md5():
    tables = {"public.a": {"rows": 1, "checksum": "1"}, "public.b": {"rows": 1, "checksum": "2", "algorithm": "x"}}
    assert pgstats.checksum_algorithms(tables) == {"public.a": "md5", "public.b": "x"}


def test_fingerprint_is_first_16_hex_of_sha256():
    assert config.fingerprint("") == "e3b0c44298fc1c14"
    assert config.fingerprint("helius-key") == hashlib.sha256(b"helius-key").hexdigest()[:16]
    assert len(config.fingerprint("x" * 1000)) == 16


@pytest.mark.parametrize(
    ("data", "encoded"),
    [
        (bytes(32), "1" * 32),
        (b"", ""),
        (b"\x00\x01", "12"),
        (bytes.fromhex("0000287fb4cd"), "11233QC4"),
        (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
        (
            b"The quick brown fox jumps over the lazy dog.",
            "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z",
        ),
    ],
)
def test_base58_known_vectors(data, encoded):
    assert wallet.b58encode(data) == encoded


def test_wallet_pubkey_is_base58_of_the_second_half(tmp_path):
    wallet_file = tmp_path / "id.json"
    wallet_file.write_text(json.dumps([7] * 32 + [0] * 32))
    assert wallet.wallet_pubkey(str(wallet_file)) == "1" * 32
    wallet_file.write_text(json.dumps([0] * 63 + [1]))
    assert wallet.wallet_pubkey(str(wallet_file)) == "1" * 31 + "2"


def test_read_env_comments_quotes_and_export(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "   # indented comment\n"
        "export EXPORTED=yes\n"
        'DOUBLE="with spaces # not a comment"\n'
        "SINGLE='single'\n"
        "MIXED=\"unbalanced'\n"
        " SPACED = around \n"
        "URL=postgres://u:p@h/db?x=1\n"
        "EMPTY=\n"
        "no equals sign here\n",
        encoding="utf-8",
    )
    assert config.read_env(str(env)) == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "DOUBLE": "with spaces # not a comment",
        "SINGLE": "single",
        "MIXED": "\"unbalanced'",
        "SPACED": "around",
        "URL": "postgres://u:p@h/db?x=1",
        "EMPTY": "",
    }


def test_config_from_dict_rejects_unknown_key_naming_it():
    with pytest.raises(config.BackupError) as caught:
        config.Config.from_dict({"backup_dir": "/b", "keep_dayz": 3})
    assert caught.value.check == "config"
    assert "keep_dayz" in caught.value.message
    assert "keep_days" in caught.value.message  # the known settings are listed


def test_config_from_dict_accepts_known_keys():
    cfg = config.Config.from_dict({"backup_dir": "/b", "recipients": ["ABC"], "keep_days": 3, "host": "h"})
    assert (cfg.backup_dir, cfg.recipients, cfg.keep_days, cfg.min_keep, cfg.host) == ("/b", ["ABC"], 3, 7, "h")
    assert cfg.env_file == "/home/tradingbot/mojo-trading-bot/.env"


# ------------------------------------------------------------------------------------ list, resolve, lock
def test_list_sets_only_complete_published_sets_oldest_first(tmp_path):
    fake_set(tmp_path, "20261125T020000Z", {"created_at": "c2", "size": 20, "sha256": "bb"})
    fake_set(tmp_path, "20261124T020000Z", {"created_at": "c1", "size": 10, "sha256": "aa"}, bad=True)
    fake_set(tmp_path, "20261126T020000Z", skip=("sig",))  # incomplete
    fake_set(tmp_path, ".partial-20261127T020000Z")  # a run in progress
    fake_set(tmp_path, "notes")  # foreign
    (tmp_path / "20261128T020000Z").write_text("a file, not a set")
    odd = fake_set(tmp_path, "20261123T020000Z")
    (odd / sets.set_files("20261123T020000Z")["summary"]).write_text("{not json")
    set_list = sets.list_sets(str(tmp_path))
    assert [s.id for s in set_list] == ["20261123T020000Z", "20261124T020000Z", "20261125T020000Z"]
    assert [s.good for s in set_list] == [True, False, True]
    assert (set_list[2].created_at, set_list[2].size, set_list[2].sha256) == ("c2", 20, "bb")
    assert set_list[2].path == str(tmp_path / "20261125T020000Z")
    assert set_list[2].tar == str(tmp_path / "20261125T020000Z" / "mojorust-backup-20261125T020000Z.tar")
    # an unreadable summary falls back to what the id says
    assert (set_list[0].created_at, set_list[0].size, set_list[0].sha256) == ("2026-11-23T02:00:00+00:00", 0, "")


def test_list_sets_of_a_missing_dir_is_empty(tmp_path):
    assert sets.list_sets(str(tmp_path / "nope")) == []


def test_resolve_latest_skips_bad_sets(tmp_path):
    fake_set(tmp_path, "20261124T020000Z")
    fake_set(tmp_path, "20261125T020000Z", bad=True)
    assert sets.resolve_set(str(tmp_path), "latest").id == "20261124T020000Z"
    assert sets.resolve_set(str(tmp_path), "20261125T020000Z").good is False  # asked for by id: given


def test_resolve_unknown_id_lists_what_exists(tmp_path):
    for day in (23, 24, 25):
        fake_set(tmp_path, f"202611{day}T020000Z")
    with pytest.raises(config.BackupError) as caught:
        sets.resolve_set(str(tmp_path), "20261122T020000Z")
    assert caught.value.check == "select"
    assert "'20261122T020000Z'" in caught.value.message
    for day in (23, 24, 25):
        assert f"202611{day}T020000Z" in caught.value.message


@pytest.mark.parametrize("make_dir", [True, False])
def test_resolve_latest_without_sets_says_to_run_backup(tmp_path, make_dir):
    backup_dir = tmp_path / "backups"
    if make_dir:
        backup_dir.mkdir()
        fake_set(backup_dir, "20261125T020000Z", bad=True)  # only a bad one
    with pytest.raises(config.BackupError) as caught:
        sets.resolve_set(str(backup_dir), "latest")
    assert caught.value.check == "select"
    assert "run playbooks/backup.yml" in caught.value.message


def test_lock_second_holder_is_refused_naming_the_first(tmp_path):
    with hostdir.BackupLock(str(tmp_path), "first-owner"):
        holder = (tmp_path / ".lock").read_text()
        assert holder.startswith(f"pid {os.getpid()} started ")
        with pytest.raises(config.BackupError) as caught, hostdir.BackupLock(str(tmp_path), "second-owner"):
            pass
    assert caught.value.check == "lock"
    assert f"pid {os.getpid()}" in caught.value.message
    assert "first-owner" in caught.value.message
    assert "wait for it to finish" in caught.value.message
    # released: the lock file is emptied and the next run gets the lock
    assert (tmp_path / ".lock").read_text() == ""
    with hostdir.BackupLock(str(tmp_path), "third-owner"):
        assert "third-owner" in (tmp_path / ".lock").read_text()


# --------------------------------------------------------------------------------------------- verify_set
def test_verify_good_set_runs_all_checks_in_order(good_set, gpg_keys):
    found: dict = {}
    checks = verify.verify_set(
        good_set, str(gpg_keys.host_home), [gpg_keys.host_fpr], str(gpg_keys.operator_home), None, found
    )
    assert [c["check"] for c in checks] == ["sha256", "archive", "signature", "decryption", "contents"]
    assert all(c["ok"] for c in checks)
    assert checks[0]["detail"] == good_set.sha256 == pipeline.sha256_file(good_set.tar)
    assert sorted(checks[1]["detail"]) == sorted(sets.MEMBERS)
    assert checks[2]["detail"] == f"signed by {gpg_keys.host_fpr} as set {good_set.id} of host unit-host"
    assert checks[3]["detail"] == f"manifest of {SET_ID} from unit-host"
    assert checks[4]["detail"] == f"database dump ({len(DB_BYTES)} bytes) and {len(FILES)} files match the manifest"
    manifest = found["manifest"]
    assert (manifest["id"], manifest["host"]) == (SET_ID, "unit-host")
    assert manifest["database"]["tables"] == TABLES
    assert {f["name"] for f in manifest["files"]} == set(FILES)


def test_verify_without_decrypt_home_stops_after_the_signature(good_set, gpg_keys):
    checks = verify.verify_set(good_set, str(gpg_keys.host_home), [gpg_keys.host_fpr])
    assert [c["check"] for c in checks] == ["sha256", "archive", "signature"]


def test_verify_accepts_the_signer_among_others_in_lower_case(good_set, gpg_keys):
    checks = verify.verify_set(good_set, str(gpg_keys.host_home), ["0" * 40, gpg_keys.host_fpr.lower()])
    assert checks[-1]["detail"].startswith(f"signed by {gpg_keys.host_fpr} ")


def test_verify_flipped_byte_fails_sha256(good_set, gpg_keys, tmp_path):
    damaged = copy_set(good_set, tmp_path)
    with open(damaged.tar, "r+b") as handle:
        handle.seek(2000)
        byte = handle.read(1)
        handle.seek(2000)
        handle.write(bytes([byte[0] ^ 0x01]))
    checks: list = []
    error = verify_error(damaged, gpg_keys, str(gpg_keys.operator_home), checks=checks)
    assert error.check == "sha256"
    assert "use another set" in error.message
    assert checks == []


def test_verify_missing_sha256_file_fails_sha256(good_set, gpg_keys, tmp_path):
    damaged = copy_set(good_set, tmp_path)
    Path(damaged.path, sets.set_files(damaged.id)["sha256"]).write_text("")
    error = verify_error(damaged, gpg_keys)
    assert error.check == "sha256"
    assert "cannot be trusted" in error.message


def _truncate_last_member(set_info: sets.SetInfo) -> None:
    with tarfile.open(set_info.tar) as tar:
        last = tar.getmembers()[-1]
    with open(set_info.tar, "r+b") as handle:
        handle.truncate(last.offset_data + last.size // 2)
    rewrite_sha256(set_info)


def test_verify_truncated_tar_fails_archive(good_set, gpg_keys, tmp_path):
    damaged = copy_set(good_set, tmp_path)
    _truncate_last_member(damaged)
    checks: list = []
    error = verify_error(damaged, gpg_keys, str(gpg_keys.operator_home), checks=checks)
    assert error.check == "archive"
    assert "truncated" in error.message or "not a readable archive" in error.message
    assert [c["check"] for c in checks] == ["sha256"]


def test_verify_tar_missing_a_member_fails_archive(good_set, gpg_keys, tmp_path):
    damaged = copy_set(good_set, tmp_path)
    with tarfile.open(good_set.tar) as source, tarfile.open(damaged.tar, "w", format=tarfile.PAX_FORMAT) as out:
        for member in source.getmembers()[:2]:
            out.addfile(member, source.extractfile(member))
    rewrite_sha256(damaged)
    error = verify_error(damaged, gpg_keys)
    assert error.check == "archive"
    assert "incomplete" in error.message


def test_verify_signature_by_a_stranger_is_refused(good_set, gpg_keys, tmp_path):
    damaged = copy_set(good_set, tmp_path)
    sig = Path(damaged.path, sets.set_files(damaged.id)["sig"])
    sig.unlink()
    gpg_keys.gpg(
        gpg_keys.stranger_home, "--local-user", gpg_keys.stranger_fpr, "--detach-sign", "-o", str(sig), damaged.tar
    )
    host_keyring = shutil.copytree(
        gpg_keys.host_home, tmp_path / "hostring", ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*")
    )
    # The stranger's key is not known: the signature cannot be checked.
    with pytest.raises(config.BackupError) as caught:
        verify.verify_set(damaged, str(host_keyring), [gpg_keys.host_fpr])
    assert caught.value.check == "signature"
    assert "not known here" in caught.value.message
    # Known but not trusted: a good signature by the wrong key is still refused.
    gpg_keys.gpg(host_keyring, "--import", data=gpg_keys.gpg(gpg_keys.stranger_home, "--export", "-a").stdout)
    checks: list = []
    with pytest.raises(config.BackupError) as caught:
        verify.verify_set(damaged, str(host_keyring), [gpg_keys.host_fpr], str(gpg_keys.operator_home), checks)
    error = caught.value
    assert error.check == "signature"
    assert "not a trusted signer" in error.message
    assert gpg_keys.stranger_fpr in error.message
    assert "do not restore it" in error.message
    assert [c["check"] for c in checks] == ["sha256", "archive"]
    subprocess.run(["gpgconf", "--homedir", str(host_keyring), "--kill", "all"], capture_output=True, check=False)


def test_verify_signature_of_other_data_is_refused(good_set, gpg_keys, tmp_path):
    damaged = copy_set(good_set, tmp_path)
    other = tmp_path / "other.bin"
    other.write_bytes(b"not the set")
    sig = Path(damaged.path, sets.set_files(damaged.id)["sig"])
    sig.unlink()
    gpg_keys.gpg(gpg_keys.host_home, "--local-user", gpg_keys.host_fpr, "--detach-sign", "-o", str(sig), str(other))
    error = verify_error(damaged, gpg_keys)
    assert error.check == "signature"
    assert "changed after it was signed" in error.message


def test_verify_with_the_wrong_secret_key_fails_decryption(good_set, gpg_keys):
    checks: list = []
    error = verify_error(good_set, gpg_keys, str(gpg_keys.other_home), checks=checks)
    assert error.check == "decryption"
    assert "cannot decrypt this set" in error.message
    assert "bring that key" in error.message
    assert [c["check"] for c in checks] == ["sha256", "archive", "signature"]


def _wrong_file_sha(manifest):
    manifest["files"][0]["sha256"] = "0" * 64


def _wrong_db_sha(manifest):
    manifest["database"]["sha256"] = "0" * 64


def _unlisted_file(manifest):
    del manifest["files"][-1]


def _missing_file(manifest):
    manifest["files"].append({"name": "config/extra.toml", "size": 1, "mode": "0644", "sha256": "0" * 64})


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (_wrong_file_sha, "config/trading.toml does not match the manifest"),
        (_wrong_db_sha, "the database dump does not match the manifest"),
        (_unlisted_file, "the set holds files the manifest does not list: ['data/portfolio_state.json']"),
        (_missing_file, "config/extra.toml is listed in the manifest but missing from the set"),
    ],
)
def test_verify_contents_against_the_manifest(gpg_keys, tmp_path, edit, phrase):
    damaged = build_set(gpg_keys, tmp_path, edit_manifest=edit)
    checks: list = []
    error = verify_error(damaged, gpg_keys, str(gpg_keys.operator_home), checks=checks)
    assert error.check == "contents"
    assert phrase in error.message
    assert [c["check"] for c in checks] == ["sha256", "archive", "signature", "decryption"]


def test_damaged_set_errors_tell_the_operator_what_to_do(good_set, gpg_keys, tmp_path):
    truncated = copy_set(good_set, tmp_path / "truncated")
    _truncate_last_member(truncated)
    wrong = build_set(gpg_keys, tmp_path / "wrong", edit_manifest=_wrong_file_sha)
    messages = [
        verify_error(truncated, gpg_keys).message,
        verify_error(wrong, gpg_keys, str(gpg_keys.operator_home)).message,
    ]
    assert all("another set" in m for m in messages), messages


# ------------------------------------------------------------------------------------------ restore_files
def test_restore_files_writes_content_and_mode(good_set, gpg_keys, tmp_path):
    dest = tmp_path / "restored"
    written = restore.restore_files(good_set, str(gpg_keys.operator_home), str(dest))
    assert [w["name"] for w in written] == list(FILES)
    for name, (data, mode) in FILES.items():
        path = dest / name
        assert path.read_bytes() == data
        assert stat.S_IMODE(path.stat().st_mode) == mode, name
    assert {w["name"]: w["sha256"] for w in written} == {
        n: hashlib.sha256(d).hexdigest() for n, (d, _) in FILES.items()
    }
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert json.loads((dest / "wallet/id.json").read_bytes()) == WALLET


def test_restore_files_applies_the_manifest_mode_over_an_existing_file(good_set, gpg_keys, tmp_path):
    dest = tmp_path / "restored"
    dest.mkdir()
    (dest / ".env").write_text("OLD=1\n")
    (dest / ".env").chmod(0o644)
    restore.restore_files(good_set, str(gpg_keys.operator_home), str(dest))
    assert (dest / ".env").read_bytes() == FILES[".env"][0]
    assert stat.S_IMODE((dest / ".env").stat().st_mode) == 0o600  # the secrets file must not stay world-readable


def test_restore_files_with_the_wrong_key_fails_decryption(good_set, gpg_keys, tmp_path):
    with pytest.raises(config.BackupError) as caught:
        restore.restore_files(good_set, str(gpg_keys.other_home), str(tmp_path / "dest"))
    assert caught.value.check == "decryption"
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("unsafe", ["../evil.txt", "config/../../evil.txt", "/tmp/mojorust-unit-evil.txt"])
def test_restore_files_refuses_unsafe_member_names(gpg_keys, tmp_path, unsafe):
    entries = [("config/ok.toml", b"ok = true\n", 0o644), (unsafe, b"evil\n", 0o644)]
    unsafe_set = build_set(gpg_keys, tmp_path / "set", raw_files=entries)
    dest = tmp_path / "work" / "dest"
    with pytest.raises(config.BackupError) as caught:
        restore.restore_files(unsafe_set, str(gpg_keys.operator_home), str(dest))
    assert caught.value.check == "contents"
    assert f"refusing the unsafe path {unsafe!r}" in caught.value.message
    assert not (tmp_path / "work" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/mojorust-unit-evil.txt").exists()


def test_restore_files_refuses_a_file_that_does_not_match(gpg_keys, tmp_path):
    wrong = build_set(gpg_keys, tmp_path / "set", edit_manifest=_wrong_file_sha)
    dest = tmp_path / "dest"
    with pytest.raises(config.BackupError) as caught:
        restore.restore_files(wrong, str(gpg_keys.operator_home), str(dest))
    assert caught.value.check == "contents"
    assert "config/trading.toml is missing or does not match the manifest" in caught.value.message
    assert not (dest / "config" / "trading.toml").exists()


# --------------------------------------------------------------------------------------------- create_set
@pytest.mark.parametrize(
    ("override", "phrase"),
    [({"recipients": []}, "no recipients"), ({"signing_key": ""}, "no signing key")],
)
def test_create_set_requires_recipients_and_signing_key(gpg_keys, tmp_path, override, phrase):
    cfg = make_cfg(gpg_keys, tmp_path, **override)
    with pytest.raises(config.BackupError) as caught:
        create.create_set(cfg)
    assert caught.value.check == "config"
    assert phrase in caught.value.message
    assert not os.path.exists(cfg.backup_dir)


def _bot_home(cfg: config.Config) -> None:
    for name, (data, mode) in FILES.items():
        path = Path(cfg.bot_home, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)


def test_create_set_while_locked_does_nothing(gpg_keys, tmp_path):
    cfg = make_cfg(gpg_keys, tmp_path, db_port=1)
    _bot_home(cfg)
    os.makedirs(cfg.backup_dir)
    with hostdir.BackupLock(cfg.backup_dir, "the-timer"), pytest.raises(config.BackupError) as caught:
        create.create_set(cfg, owner="ansible")
    assert caught.value.check == "lock"
    assert f"pid {os.getpid()}" in caught.value.message
    assert "the-timer" in caught.value.message
    assert "this run did nothing" in caught.value.message
    leftovers = os.listdir(cfg.backup_dir)
    assert not [n for n in leftovers if n.startswith(".partial-")]
    assert status.STATUS_FILE not in leftovers


def _unreachable_db_run(gpg_keys, good_set, tmp_path):
    cfg = make_cfg(gpg_keys, tmp_path, db_host="127.0.0.1", db_port=1)
    _bot_home(cfg)
    backup_dir = Path(cfg.backup_dir)
    backup_dir.mkdir()
    shutil.copytree(good_set.path, backup_dir / good_set.id)
    (backup_dir / sets.LAST_GOOD).write_text(f"{good_set.id}\n")
    (backup_dir / ".partial-20200101T000000Z").mkdir()  # left by an interrupted run
    now = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    with pytest.raises(Exception) as caught:  # which one is the subject of the next test
        create.create_set(cfg, owner="unit", now=now)
    return cfg, backup_dir, now, caught.value


def test_create_set_with_the_database_unreachable_fails_cleanly(gpg_keys, good_set, tmp_path):
    _cfg, backup_dir, now, error = _unreachable_db_run(gpg_keys, good_set, tmp_path)
    assert "connect" in str(error).lower()
    assert not [n for n in os.listdir(backup_dir) if n.startswith(".partial-")]
    assert (backup_dir / sets.LAST_GOOD).read_text() == f"{good_set.id}\n"
    assert [s.id for s in sets.list_sets(str(backup_dir))] == [good_set.id]
    assert pipeline.sha256_file(str(backup_dir / good_set.id / Path(good_set.tar).name)) == good_set.sha256
    recorded = json.loads((backup_dir / status.STATUS_FILE).read_text())
    assert recorded["last_result"] == "failed"
    assert recorded["last_run_at"] == now.isoformat()
    assert "127.0.0.1" in recorded["last_error"] or "connect" in recorded["last_error"].lower()
    assert "last_success_id" not in recorded


def test_create_set_with_the_database_unreachable_raises_backup_error(gpg_keys, good_set, tmp_path):
    _cfg, _backup_dir, _now, error = _unreachable_db_run(gpg_keys, good_set, tmp_path)
    assert isinstance(error, config.BackupError)
    assert error.check == "database"


def test_cli_reports_an_unreachable_database_as_a_failure(gpg_keys, tmp_path, capsys):
    cfg = make_cfg(gpg_keys, tmp_path, db_port=1)
    _bot_home(cfg)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(vars(cfg)))
    assert cli.cli_main(["create", "--config", str(config_path)]) == 1
    assert "mojorust-backup: " in capsys.readouterr().out


# ------------------------------------------------------------------------------------ metrics and staleness
def test_status_changes_rewrite_the_metrics_file(tmp_path):
    cfg = config.Config(backup_dir=str(tmp_path), metrics_file=str(tmp_path / "mojorust_backup.prom"))
    status.write_status(
        cfg,
        {
            "last_result": "ok",
            "last_success_at": "2026-11-25T02:00:00+00:00",
            "last_size_bytes": 1234,
            "last_duration_seconds": 2.5,
        },
    )
    text = (tmp_path / "mojorust_backup.prom").read_text()
    assert "mojorust_backup_last_success_timestamp_seconds 1795572000.0" in text
    assert "mojorust_backup_last_run_ok 1" in text and "mojorust_backup_last_size_bytes 1234" in text
    assert "offsite" not in text, "nothing is made up for what never ran"
    status.write_status(cfg, {"offsite_last_result": "failed", "verify_last_result": "signature: bad"})
    text = (tmp_path / "mojorust_backup.prom").read_text()
    assert "mojorust_backup_offsite_last_run_ok 0" in text and "mojorust_backup_verify_last_ok 0" in text
    assert "mojorust_backup_last_run_ok 1" in text, "earlier values stay"


def test_stale_when_the_newest_good_set_or_offsite_copy_is_older_than_the_limit(tmp_path):
    cfg = config.Config(backup_dir=str(tmp_path), stale_hours=26)
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert status.stale_problems(cfg, now, offsite=False) == [f"no good backup set recorded in {tmp_path}"]
    status.write_status(
        cfg, {"last_success_at": "2026-11-26T02:00:00+00:00", "offsite_last_success_at": "2026-11-24T02:30:00+00:00"}
    )
    assert status.stale_problems(cfg, now, offsite=False) == []
    problems = status.stale_problems(cfg, now, offsite=True)
    assert problems == ["the newest off-site copy is 57.5 h old (limit 26 h), from 2026-11-24T02:30:00+00:00"]


def test_check_stale_alerts_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"backup_dir": str(tmp_path), "host": "prod"}))
    sent = []
    monkeypatch.setattr(cli, "send_alert", lambda cfg, text: sent.append(text) or "")
    argv = ["check-stale", "--config", str(config_path), "--offsite-config", str(tmp_path / "none.json")]
    assert cli.cli_main(argv) == 1
    assert sent == [f"STALE BACKUPS on prod: no good backup set recorded in {tmp_path}"]
    status.write_status(config.Config(backup_dir=str(tmp_path)), {"last_success_at": datetime.now(UTC).isoformat()})
    assert cli.cli_main(argv) == 0
    assert "backups are fresh" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------- restore
FAKE_PG_RESTORE = """#!/bin/sh
# pg_restore stand-in: keeps what it was given (stdin, or the dump file of --jobs), fails when told to.
for arg; do case "$arg" in --jobs=*) jobs="$arg";; esac; last="$arg"; done
if [ -n "$jobs" ]; then cp "$last" "$FAKE_PG_OUT"; else cat > "$FAKE_PG_OUT"; fi
echo "$jobs" > "$FAKE_PG_OUT.jobs"
if [ -n "$FAKE_PG_FAIL" ]; then echo "pg_restore: error: $FAKE_PG_FAIL" >&2; exit 1; fi
"""


@pytest.fixture
def fake_pg_restore(tmp_path, monkeypatch):
    """pg_restore on PATH is the stand-in; the restored database 'has' the manifest's tables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pg_restore"
    script.write_text(FAKE_PG_RESTORE)
    script.chmod(0o755)
    out = tmp_path / "restored.dump"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PG_OUT", str(out))

    class FakeConn:
        def set_session(self, **kwargs):
            pass

        def close(self):
            pass

    seen = {}

    def fake_stats(conn, algorithms=None):
        seen["algorithms"] = algorithms
        return json.loads(json.dumps(TABLES))

    monkeypatch.setattr(restore, "db_connect", lambda *args, **kwargs: FakeConn())
    monkeypatch.setattr(restore, "table_stats", fake_stats)
    return out, seen


@pytest.mark.parametrize("jobs", [1, 2])
def test_restore_feeds_pg_restore_the_dump_read_once_and_checked(gpg_keys, tmp_path, fake_pg_restore, jobs):
    out, seen = fake_pg_restore
    the_set = build_set(gpg_keys, tmp_path / "set")
    cfg = make_cfg(gpg_keys, tmp_path / "set")
    result = restore.restore_database(the_set, str(gpg_keys.operator_home), cfg, "pw", "trading_db_restore_x", jobs)
    assert out.read_bytes() == DB_BYTES
    assert Path(f"{out}.jobs").read_text().strip() == ("" if jobs == 1 else f"--jobs={jobs}")
    assert result["tables"] == TABLES
    # Each table is checked with the algorithm the set recorded (md5 for this set, made without the field).
    assert seen["algorithms"] == {name: "md5" for name in TABLES}
    assert [p for p in os.listdir(cfg.backup_dir) if p.startswith(".restore-")] == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_restore_of_a_dump_that_differs_from_its_manifest_fails(gpg_keys, tmp_path, fake_pg_restore, jobs):
    wrong = build_set(gpg_keys, tmp_path / "set", edit_manifest=_wrong_db_sha)
    cfg = make_cfg(gpg_keys, tmp_path / "set")
    with pytest.raises(config.BackupError) as caught:
        restore.restore_database(wrong, str(gpg_keys.operator_home), cfg, "pw", "trading_db_restore_x", jobs)
    assert caught.value.check == "restore"
    assert "does not match its manifest; use another set" in caught.value.message
    assert [p for p in os.listdir(cfg.backup_dir) if p.startswith(".restore-")] == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_restore_says_why_pg_restore_failed(gpg_keys, tmp_path, fake_pg_restore, monkeypatch, jobs):
    monkeypatch.setenv("FAKE_PG_FAIL", "could not execute query: disk full")
    the_set = build_set(gpg_keys, tmp_path / "set")
    cfg = make_cfg(gpg_keys, tmp_path / "set")
    with pytest.raises(config.BackupError) as caught:
        restore.restore_database(the_set, str(gpg_keys.operator_home), cfg, "pw", "trading_db_restore_x", jobs)
    assert caught.value.message == "pg_restore failed: pg_restore: error: could not execute query: disk full"


def test_the_archive_digest_taken_while_writing_is_the_file_sha256(tmp_path):
    for name, size in (("a", 0), ("b", 5000), ("c", 3 * pipeline.CHUNK + 17)):
        (tmp_path / name).write_bytes(os.urandom(size))
    tar_path = tmp_path / "set.tar"
    with open(tar_path, "wb") as raw:
        hashing = pipeline.HashingWriter(raw)
        with tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT, copybufsize=pipeline.CHUNK) as tar:
            for name in ("a", "b", "c"):
                tar.add(tmp_path / name, arcname=name)
    assert hashing.digest.hexdigest() == pipeline.sha256_file(str(tar_path))
    with tarfile.open(tar_path) as tar:
        assert tar.getnames() == ["a", "b", "c"]


# ---------------------------------------------------------------------------- a set's id and signer (issue 15)
def rename_set(set_info: sets.SetInfo, new_id: str) -> sets.SetInfo:
    """What an attacker with write access to the backup directory does to make an old set look new (or the
    reverse): the directory and its files renamed, every byte unchanged, .sha256 still matching."""
    old_names, new_names = sets.set_files(set_info.id), sets.set_files(new_id)
    path = Path(set_info.path)
    for kind, name in old_names.items():
        (path / name).rename(path / new_names[kind])
    (path / new_names["sha256"]).write_text(f"{set_info.sha256}  {new_names['tar']}\n")
    path.rename(path.parent / new_id)
    return sets.resolve_set(str(path.parent), new_id)


def test_a_renamed_set_fails_its_signature(good_set, gpg_keys, tmp_path):
    renamed = rename_set(copy_set(good_set, tmp_path), "20261130T020000Z")
    error = verify_error(renamed, gpg_keys)
    assert error.check == "signature"
    assert f"the set named 20261130T020000Z was signed as {good_set.id}: it was renamed" in error.message


def test_a_set_signed_under_another_id_fails_its_signature(gpg_keys, tmp_path):
    other = build_set(gpg_keys, tmp_path, sign_as="20261101T020000Z")
    assert "was signed as 20261101T020000Z" in verify_error(other, gpg_keys).message


def test_a_signature_that_binds_no_id_is_refused(gpg_keys, tmp_path):
    """A plain detached signature of the archive (another tool, or the key used by hand): its name is unproven."""
    the_set = build_set(gpg_keys, tmp_path)
    sig = Path(the_set.path, sets.set_files(the_set.id)["sig"])
    sig.unlink()
    gpg_keys.gpg(gpg_keys.host_home, "--local-user", gpg_keys.host_fpr, "--detach-sign", "--output", str(sig),
                 the_set.tar)  # fmt: skip
    error = verify_error(the_set, gpg_keys)
    assert error.check == "signature"
    assert "does not bind a set id" in error.message


def test_a_set_of_another_host_is_refused_where_the_host_is_known(good_set, gpg_keys):
    assert verify.verify_set(good_set, str(gpg_keys.host_home), [gpg_keys.host_fpr], expected_host="unit-host")
    with pytest.raises(config.BackupError) as caught:
        verify.verify_set(good_set, str(gpg_keys.host_home), [gpg_keys.host_fpr], expected_host="prod")
    assert "signed by host 'unit-host', not 'prod'" in caught.value.message


def test_a_set_assembled_under_another_manifest_fails_decryption(gpg_keys, tmp_path):
    """Signed as its name, but carrying another set's manifest: caught once the manifest is read."""
    mixed = build_set(gpg_keys, tmp_path, edit_manifest=lambda m: m.update(id="20261101T020000Z"))
    error = verify_error(mixed, gpg_keys, decrypt_home=str(gpg_keys.operator_home))
    assert error.check == "decryption"
    assert "holds the manifest of set 20261101T020000Z" in error.message


def test_a_set_dated_in_the_future_is_never_latest_and_never_verifies(gpg_keys, tmp_path):
    now = datetime.now(UTC)
    past, future = sid(now - timedelta(days=1)), sid(now + timedelta(days=2))
    fake_set(tmp_path, past)
    fake_set(tmp_path, future)
    listed = {s.id: s.good for s in sets.list_sets(str(tmp_path))}
    assert listed == {past: True, future: False}
    assert sets.resolve_set(str(tmp_path), "latest").id == past
    real = build_set(gpg_keys, tmp_path / "real", set_id=future)
    error = verify_error(real, gpg_keys)
    assert error.check == "select"
    assert "dated in the future" in error.message


def test_a_few_minutes_of_clock_skew_is_not_the_future():
    now = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert sets.future_id_problem("20261205T100400Z", now) == ""
    assert "in the future" in sets.future_id_problem("20261205T100600Z", now)


@pytest.fixture(scope="session")
def doomed_signer(tmp_path_factory):
    """A host keyring whose signing key signs one set, and then is revoked (as breach.yml rotates it)."""
    home = tmp_path_factory.mktemp("doomed")
    home.chmod(0o700)
    uid = "mojorust backup signing key (doomed)"
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quick-generate-key", uid,
                    "ed25519", "sign", "never"], check=True, capture_output=True)  # fmt: skip
    listing = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys", uid], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    return home, fpr


def test_a_set_signed_by_a_revoked_key_is_refused(gpg_keys, tmp_path, doomed_signer):
    home, fpr = doomed_signer
    the_set = build_set(gpg_keys, tmp_path, sign_home=home, sign_key=fpr)
    verify.verify_set(the_set, str(home), [fpr])  # good while the key is good
    revocation = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text().replace(":-----BEGIN", "-----BEGIN")
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import"], input=revocation.encode(), check=True,
                   capture_output=True)  # fmt: skip
    with pytest.raises(config.BackupError) as caught:
        verify.verify_set(the_set, str(home), [fpr])
    assert caught.value.check == "signature"
    assert "revoked" in caught.value.message


def test_a_set_signed_by_an_expired_key_is_refused(gpg_keys, tmp_path):
    home = tmp_path / "expired"
    home.mkdir(mode=0o700)
    uid = "mojorust backup signing key (expired)"
    then = ["--faked-system-time", "20250101T000000"]
    subprocess.run(["gpg", "--homedir", str(home), "--batch", *then, "--passphrase", "", "--quick-generate-key", uid,
                    "ed25519", "sign", "1d"], check=True, capture_output=True)  # fmt: skip
    listing = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys", uid], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    the_set = build_set(gpg_keys, tmp_path / "set")
    sig = Path(the_set.path, sets.set_files(the_set.id)["sig"])
    sig.unlink()
    sign = gpg.gpg_sign_command(str(home), fpr, str(sig), the_set.tar, the_set.id, "unit-host")
    # signed while the key was valid (gpg refuses an expired key), checked now that it has expired
    subprocess.run([sign[0], "--faked-system-time", "20250101T120000", *sign[1:]], check=True, capture_output=True)
    with pytest.raises(config.BackupError) as caught:
        verify.verify_set(the_set, str(home), [fpr])
    assert "expired" in caught.value.message


def test_restore_reads_exactly_what_was_verified(gpg_keys, tmp_path):
    """Verify, then the file at the path is replaced by another genuine set's archive: the restore still reads the
    verified one (before, verify and restore opened the path separately)."""
    first = build_set(gpg_keys, tmp_path / "a")
    other_files = {**FILES, "config/trading.toml": (b'[bot]\nname = "attacker"\n', 0o644)}
    other = build_set(gpg_keys, tmp_path / "b", files=other_files)
    with verify.OpenedSet(first) as opened:
        verify.verify_set(opened, str(gpg_keys.host_home), [gpg_keys.host_fpr], str(gpg_keys.operator_home))
        os.replace(other.tar, first.tar)  # the swap between the check and the use
        written = restore.restore_files(opened, str(gpg_keys.operator_home), str(tmp_path / "restored"))
    assert (tmp_path / "restored" / "config" / "trading.toml").read_bytes() == FILES["config/trading.toml"][0]
    assert {w["name"] for w in written} == set(FILES)


# ------------------------------------------------------------------------------------ create with a fake database
SYSTEM_ID = "7443816265416052391"


@pytest.fixture
def fake_database(monkeypatch):
    """create_set against a stand-in PostgreSQL: a snapshot, the tables, and a dump of DB_BYTES."""

    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self, query, *args):
            pass

        def fetchone(self):
            return ("00000003-1", "15.10", SYSTEM_ID, "0/3000060")

    class Conn:
        def set_session(self, **kwargs):
            pass

        def cursor(self):
            return Cursor()

        def close(self):
            pass

    def dump(cfg, password, snapshot, out_path, result, home):
        compressed = subprocess.run(["zstd", "-q", "-c"], input=DB_BYTES, capture_output=True, check=True).stdout
        gpg.encrypt_bytes(home, cfg.recipients, compressed, out_path)
        result.update(size=len(DB_BYTES), sha256=hashlib.sha256(DB_BYTES).hexdigest())

    monkeypatch.setattr(create, "db_connect", lambda *args, **kwargs: Conn())
    monkeypatch.setattr(create, "table_stats", lambda conn, algorithms=None: json.loads(json.dumps(TABLES)))
    monkeypatch.setattr(create, "_dump_database", dump)


def test_create_set_signs_its_id_and_host_and_the_set_verifies(gpg_keys, tmp_path, fake_database):
    cfg = make_cfg(gpg_keys, tmp_path)
    _bot_home(cfg)
    summary = create.create_set(cfg, owner="unit")
    the_set = sets.resolve_set(cfg.backup_dir, summary["id"])
    checks = verify.verify_set(the_set, str(gpg_keys.host_home), [gpg_keys.host_fpr], str(gpg_keys.operator_home),
                           expected_host="unit-host")  # fmt: skip
    assert checks[2]["detail"] == f"signed by {gpg_keys.host_fpr} as set {summary['id']} of host unit-host"


def test_create_set_names_the_cluster_whose_wal_archive_goes_with_it(gpg_keys, tmp_path, fake_database):
    """The manifest records the PostgreSQL system identifier: a new host recovers exactly that cluster's WAL archive
    after a failover (failover_fresh.yml), never another cluster's that happened to write later."""
    cfg = make_cfg(gpg_keys, tmp_path)
    _bot_home(cfg)
    summary = create.create_set(cfg, owner="unit")
    with verify.OpenedSet(sets.resolve_set(cfg.backup_dir, summary["id"])) as opened:
        manifest = verify.decrypt_manifest(opened, str(gpg_keys.operator_home))
    assert manifest["database"]["system_id"] == SYSTEM_ID
    assert manifest["database"]["wal_lsn"] == "0/3000060"


def test_create_set_is_on_disk_before_it_is_published(gpg_keys, tmp_path, fake_database, monkeypatch):
    """Every file of the set and its directory are fsynced before the rename that publishes it."""
    cfg = make_cfg(gpg_keys, tmp_path)
    _bot_home(cfg)
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", str(src)))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    summary = create.create_set(cfg, owner="unit")
    partial = os.path.join(cfg.backup_dir, f".partial-{summary['id']}")
    published = events.index(("rename", partial))
    synced = {path for kind, path in events[:published] if kind == "fsync"}
    expected = {os.path.join(partial, name) for name in sets.set_files(summary["id"]).values()} | {partial}
    assert expected <= synced


def test_a_full_disk_still_sends_the_alert(gpg_keys, tmp_path, fake_database, monkeypatch):
    """The status file was written before the alert: with the disk full, writing it raised and no alert went out."""
    cfg = make_cfg(gpg_keys, tmp_path)
    _bot_home(cfg)
    sent = []
    monkeypatch.setattr(create, "send_alert", lambda cfg, text: sent.append(text) or "")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(create, "_pack_files", full)
    monkeypatch.setattr(status, "atomic_write", full)
    with pytest.raises(config.BackupError) as caught:
        create.create_set(cfg, owner="unit")
    assert caught.value.check == "disk"
    assert len(sent) == 1 and sent[0].startswith("BACKUP FAILED on unit-host")
    assert "status file not written" in caught.value.message


def test_the_config_commit_is_read_from_the_repository_files(tmp_path):
    """Without git: the backup user reads the bot's repository through a capability git's own checks ignore."""
    repo = tmp_path / "config"
    repo.mkdir()

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x", *args],
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip

    git("init", "-q", "-b", "main")
    (repo / "trading.toml").write_text("a = 1\n")
    git("add", ".")
    git("commit", "-qm", "one")
    assert create.git_head_commit(str(repo / ".git")) == git("rev-parse", "HEAD")
    git("pack-refs", "--all")
    assert create.git_head_commit(str(repo / ".git")) == git("rev-parse", "HEAD")
    git("checkout", "-q", "--detach")
    assert create.git_head_commit(str(repo / ".git")) == git("rev-parse", "HEAD")
    (repo / ".git" / "HEAD").write_text("ref: ../../../etc/passwd\n")
    assert create.git_head_commit(str(repo / ".git")) is None
    assert create.git_head_commit(str(tmp_path / "missing" / ".git")) is None


def test_the_newest_good_set_before_a_moment_skips_bad_and_future_sets(tmp_path):
    """A breach's clean set: the newest good one made before the breach (the regex listing chose BAD sets too)."""
    now = datetime.now(UTC)
    old, bad, after = (sid(now - timedelta(days=d)) for d in (3, 2, 1))
    fake_set(tmp_path, old)
    fake_set(tmp_path, bad, bad=True)
    fake_set(tmp_path, after)
    fake_set(tmp_path, sid(now + timedelta(days=5)))  # planted in the future
    moment = sid(now - timedelta(days=1, hours=12))
    assert sets.resolve_set(str(tmp_path), "latest", before=moment).id == old
    assert sets.resolve_set(str(tmp_path), "latest").id == after
    with pytest.raises(config.BackupError, match=f"no good set in .* was made before {sid(now - timedelta(days=4))}"):
        sets.resolve_set(str(tmp_path), "latest", before=sid(now - timedelta(days=4)))
    with pytest.raises(config.BackupError, match="before must be a set id"):
        sets.resolve_set(str(tmp_path), "latest", before="2026-11-26")


# ------------------------------------------------------------------- what the backup user reads for the bot
@pytest.mark.parametrize("linked", ["file", "directory"])
def test_a_set_never_reads_through_a_link_the_bot_planted(gpg_keys, tmp_path, linked):
    """The backup user can read what the bot's uid cannot (CAP_DAC_READ_SEARCH): a link in config/ to a root-only
    file, or a linked directory on the way, stops the set with what to do, and the outside file is read by no one."""
    cfg = make_cfg(gpg_keys, tmp_path)
    _bot_home(cfg)
    outside = tmp_path / "root-only"
    outside.mkdir()
    (outside / "pgbackrest.conf").write_text("repo1-cipher-pass=stolen\n")
    config_path = Path(cfg.bot_home, "config")
    if linked == "file":
        (config_path / "extra.toml").symlink_to(outside / "pgbackrest.conf")
        phrase = "is a symbolic link"
    else:
        (config_path / "extra").symlink_to(outside)
        phrase = "symbolic link"
    members = create._files_to_pack(cfg, config.now_utc())
    linked = [path for _name, path in members if path.startswith(str(config_path / "extra"))]
    assert linked, "the link is not skipped silently"
    out = tmp_path / "files.tar.zst.gpg"
    with pytest.raises(config.BackupError) as caught:
        create._pack_files(members, str(out), cfg, str(gpg_keys.host_home))
    assert caught.value.check == "files"
    assert phrase in caught.value.message
    assert "find out who made it" in caught.value.message or "Replace the link" in caught.value.message


def test_a_file_reached_through_a_linked_parent_is_refused(gpg_keys, tmp_path):
    """O_NOFOLLOW guards the last component only; the descriptor's own path catches a link higher up (a directory
    swapped for a link after the walk)."""
    cfg = make_cfg(gpg_keys, tmp_path)
    real = tmp_path / "real"
    real.mkdir()
    (real / "trading.toml").write_text("x = 1\n")
    (tmp_path / "swapped").symlink_to(real)
    with pytest.raises(config.BackupError) as caught:
        create._pack_files([("config/trading.toml", str(tmp_path / "swapped" / "trading.toml"))], str(tmp_path / "o"),
                       cfg, str(gpg_keys.host_home))  # fmt: skip
    assert f"it is {real / 'trading.toml'}" in caught.value.message


def test_a_run_within_the_second_of_the_last_set_waits_for_the_next_second(tmp_path):
    """A set's id is its UTC second: a run that starts within the second a set was made in takes the next one,
    instead of failing (two runs in one second are common once Ansible reaches a host quickly)."""
    taken = datetime(2026, 12, 7, 0, 59, 0, 400_000, tzinfo=UTC)
    (tmp_path / taken.strftime(create.ID_FORMAT)).mkdir()
    slept: list[float] = []
    later = taken.replace(second=1, microsecond=20_000)
    assert create.free_second(str(tmp_path), taken, clock=lambda: later, sleep=slept.append) == later
    assert slept and 0.6 <= slept[0] <= 0.62
    # a free second is taken as it is, without waiting
    assert create.free_second(str(tmp_path), later, clock=None, sleep=None) == later
