"""Processes piped into each other, streaming copies that hash on the way, and durable writes."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess

from .config import BackupError

CHUNK = 1 << 20


class Pipeline:
    """Processes connected stdout to stdin, with the last one writing to a file; stderr kept for messages."""

    def __init__(self, commands: list[list[str]], stdin=None, stdout=None, env: dict | None = None):
        self.commands = commands
        self.procs: list[subprocess.Popen] = []
        self.stderr: list[bytes] = []
        previous = stdin
        for index, command in enumerate(commands):
            last = index == len(commands) - 1
            proc = subprocess.Popen(
                command,
                stdin=previous if previous is not None else subprocess.DEVNULL,
                stdout=stdout if last else subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            if previous is not None and previous not in (subprocess.PIPE, subprocess.DEVNULL) and index > 0:
                previous.close()
            previous = proc.stdout
            self.procs.append(proc)

    @property
    def stdin(self):
        return self.procs[0].stdin

    def wait(self, step: str) -> None:
        failures = []
        for command, proc in zip(self.commands, self.procs, strict=True):
            err = proc.stderr.read() if proc.stderr else b""
            code = proc.wait()
            if code != 0:
                failures.append(f"{os.path.basename(command[0])} exited {code}: {err.decode(errors='replace').strip()}")
        if failures:
            text = "; ".join(failures)
            if "No space left" in text:
                raise OSError(errno.ENOSPC, text)
            raise BackupError(step, text)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def pump(source, sink, digest) -> int:
    """Copy source to sink in 1 MiB chunks, hashing on the way; the byte count."""
    size = 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        sink.write(chunk)
        size += len(chunk)
    return size


class HashingWriter:
    """A write-only file for tarfile that hashes what passes through it."""

    def __init__(self, handle):
        self.handle = handle
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.handle.tell()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
