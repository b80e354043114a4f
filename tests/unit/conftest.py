"""Shared setup for the unit tests: the collection on sys.path, and GnuPG keyrings made once per session."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

COLLECTIONS = Path(__file__).resolve().parents[2] / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
EDGE_DIR = Path(__file__).resolve().parents[2] / "lab" / "edge"
if str(EDGE_DIR) not in sys.path:
    sys.path.insert(0, str(EDGE_DIR))

import edge

# A proxy from the environment must not intercept calls to 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

OPERATOR_UID = "MojoRust DR operator <operator@example.test>"
HOST_UID = "mojorust backup signing key (unit)"
STRANGER_UID = "Somebody Else <stranger@example.test>"
OTHER_OPERATOR_UID = "Another operator <other@example.test>"


def gpg(home: Path | str, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
    """Run gpg on one home in batch mode; raises with gpg's stderr when it fails."""
    result = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args], input=data, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result


def _new_home(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def _generate(home: Path, uid: str, encryption_subkey: bool) -> str:
    """A passphrase-less ed25519 signing key (plus a cv25519 encryption subkey if asked); its fingerprint."""
    gpg(home, "--passphrase", "", "--quick-generate-key", uid, "ed25519", "sign", "never")
    fpr = primary_fingerprint(home, uid)
    if encryption_subkey:
        gpg(home, "--passphrase", "", "--quick-add-key", fpr, "cv25519", "encr", "never")
    return fpr


def primary_fingerprint(home: Path, uid: str) -> str:
    out = gpg(home, "--with-colons", "--list-keys", uid).stdout.decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def export_public(home: Path, fpr: str) -> bytes:
    return gpg(home, "--armor", "--export", fpr).stdout


@dataclass
class Keys:
    """Keyrings of one test session.

    operator: the operator's secret key (sign + encryption subkey) - the recovery keyring.
    host: the host's signing secret key plus the operator's public key - the backup keyring.
    stranger: a signing key nobody trusts.
    other: a secret key of another operator (sign + encryption subkey) that cannot decrypt the sets.
    """

    operator_home: Path
    operator_fpr: str
    host_home: Path
    host_fpr: str
    stranger_home: Path
    stranger_fpr: str
    other_home: Path
    other_fpr: str
    key_files: Path | None = None  # operator-keys.asc, signing-key.asc, trusted-keys/ (as the backup role lays them)
    operator_uid: str = OPERATOR_UID
    host_uid: str = HOST_UID

    @staticmethod
    def gpg(home: Path | str, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
        return gpg(home, *args, data=data)


@pytest.fixture(scope="session")
def gpg_keys(tmp_path_factory) -> Keys:
    missing = [tool for tool in ("gpg", "zstd") if not shutil.which(tool)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: run `make setup` (lab/bin/install-host-packages installs them)"
        )
    base = tmp_path_factory.mktemp("gpg")
    homes = [_new_home(base / name) for name in ("operator", "host", "stranger", "other")]
    operator, host, stranger, other = homes
    keys = Keys(
        operator_home=operator,
        operator_fpr=_generate(operator, OPERATOR_UID, encryption_subkey=True),
        host_home=host,
        host_fpr=_generate(host, HOST_UID, encryption_subkey=False),
        stranger_home=stranger,
        stranger_fpr=_generate(stranger, STRANGER_UID, encryption_subkey=False),
        other_home=other,
        other_fpr=_generate(other, OTHER_OPERATOR_UID, encryption_subkey=True),
    )
    # The host encrypts to the operator: the operator's public key is in the host's keyring.
    gpg(host, "--import", data=export_public(operator, keys.operator_fpr))
    # The same keys as the files the backup role installs (the host command builds its keyrings from these).
    files = base / "etc"
    (files / "trusted-keys").mkdir(parents=True)
    (files / "operator-keys.asc").write_bytes(export_public(operator, keys.operator_fpr))
    (files / "signing-key.asc").write_bytes(gpg(host, "--armor", "--export-secret-keys", keys.host_fpr).stdout)
    (files / "trusted-keys" / "unit-host.asc").write_bytes(export_public(host, keys.host_fpr))
    keys.key_files = files
    yield keys
    for home in homes:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


# ------------------------------------------------------------------------------------------ the edge, in process
class Edge:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.server = edge.make_server("127.0.0.1", 0, state_dir)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def call(self, method, path, body=None, headers=None, form=False):
        headers = dict(headers or {})
        data = None
        if body is not None and form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with OPENER.open(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.loads(err.read())

    def rpc(self, method, params=None, path="/rpc", headers=None):
        body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or []}
        return self.call("POST", path, body, headers)

    def records(self, name: str) -> list[dict]:
        path = self.state_dir / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def lab(tmp_path):
    """drlab-edge on a free port of 127.0.0.1, with its state in tmp_path."""
    server = Edge(tmp_path / "state")
    yield server
    server.stop()
