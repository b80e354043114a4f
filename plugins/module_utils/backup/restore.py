"""Restoring a verified set: its files into a directory, its database into an empty database beside the live one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time

from .config import BackupError, Config
from .pgstats import checksum_algorithms, compare_tables, db_connect, pg_client_args, table_stats
from .pipeline import pump
from .sets import MEMBERS, SetInfo
from .verify import OpenedSet, decrypt_manifest, decrypt_member, open_set, read_files


def restore_files(source: SetInfo | OpenedSet, gnupg_home: str, dest_dir: str) -> list[dict]:
    """Decrypt the files member into dest_dir (created 0700), each checked against the manifest. Pass the OpenedSet
    that verify_set checked."""
    opened, owned = open_set(source)
    try:
        manifest = decrypt_manifest(opened, gnupg_home)
        files = read_files(opened, gnupg_home)
    finally:
        if owned:
            opened.close()
    os.makedirs(dest_dir, mode=0o700, exist_ok=True)
    written = []
    for record in manifest["files"]:
        name = record["name"]
        data = files.get(name)
        if data is None or hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise BackupError("contents", f"{name} is missing or does not match the manifest")
        if os.path.isabs(name) or ".." in name.split("/"):
            raise BackupError("contents", f"refusing the unsafe path {name!r} in the set")
        path = os.path.join(dest_dir, name)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, int(record["mode"], 8))  # also over an existing file, and whatever the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        written.append({"name": name, "size": record["size"], "sha256": record["sha256"]})
    return written


def restore_database(
    source: SetInfo | OpenedSet, gnupg_home: str, cfg: Config, password: str, target_db: str, jobs: int = 1
) -> dict:
    """pg_restore the set's dump into target_db (which must exist and be empty), then compare every table with
    the manifest. jobs 1 streams (no plaintext on disk); more decompress to a private scratch file first. The dump
    is read once: its size and sha256 are checked against the manifest on the way (so a restore needs no separate
    "contents" pass over the dump), and a mismatch fails the restore before any caller swaps it in. Pass the
    OpenedSet that verify_set checked."""
    opened, owned = open_set(source)
    try:
        return _restore_database(opened, gnupg_home, cfg, password, target_db, jobs)
    finally:
        if owned:
            opened.close()


def _restore_database(opened: OpenedSet, gnupg_home: str, cfg: Config, password: str, target_db: str, jobs: int):
    manifest = decrypt_manifest(opened, gnupg_home)
    expected_dump = (manifest["database"]["size"], manifest["database"]["sha256"])
    started = time.monotonic()
    env = dict(os.environ, PGPASSWORD=password)
    restore = ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", *pg_client_args(cfg), "--dbname", target_db]
    digest = hashlib.sha256()
    pipeline, feeder = decrypt_member(opened, MEMBERS[1], gnupg_home, [["zstd", "-q", "-d", "-c"]])

    def dump_checked(size: int) -> None:
        feeder.join()
        pipeline.wait("restore")
        if (size, digest.hexdigest()) != expected_dump:
            raise BackupError("restore", "the set's database dump does not match its manifest; use another set")

    def pg_restore_failed(stderr) -> BackupError:
        stderr.seek(0)
        return BackupError("restore", f"pg_restore failed: {stderr.read().decode(errors='replace').strip()}")

    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: pg_restore can never block on its messages
        if jobs <= 1:
            proc = subprocess.Popen(restore, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
            size = -1
            try:
                size = pump(pipeline.procs[-1].stdout, proc.stdin, digest)
            except BrokenPipeError:
                pipeline.kill()  # pg_restore stopped reading: its message says why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            if proc.wait() != 0:
                pipeline.kill()
                raise pg_restore_failed(stderr)
            dump_checked(size)
        else:
            scratch = os.path.join(cfg.backup_dir, f".restore-{opened.info.id}-{os.getpid()}")
            os.mkdir(scratch, 0o700)
            try:
                dump_path = os.path.join(scratch, "db.dump")
                with open(dump_path, "wb") as out:
                    size = pump(pipeline.procs[-1].stdout, out, digest)
                dump_checked(size)
                proc = subprocess.run([*restore, f"--jobs={jobs}", dump_path], stderr=stderr, env=env, check=False)
                if proc.returncode != 0:
                    raise pg_restore_failed(stderr)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    engine_seconds = round(time.monotonic() - started, 3)
    conn = db_connect(cfg, password, target_db)
    try:
        conn.set_session(readonly=True)
        actual = table_stats(conn, checksum_algorithms(manifest["database"]["tables"]))
    finally:
        conn.close()
    problems = compare_tables(manifest["database"]["tables"], actual)
    if problems:
        raise BackupError(
            "restore", f"the restored database {target_db} does not match the set: " + "; ".join(problems)
        )
    return {
        "id": opened.info.id,
        "target_db": target_db,
        "tables": actual,
        "engine_seconds": engine_seconds,
        "manifest": {
            k: manifest[k] for k in ("id", "created_at", "portfolio_value", "key_fingerprints", "config_git_commit")
        },
    }
