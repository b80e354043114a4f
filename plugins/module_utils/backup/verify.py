"""Verifying a set: the plan's checks in its order, every one through the one open file a restore then reads."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import time

from .config import BackupError
from .gpg import check_set_identity, gpg_base, parse_verify_status
from .pipeline import CHUNK, Pipeline
from .sets import MEMBERS, SetInfo, future_id_problem, set_files


class OpenedSet:
    """A set's archive opened once. Every check of a verification and every read of a restore goes through this open
    file, so a restore uses exactly the bytes that were verified: renaming or replacing the file at its path
    afterwards changes nothing here (and the set files belong to the backup user, so its content cannot be
    rewritten in place by the bot's uid). The .sha256 and .sig files are read once, into memory."""

    def __init__(self, set_info: SetInfo):
        self.info = set_info
        names = set_files(set_info.id)
        try:
            self.fd = os.open(set_info.tar, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            raise BackupError("archive", f"cannot open {set_info.tar} ({error.strerror}); use another set") from None
        info = os.fstat(self.fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(self.fd)
            raise BackupError("archive", f"{set_info.tar} is not a regular file; use another set")
        self.size = info.st_size
        self.sha256_text = self._small(names["sha256"])
        self.signature = self._small(names["sig"], binary=True)

    def _small(self, name: str, binary: bool = False):
        try:
            with open(os.path.join(self.info.path, name), "rb") as handle:
                data = handle.read(1 << 20)
        except OSError:
            return None
        return data if binary else data.decode("utf-8", errors="replace")

    def reopen(self):
        """A new file object on the same open archive, with its own position (threads may read at once)."""
        return open(f"/proc/self/fd/{self.fd}", "rb")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_set(source: SetInfo | OpenedSet) -> tuple[OpenedSet, bool]:
    """(the opened set, whether this call opened it and must close it)."""
    return (source, False) if isinstance(source, OpenedSet) else (OpenedSet(source), True)


def _hash_and_verify(opened: OpenedSet, keyring_home: str, signers: list[str]) -> tuple[str, object]:
    """One read of the archive: its sha256 here while gpg checks the signature over the same bytes (two cores).
    Returns (sha256 hex, the signature's Signature or the BackupError it raised)."""
    digest = hashlib.sha256()
    if opened.signature is None:
        with opened.reopen() as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest(), BackupError("signature", "the set's .sig file is missing: it cannot be trusted")
    with tempfile.NamedTemporaryFile(prefix="mojorust-sig-") as sig:
        sig.write(opened.signature)
        sig.flush()
        proc = subprocess.Popen(
            [*gpg_base(keyring_home), "--status-fd", "1", "--verify", sig.name, "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        status: list[bytes] = []
        reader = threading.Thread(target=lambda: status.append(proc.stdout.read()), daemon=True)
        reader.start()
        with opened.reopen() as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(chunk)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait()
        reader.join()
    try:
        return digest.hexdigest(), parse_verify_status(b"".join(status).decode(errors="replace"), signers)
    except BackupError as error:
        return digest.hexdigest(), error


def check_sha256(opened: OpenedSet, actual: str) -> str:
    names = set_files(opened.info.id)
    expected = (opened.sha256_text or "").split()[:1]
    if not expected:
        raise BackupError("sha256", f"{names['sha256']} is missing or empty; the set cannot be trusted")
    if actual != expected[0]:
        raise BackupError(
            "sha256",
            f"{names['tar']} has sha256 {actual[:16]}…, its .sha256 file says {expected[0][:16]}…: the set was changed "
            "or damaged after it was written; use another set",
        )
    return actual


def check_archive(opened: OpenedSet) -> list[str]:
    try:
        with opened.reopen() as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError) as error:
        raise BackupError(
            "archive", f"{os.path.basename(opened.info.tar)} is not a readable archive ({error}); use another set"
        ) from None
    names = [m.name for m in members]
    if sorted(names) != sorted(MEMBERS):
        raise BackupError(
            "archive", f"the set holds {names}, expected {list(MEMBERS)}: it is incomplete; use another set"
        )
    for member in members:
        if member.offset_data + member.size > opened.size:
            raise BackupError("archive", f"{member.name} is cut short: the set was truncated; use another set")
    return names


def decrypt_member(opened: OpenedSet, member: str, gnupg_home: str, then=None, stdout=None):
    """Pipeline: the member's bytes from the opened archive | gpg --decrypt | then...; returns (pipeline, feeder)."""
    commands = [[*gpg_base(gnupg_home), "--decrypt"], *(then or [])]
    pipeline = Pipeline(commands, stdin=subprocess.PIPE, stdout=stdout if stdout is not None else subprocess.PIPE)

    def feed():
        try:
            with opened.reopen() as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
                source = tar.extractfile(member)
                shutil.copyfileobj(source, pipeline.stdin, CHUNK)
        except (BrokenPipeError, OSError, tarfile.TarError):
            pass  # the reading side reports the failure
        finally:
            with contextlib.suppress(OSError):
                pipeline.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    return pipeline, feeder


def decrypt_manifest(opened: OpenedSet, gnupg_home: str) -> dict:
    pipeline, feeder = decrypt_member(opened, MEMBERS[0], gnupg_home)
    data = pipeline.procs[-1].stdout.read()
    feeder.join()
    try:
        pipeline.wait("decryption")
    except BackupError as error:
        if "No secret key" in error.message or "decryption failed" in error.message:
            raise BackupError(
                "decryption",
                f"the keys in {gnupg_home} cannot decrypt this set; it is encrypted to the operator key(s) named in "
                "its summary (.json): bring that key",
            ) from None
        raise
    manifest = json.loads(data)
    if manifest.get("id") != opened.info.id:
        raise BackupError(
            "decryption",
            f"the set named {opened.info.id} holds the manifest of set {manifest.get('id')}: it was renamed or "
            "assembled from another set; do not restore it",
        )
    return manifest


def _stream_digest(opened: OpenedSet, member: str, gnupg_home: str, then: list[list[str]]) -> tuple[int, str]:
    pipeline, feeder = decrypt_member(opened, member, gnupg_home, then)
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: pipeline.procs[-1].stdout.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
    feeder.join()
    pipeline.wait("contents")
    return size, digest.hexdigest()


def verify_set(
    source: SetInfo | OpenedSet,
    keyring_home: str,
    signers: list[str],
    decrypt_home: str | None = None,
    checks: list[dict] | None = None,
    found: dict | None = None,
    check_database: bool = True,
    expected_host: str | None = None,
) -> list[dict]:
    """The plan's checks in its order: sha256, archive, signature (with the set's signed id and host), decryption,
    every file against the manifest.

    The signature is checked with the public keys in keyring_home (the host's); decryption and the contents need
    decrypt_home, a keyring holding the operator's secret key, and are skipped without it. Pass an OpenedSet to
    restore from exactly what was verified. Returns the passed checks (appended to `checks` when given, so a caller
    keeps them on failure); raises BackupError naming the first that failed. The decrypted manifest (no secrets in
    it) is put into `found` when given.
    """
    checks = [] if checks is None else checks
    found = {} if found is None else found
    opened, owned = open_set(source)
    try:
        verify_opened(opened, keyring_home, signers, decrypt_home, checks, found, check_database, expected_host)
    finally:
        if owned:
            opened.close()
    return checks


def verify_opened(opened, keyring_home, signers, decrypt_home, checks, found, check_database, expected_host):
    def run(name, function):
        started = time.monotonic()
        detail = function()
        checks.append({"check": name, "ok": True, "detail": detail, "seconds": round(time.monotonic() - started, 3)})
        return detail

    def signature_check():
        if isinstance(signature, BackupError):
            raise signature
        return check_set_identity(signature, opened.info.id, expected_host)

    problem = future_id_problem(opened.info.id)
    if problem:
        raise BackupError("select", problem)
    started = time.monotonic()
    digest, signature = _hash_and_verify(opened, keyring_home, signers)
    run("sha256", lambda: check_sha256(opened, digest))
    checks[-1]["seconds"] = round(time.monotonic() - started, 3)
    run("archive", lambda: check_archive(opened))
    run("signature", signature_check)
    if not decrypt_home:
        return
    gnupg_home = decrypt_home
    manifest = run("decryption", lambda: decrypt_manifest(opened, gnupg_home))
    found["manifest"] = manifest
    checks[-1]["detail"] = f"manifest of {manifest['id']} from {manifest['host']}"

    def contents():
        # check_database=False skips the dump (the largest member) for a restore that does not use it; the
        # database restore checks it table by table anyway.
        size = None
        if check_database:
            size, digest = _stream_digest(opened, MEMBERS[1], gnupg_home, [["zstd", "-q", "-d", "-c"]])
            if (size, digest) != (manifest["database"]["size"], manifest["database"]["sha256"]):
                raise BackupError("contents", "the database dump does not match the manifest; use another set")
        files = read_files(opened, gnupg_home)
        expected = {f["name"]: f for f in manifest["files"]}
        for name, record in expected.items():
            data = files.get(name)
            if data is None:
                raise BackupError(
                    "contents", f"{name} is listed in the manifest but missing from the set; use another set"
                )
            if hashlib.sha256(data).hexdigest() != record["sha256"] or len(data) != record["size"]:
                raise BackupError("contents", f"{name} does not match the manifest; use another set")
        extra = sorted(set(files) - set(expected))
        if extra:
            raise BackupError("contents", f"the set holds files the manifest does not list: {extra}; use another set")
        dump = f"database dump ({size} bytes) and " if check_database else "(database dump not checked) "
        return f"{dump}{len(expected)} files match the manifest"

    run("contents", contents)


def read_files(opened: OpenedSet, gnupg_home: str) -> dict[str, bytes]:
    pipeline, feeder = decrypt_member(opened, MEMBERS[2], gnupg_home, [["zstd", "-q", "-d", "-c"]])
    files = {}
    try:
        with tarfile.open(fileobj=pipeline.procs[-1].stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    files[member.name] = tar.extractfile(member).read()
    except tarfile.TarError as error:
        pipeline.kill()
        raise BackupError("contents", f"the files archive is damaged ({error}); use another set") from None
    feeder.join()
    pipeline.wait("contents")
    return files
