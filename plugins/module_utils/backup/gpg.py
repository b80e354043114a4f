"""GnuPG: private keyrings that live as long as a run, encryption, and the signature that binds a set's id
and host to its archive."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

from .config import BackupError

# The host's signature binds a set's id and host to its archive (hashed notations, covered by the signature): a set
# renamed, or copied to another name or host, fails its signature check.
NOTATION_SET_ID = "set-id@mojorust.dr"
NOTATION_HOST = "host@mojorust.dr"


def gpg_base(home: str) -> list[str]:
    return ["gpg", "--homedir", home, "--batch", "--no-tty", "--quiet", "--trust-model", "always"]


@contextlib.contextmanager
def keyring(*sources: str):
    """A private GnuPG home (0700, removed afterwards) holding the keys of `sources`: armored key files, or
    directories whose *.asc files are imported in name order. A missing source is an error naming it."""
    home = tempfile.mkdtemp(prefix="mojorust-keyring-")
    try:
        files = []
        for source in sources:
            if os.path.isdir(source):
                files += [os.path.join(source, n) for n in sorted(os.listdir(source)) if n.endswith(".asc")]
            elif os.path.isfile(source):
                files.append(source)
            else:
                raise BackupError("keys", f"{source} is missing; run playbooks/backup.yml to install the keys")
        for path in files:
            with open(path, "rb") as handle:
                data = handle.read()
            result = subprocess.run([*gpg_base(home), "--import"], input=data, capture_output=True, check=False)
            if result.returncode != 0:
                raise BackupError(
                    "keys", f"{path} is not an OpenPGP key: {result.stderr.decode(errors='replace').strip()[:200]}"
                )
        yield home
    finally:
        stop_gpg_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def stop_gpg_agent(home: str, timeout: float = 5.0) -> None:
    """Stop the gpg-agent of a keyring and wait until its process is gone (reaped, not only exiting): a daemon that
    outlives the run keeps its systemd unit from finishing (in a container without cgroup notifications, until the
    stop timeout)."""
    marker = home.encode()
    agents = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if marker in handle.read() and pid != str(os.getpid()):
                        agents.append(pid)
            except OSError:
                continue
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{pid}") for pid in agents) and time.monotonic() < deadline:
        time.sleep(0.02)


def gpg_encrypt_command(home: str, recipients: list[str], output: str) -> list[str]:
    command = [*gpg_base(home), "--compress-algo", "none", "--encrypt", "--output", output]
    for recipient in recipients:
        command += ["--recipient", recipient]
    return command


def gpg_sign_command(home: str, signing_key: str, output: str, data: str, set_id: str, host: str) -> list[str]:
    """A detached signature of a set's archive that also signs its id and host (hashed notations)."""
    return [
        *gpg_base(home),
        "--local-user",
        signing_key,
        "--sig-notation",
        f"{NOTATION_SET_ID}={set_id}",
        "--sig-notation",
        f"{NOTATION_HOST}={host}",
        "--detach-sign",
        "--output",
        output,
        data,
    ]


def encrypt_bytes(home: str, recipients: list[str], data: bytes, out_path: str) -> None:
    result = subprocess.run(
        gpg_encrypt_command(home, recipients, out_path), input=data, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise BackupError("encrypt", result.stderr.decode(errors="replace").strip())


@dataclass
class Signature:
    fingerprint: str  # the signer's primary key
    notations: dict[str, str]


def _unescape_status(text: str) -> str:
    """gpg --status-fd percent-escapes notation data (%25, %20, ...)."""
    return urllib.parse.unquote(text)


def parse_verify_status(status: str, signers: list[str]) -> Signature:
    """gpg --status-fd output of a --verify: a good signature by one of `signers` (by primary key or signing subkey)
    that is neither revoked nor expired, with its notations; BackupError('signature') saying why not otherwise."""
    lines = [line.split(" ", 2)[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    keywords = {fields[0] for fields in lines if fields}
    valid = [(fields[1] if len(fields) > 1 else "").split() for fields in lines if fields[0] == "VALIDSIG"]
    wanted = {s.upper() for s in signers}
    # A signature by a revoked or expired key still prints VALIDSIG beside REVKEYSIG / EXPKEYSIG: only GOODSIG is good.
    for keyword, why in (
        ("REVKEYSIG", "its signing key has been revoked (rotated after a breach): sets it signed are not trusted"),
        ("EXPKEYSIG", "its signing key has expired"),
        ("EXPSIG", "the signature has expired"),
        ("BADSIG", "the signature does not match the set: it was changed after it was signed"),
    ):
        if keyword in keywords:
            raise BackupError("signature", f"{why}; do not restore it, use another set")
    if "GOODSIG" not in keywords or not valid:
        if "NO_PUBKEY" in keywords:
            raise BackupError("signature", "signed by a key that is not known here; the set is not from a trusted host")
        raise BackupError("signature", "the signature does not match the set: it was changed after it was signed")
    for fields in valid:
        # VALIDSIG <signing (sub)key fpr> ... <primary key fpr> is the last field
        if {fields[0].upper(), fields[-1].upper()} & wanted:
            notations, name = {}, None
            for line in lines:
                if line[0] == "NOTATION_NAME":
                    name = line[1] if len(line) > 1 else ""
                elif line[0] == "NOTATION_DATA" and name is not None:
                    notations[name] = notations.get(name, "") + _unescape_status(line[1] if len(line) > 1 else "")
            return Signature(fields[-1].upper(), notations)
    raise BackupError(
        "signature",
        f"signed by {valid[0][-1]}, which is not a trusted signer ({', '.join(sorted(wanted))}); "
        "the set did not come from this host's backup key: do not restore it",
    )


def check_set_identity(signature: Signature, set_id: str, expected_host: str | None = None) -> str:
    """The id and host the signature binds to the archive, against the set's name (and the host it must come from).
    A set renamed, copied under another name, or signed without them is refused."""
    signed_id = signature.notations.get(NOTATION_SET_ID)
    signed_host = signature.notations.get(NOTATION_HOST, "")
    if signed_id is None:
        raise BackupError(
            "signature",
            f"the signature of {set_id} does not bind a set id (made by another tool, or before ids were signed); "
            "its name cannot be trusted: use another set",
        )
    if signed_id != set_id:
        raise BackupError(
            "signature",
            f"the set named {set_id} was signed as {signed_id}: it was renamed or copied under another name; do "
            "not restore it",
        )
    if expected_host and signed_host != expected_host:
        raise BackupError(
            "signature", f"set {set_id} was signed by host {signed_host!r}, not {expected_host!r}: do not restore it"
        )
    return f"signed by {signature.fingerprint} as set {signed_id} of host {signed_host}"
