"""Backup sets of the MojoRust bot: create, list, verify, restore, retention.

One implementation for the Ansible modules (mojorust.dr.backup_set, backup_verify, backup_restore) and the
`mojorust-backup` command the systemd timer runs on the host (the backup role deploys this file). Standard
library only, plus psycopg2 for the database and the gpg, zstd, pg_dump and pg_restore programs.

A set is a directory <backup_dir>/<id>/ (id: UTC timestamp, 20261125T020000Z) holding
  mojorust-backup-<id>.tar          the set: an uncompressed tar of three encrypted members
      manifest.json.gpg             what the set holds (sizes, sha256, row counts, checksums, fingerprints)
      db.dump.zst.gpg               pg_dump custom format | zstd | gpg, streamed (no plaintext on disk)
      files.tar.zst.gpg             config/ (with its git history), .env, wallet, portfolio state, recent logs
  mojorust-backup-<id>.tar.sha256   `sha256sum -c` format
  mojorust-backup-<id>.tar.sig      detached signature by the host's signing key
  mojorust-backup-<id>.json         plaintext summary (id, created_at, size, sha256, recipients, signer)
It is written as <backup_dir>/.partial-<id>/ and renamed into place only when complete and verified.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

TOOL_VERSION = "mojorust-backup 1.0"
ID_FORMAT = "%Y%m%dT%H%M%SZ"
MEMBERS = ("manifest.json.gpg", "db.dump.zst.gpg", "files.tar.zst.gpg")
CHUNK = 1 << 20
LAST_GOOD = "LAST_GOOD"
STATUS_FILE = ".status.json"
# The host's signature binds a set's id and host to its archive (hashed notations, covered by the signature): a set
# renamed, or copied to another name or host, fails its signature check.
NOTATION_SET_ID = "set-id@mojorust.dr"
NOTATION_HOST = "host@mojorust.dr"
# A set id later than now by more than this (clock skew) is refused: nothing made a set in the future.
FUTURE_SKEW = timedelta(minutes=5)
ENV_KEYS_FINGERPRINTED = (
    "HELIUS_API_KEY",
    "QUICKNODE_API_KEY",
    "INFISICAL_TOKEN",
    "DB_PASSWORD",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
)


class BackupError(Exception):
    """A failure with the name of the check or step that failed and what the operator should do."""

    def __init__(self, check: str, message: str):
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


# --------------------------------------------------------------------------------------------- configuration
@dataclass
class Config:
    backup_dir: str = "/home/tradingbot/backups"
    bot_home: str = "/home/tradingbot/mojo-trading-bot"
    wallet_path: str = "/home/tradingbot/.config/solana/id.json"
    # The system user the backups run as (never the bot's): it owns the sets; it reads the bot's files through
    # CAP_DAC_READ_SEARCH only (its systemd unit, or the privilege drop of `mojorust-backup` run as root).
    backup_user: str = "mojorust-backup"
    # Keys: files owned by root, readable by the backup user's group (the signing key) or by all (public keys);
    # every run imports them into a private keyring that lives as long as the run. The bot's uid reads none of them.
    signing_key_file: str = "/etc/mojorust-backup/signing-key.asc"
    operator_keys_file: str = "/etc/mojorust-backup/operator-keys.asc"
    # Public keys (*.asc) of the hosts whose sets may be verified and restored here, this host's own among them;
    # a revoked key's file carries its revocation, so the sets it signed are refused.
    trusted_keys_dir: str = "/etc/mojorust-backup/trusted-keys"
    recipients: list[str] = field(default_factory=list)
    signing_key: str = ""
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_name: str = "trading_db"
    db_user: str = "trading_user"
    log_days: int = 7
    keep_days: int = 30
    min_keep: int = 7
    zstd_level: int = 1
    alert_api_base: str = ""
    host: str = field(default_factory=socket.gethostname)
    # Prometheus textfile (node exporter) rewritten with every status change; empty writes none.
    metrics_file: str = ""
    # check-stale alerts when the newest good set (or off-site copy) is older than this.
    stale_hours: float = 26.0

    @property
    def env_file(self) -> str:
        return os.path.join(self.bot_home, ".env")

    @classmethod
    def from_dict(cls, data: dict) -> Config:
        return settings_from_dict(cls, data, "setting")


def settings_from_dict(cls, data: dict, what: str):
    """A settings dataclass from a mapping; a key it does not know (a typo) is an error naming it."""
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise BackupError("config", f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**data)


def read_env(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            key = key.strip().removeprefix("export ").strip()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key] = value
    return values


def fingerprint(secret: str) -> str:
    """What may be shown of a secret: the first 16 hex digits of its sha256 (the bot's /health uses the same)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def base58(data: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rest = divmod(number, 58)
        out = alphabet[rest] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def wallet_pubkey(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    return base58(bytes(raw[32:64]))


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_id(set_id: str) -> datetime:
    return datetime.strptime(set_id, ID_FORMAT).replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------- sets
@dataclass
class SetInfo:
    id: str
    path: str
    created_at: str
    size: int
    sha256: str
    good: bool  # published, verified at publish time, and not marked bad since

    @property
    def tar(self) -> str:
        return os.path.join(self.path, f"mojorust-backup-{self.id}.tar")


def set_files(set_id: str) -> dict[str, str]:
    base = f"mojorust-backup-{set_id}"
    return {"tar": f"{base}.tar", "sha256": f"{base}.tar.sha256", "sig": f"{base}.tar.sig", "summary": f"{base}.json"}


def future_id_problem(set_id: str, now: datetime | None = None) -> str:
    """Why an id cannot be a real set's (later than now beyond FUTURE_SKEW), or ''."""
    now = now or now_utc()
    if parse_id(set_id) > now + FUTURE_SKEW:
        return (
            f"set {set_id} is dated in the future (now is {now.strftime(ID_FORMAT)}): no backup made it; it was "
            "planted or the host's clock is wrong. Use another set and find out where it came from"
        )
    return ""


def list_sets(backup_dir: str, now: datetime | None = None) -> list[SetInfo]:
    """Published sets, oldest first. Partial runs (.partial-*) and foreign entries are not sets; a set dated in the
    future (see future_id_problem) or marked BAD is listed as not good, so `latest` never picks it."""
    sets = []
    if not os.path.isdir(backup_dir):
        return sets
    now = now or now_utc()
    for name in sorted(os.listdir(backup_dir)):
        path = os.path.join(backup_dir, name)
        try:
            parse_id(name)
        except ValueError:
            continue
        names = set_files(name)
        if not all(os.path.exists(os.path.join(path, n)) for n in names.values()):
            continue
        try:
            with open(os.path.join(path, names["summary"]), encoding="utf-8") as handle:
                summary = json.load(handle)
        except (OSError, ValueError):
            summary = {}
        sets.append(
            SetInfo(
                id=name,
                path=path,
                created_at=summary.get("created_at", parse_id(name).isoformat()),
                size=int(summary.get("size", 0)),
                sha256=summary.get("sha256", ""),
                good=not os.path.exists(os.path.join(path, "BAD")) and not future_id_problem(name, now),
            )
        )
    return sets


def resolve_set(backup_dir: str, backup_id: str, before: str | None = None) -> SetInfo:
    """The set a restore takes, by one rule everywhere: `latest` is the newest good set; with `before` (a set id, or
    moment_set_id of a time) the newest good set made before it; else the set of that id. BackupError('select')
    naming the sets there are when none qualifies. Nothing is verified here; the restore verifies what it takes."""
    sets = list_sets(backup_dir)
    if before:
        try:
            parse_id(before)
        except ValueError:
            raise BackupError("select", f"before must be a set id like 20261126T010203Z, not {before!r}") from None
        earlier = [s for s in sets if s.good and s.id < before]
        if not earlier:
            listed = ", ".join(f"{s.id}{'' if s.good else ' (not good)'}" for s in sets) or "none"
            raise BackupError(
                "select",
                f"no good set in {backup_dir} was made before {before}; the sets there are: {listed}. Fetch an older "
                "one from off-site (offsite_fetch) or give another moment",
            )
        return earlier[-1]
    if backup_id == "latest":
        good = [s for s in sets if s.good]
        if not good:
            raise BackupError("select", f"no good backup set in {backup_dir}; run playbooks/backup.yml to make one")
        return good[-1]
    for candidate in sets:
        if candidate.id == backup_id:
            return candidate
    if not sets:
        raise BackupError(
            "select", f"no backup set {backup_id!r}: {backup_dir} holds no sets; run playbooks/backup.yml"
        )
    available = ", ".join(s.id for s in sets[-10:])
    raise BackupError("select", f"no backup set {backup_id!r} in {backup_dir}; the newest are: {available}")


# ----------------------------------------------------------------------------------------------- retention
def retention_plan(
    sets: list[SetInfo], now: datetime, keep_days: int, min_keep: int, last_run_ok: bool
) -> tuple[list[str], list[str]]:
    """(ids to keep, ids to delete). Pure.

    Sets newer than keep_days are kept; the newest min_keep good sets are kept whatever their age; sets marked
    bad are kept for the operator to look at; and when the last run failed nothing is deleted at all.
    """
    ids = [s.id for s in sets]
    if not last_run_ok or keep_days < 0 or min_keep < 1:
        return ids, []
    cutoff = now - timedelta(days=keep_days)
    good_newest_first = sorted((s for s in sets if s.good), key=lambda s: s.id, reverse=True)
    floor = {s.id for s in good_newest_first[:min_keep]}
    delete = [s.id for s in sets if s.good and s.id not in floor and parse_id(s.id) < cutoff]
    return [i for i in ids if i not in delete], delete


# ----------------------------------------------------------------------------------------------------- gpg
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


# ---------------------------------------------------------------------------------------------- processes
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


class _HashingWriter:
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


# ------------------------------------------------------------------------------------------------- database
# Row count and an order-independent content checksum per table: the sum of a 64-bit hash of every row.
# hash_record_extended (PostgreSQL 14+) hashes each column's binary value with the type's own hash function: about
# 3.5x faster than md5 of the row's text (9.5 M rows: 7 s against 26 s). A table with a column type that has no
# hash function (json, point, xml) falls back to md5 of the row's text; a set records each table's algorithm, and a
# set made before this change (no "algorithm" field) was made with md5.
TABLE_CHECKSUM_SQL = {
    "hash_record_extended": "SELECT count(*), coalesce(sum(hash_record_extended(t, 0)), 0)::text FROM {} t",
    "md5": (
        "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text FROM {} t"
    ),
}
TABLE_CHECKSUM_DEFAULT = "hash_record_extended"
TABLE_CHECKSUM_LEGACY = "md5"
UNDEFINED_FUNCTION = "42883"  # SQLSTATE of "could not identify an extended hash function for type ..."


def pg_client_args(cfg: Config) -> list[str]:
    """Connection options for pg_dump and pg_restore; the password travels in PGPASSWORD, never in argv."""
    return ["--host", cfg.db_host, "--port", str(cfg.db_port), "--username", cfg.db_user, "--no-password"]


def db_connect(cfg: Config, password: str, dbname: str | None = None):
    import psycopg2  # imported here so that the rest works where psycopg2 is missing (unit tests, list, verify)

    return psycopg2.connect(
        host=cfg.db_host,
        port=cfg.db_port,
        dbname=dbname or cfg.db_name,
        user=cfg.db_user,
        password=password,
        connect_timeout=10,
        application_name="mojorust-backup",
    )


def table_stats(conn, algorithms: dict[str, str] | None = None) -> dict[str, dict]:
    """Row count and an order-independent content checksum of every user table, in the current snapshot (the
    connection's transaction). algorithms names the checksum per table (a set's manifest, to compare with it);
    any other table gets hash_record_extended, or md5 where a column type cannot be hashed."""
    from psycopg2 import sql

    def checksum(cur, schema: str, table: str, algorithm: str) -> tuple[int, str]:
        cur.execute(sql.SQL(TABLE_CHECKSUM_SQL[algorithm]).format(sql.Identifier(schema, table)))
        rows, value = cur.fetchone()
        return int(rows), value

    algorithms = algorithms or {}
    stats = {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
        for schema, table in cur.fetchall():
            name = f"{schema}.{table}"
            algorithm = algorithms.get(name)
            if algorithm:
                rows, value = checksum(cur, schema, table, algorithm)
            else:
                # A savepoint, so that "could not identify a hash function" leaves the snapshot usable.
                cur.execute("SAVEPOINT mojorust_checksum")
                try:
                    algorithm = TABLE_CHECKSUM_DEFAULT
                    rows, value = checksum(cur, schema, table, algorithm)
                    cur.execute("RELEASE SAVEPOINT mojorust_checksum")
                except Exception as error:  # psycopg2.Error; only a missing hash function means "use md5"
                    if getattr(error, "pgcode", None) != UNDEFINED_FUNCTION:
                        raise
                    cur.execute("ROLLBACK TO SAVEPOINT mojorust_checksum")
                    algorithm = TABLE_CHECKSUM_LEGACY
                    rows, value = checksum(cur, schema, table, algorithm)
            stats[name] = {"rows": rows, "checksum": value, "algorithm": algorithm}
    return stats


def checksum_algorithms(tables: dict[str, dict]) -> dict[str, str]:
    """Each table's checksum algorithm in a manifest (md5 for sets made before the field existed)."""
    return {name: stat.get("algorithm", TABLE_CHECKSUM_LEGACY) for name, stat in tables.items()}


def probe_tables(cfg: Config, password: str, names: list[str]) -> dict:
    """Read-only look at the live database: reachable or not, and each table's row count or the error reading it
    (a dropped table, a damaged data file). Never raises for the database's state."""
    from psycopg2 import sql

    try:
        conn = db_connect(cfg, password)
    except Exception as error:  # unreachable is an answer of the probe, not a failure of it
        return {"reachable": False, "error": str(error).strip(), "tables": {}}
    tables: dict[str, dict] = {}
    try:
        conn.autocommit = True
        conn.set_session(readonly=True, autocommit=True)
        for name in names:
            schema, _dot, table = name.partition(".")
            try:
                with conn.cursor() as cur:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))
                    tables[name] = {"rows": int(cur.fetchone()[0])}
            except Exception as error:  # one unreadable table must not hide the others
                tables[name] = {"error": str(error).strip().splitlines()[0]}
    finally:
        conn.close()
    return {"reachable": True, "error": "", "tables": tables}


def compare_tables(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """Differences between a manifest's tables and a database's, as sentences; empty when equal."""
    problems = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            problems.append(f"table {name} is missing")
        elif name not in expected:
            problems.append(f"table {name} is not in the backup")
        elif expected[name]["rows"] != actual[name]["rows"]:
            problems.append(f"table {name} has {actual[name]['rows']} rows, the backup {expected[name]['rows']}")
        elif expected[name]["checksum"] != actual[name]["checksum"]:
            problems.append(f"table {name} has the same row count but different content")
    return problems


# ------------------------------------------------------------------------------------------- who owns what
def check_backup_dir(cfg: Config) -> None:
    """The backup directory must be a real directory (not a symlink someone put in its place) that belongs to the
    backup user: the bot's uid can rename entries of its home, never the sets themselves."""
    try:
        info = os.lstat(cfg.backup_dir)
    except FileNotFoundError:
        raise BackupError("config", f"{cfg.backup_dir} does not exist; run playbooks/backup.yml") from None
    if not stat.S_ISDIR(info.st_mode):
        raise BackupError(
            "config",
            f"{cfg.backup_dir} is not a directory (a symlink or file was put in its place); move it aside, find out "
            "who did it, and run playbooks/backup.yml",
        )
    owner = _uid_of(cfg.backup_user)
    if owner is not None and info.st_uid not in (owner, 0):
        raise BackupError(
            "config",
            f"{cfg.backup_dir} belongs to uid {info.st_uid}, not to {cfg.backup_user}; it was replaced: move it "
            "aside, find out who did it, and run playbooks/backup.yml",
        )


def _uid_of(user: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def give_to_backup_user(cfg: Config, path: str) -> None:
    """What root wrote into the backup directory (a set fetched from off-site) belongs to the backup user, so its
    retention can remove it later. Nothing to do when not root."""
    import pwd

    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(cfg.backup_user)
    except KeyError:
        return
    if not stat.S_ISDIR(os.lstat(path).st_mode):  # a link (or a file) is not walked into
        os.lchown(path, entry.pw_uid, entry.pw_gid)
        return
    for root, dirs, files in os.walk(path):  # os.walk descends into no linked directory
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.lchown(name, entry.pw_uid, entry.pw_gid)


def drop_privileges_argv(cfg: Config, argv: list[str]) -> list[str]:
    """The command line that runs argv as the backup user with CAP_DAC_READ_SEARCH alone (to read the bot's files),
    as its systemd unit does: what `mojorust-backup` does to itself when root runs it (Ansible, a test)."""
    return [
        "setpriv",
        f"--reuid={cfg.backup_user}",
        f"--regid={cfg.backup_user}",
        "--init-groups",
        "--inh-caps=-all,+dac_read_search",
        "--ambient-caps=-all,+dac_read_search",
        "--bounding-set=-all,+dac_read_search",
        "--no-new-privs",
        "--reset-env",  # HOME, USER, PATH of the backup user: nothing of root's environment (git reads $HOME)
        "--",
        *argv,
    ]


# ---------------------------------------------------------------------------------------------------- lock
class BackupLock:
    """One run at a time: an flock on <backup_dir>/.lock, released by the kernel if the holder dies."""

    def __init__(self, backup_dir: str, owner: str):
        self.path = os.path.join(backup_dir, ".lock")
        self.owner = owner
        self.handle = None

    def __enter__(self):
        self.handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise BackupError(
                "lock", f"another backup is running ({holder}); wait for it to finish, this run did nothing"
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} started {now_utc().isoformat()} by {self.owner}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        self.handle.seek(0)
        self.handle.truncate()
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


# --------------------------------------------------------------------------------------------------- create
def _files_to_pack(cfg: Config, now: datetime) -> list[tuple[str, str]]:
    """(name in the set, path on the host) of every file the set carries besides the database. Symbolic links are
    not followed here (the bot's uid could point one at a file only the backup user may read); _read_member refuses
    them."""
    members = []
    config_dir = os.path.join(cfg.bot_home, "config")
    for root, dirs, files in os.walk(config_dir):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            path = os.path.join(root, name)
            members.append((os.path.relpath(path, cfg.bot_home), path))
    members.append((".env", cfg.env_file))
    members.append(("wallet/id.json", cfg.wallet_path))
    state = os.path.join(cfg.bot_home, "data", "portfolio_state.json")
    if os.path.lexists(state):
        members.append(("data/portfolio_state.json", state))
    logs = os.path.join(cfg.bot_home, "logs")
    cutoff = (now - timedelta(days=cfg.log_days)).timestamp()
    if os.path.isdir(logs) and not os.path.islink(logs):
        for name in sorted(os.listdir(logs)):
            path = os.path.join(logs, name)
            if not name.startswith("trading-bot-"):
                continue
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_mtime >= cutoff:
                members.append((f"logs/{name}", path))
    for _name, path in members:
        if not os.path.lexists(path):
            raise BackupError("files", f"{path} is missing; the set would be incomplete")
    return members


def _read_member(path: str) -> tuple[bytes, os.stat_result]:
    """The content and status of the regular file at path, read through no symbolic link at any component (checked
    on the open descriptor, so a link swapped in between is caught too): the backup user can read what the bot's uid
    cannot, and must not read it on the bot's behalf."""
    wanted = os.path.abspath(path)
    try:
        fd = os.open(wanted, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BackupError(
                "files",
                f"{wanted} is a symbolic link; a set carries regular files only. Replace the link by the file it "
                "points at (or remove it), find out who made it, and run the backup again",
            ) from None
        raise BackupError("files", f"{wanted} cannot be read ({exc.strerror}); the set would be incomplete") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        opened = os.readlink(f"/proc/self/fd/{handle.fileno()}")
        if not stat.S_ISREG(info.st_mode):
            raise BackupError("files", f"{wanted} is not a regular file; a set carries regular files only")
        if opened != wanted:
            raise BackupError(
                "files",
                f"{wanted} is reached through a symbolic link (it is {opened}); a set carries the bot's own files "
                "only. Replace the link by a directory, find out who made it, and run the backup again",
            )
        return handle.read(), info


def _pack_files(members, out_path: str, cfg: Config, home: str) -> list[dict]:
    """tar | zstd | gpg of the files, streamed; their size, mode and sha256 for the manifest. Each tar header is
    made from the status of the descriptor that was read, so header and data are the same file."""
    with open(out_path, "wb") as out:
        pipeline = Pipeline(
            [
                ["zstd", "-q", f"-{cfg.zstd_level}", "-T0", "-c"],
                gpg_encrypt_command(home, cfg.recipients, "-"),
            ],
            stdin=subprocess.PIPE,
            stdout=out,
        )
    records = []
    try:
        with tarfile.open(fileobj=pipeline.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, path in members:
                data, status = _read_member(path)
                info = tarfile.TarInfo(name)
                info.type = tarfile.REGTYPE
                info.mode = stat.S_IMODE(status.st_mode)
                info.mtime = int(status.st_mtime)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                records.append(
                    {
                        "name": name,
                        "size": len(data),
                        "mode": f"{info.mode:04o}",
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                )
        pipeline.stdin.close()
    except BaseException:
        pipeline.kill()
        raise
    pipeline.wait("files")
    return records


def _dump_database(cfg: Config, password: str, snapshot: str, out_path: str, result: dict, home: str) -> None:
    """pg_dump -Fc -Z0 | (hash) | zstd | gpg, in a thread; fills result with size/sha256 or error."""
    env = dict(os.environ, PGPASSWORD=password)
    dump = subprocess.Popen(
        ["pg_dump", "--format=custom", "--compress=0", f"--snapshot={snapshot}", *pg_client_args(cfg), cfg.db_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out = open(out_path, "wb")  # noqa: SIM115 - handed to gpg
    pipeline = Pipeline(
        [["zstd", "-q", f"-{cfg.zstd_level}", "-T0", "-c"], gpg_encrypt_command(home, cfg.recipients, "-")],
        stdin=subprocess.PIPE,
        stdout=out,
    )
    digest = hashlib.sha256()
    try:
        size = pump(dump.stdout, pipeline.stdin, digest)
        pipeline.stdin.close()
        err = dump.stderr.read().decode(errors="replace").strip()
        if dump.wait() != 0:
            raise BackupError("database", f"pg_dump failed: {err}")
        pipeline.wait("database")
        result.update(size=size, sha256=digest.hexdigest())
    except BaseException as error:  # handed to the main thread, which raises it
        dump.kill()
        pipeline.kill()
        result["error"] = error
    finally:
        out.close()


def _write_status(cfg: Config, status: dict) -> None:
    path = os.path.join(cfg.backup_dir, STATUS_FILE)
    previous = {}
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        pass
    previous.update(status)
    _atomic_write(path, json.dumps(previous, indent=2, sort_keys=True) + "\n")
    if cfg.metrics_file:
        # Metrics must never fail a backup; check-stale still reads the status file.
        with contextlib.suppress(OSError):
            _atomic_write(cfg.metrics_file, render_metrics(previous))


def _epoch(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def render_metrics(status: dict) -> str:
    """The status file as Prometheus text: when the last good set and off-site copy were made, size, duration,
    and whether the last runs succeeded. Absent values are left out (no made-up zeros)."""
    gauges = [
        (
            "mojorust_backup_last_success_timestamp_seconds",
            "Time of the newest good set.",
            _epoch(status.get("last_success_at")),
        ),
        (
            "mojorust_backup_last_run_ok",
            "1 when the last backup run succeeded.",
            None if "last_result" not in status else int(status["last_result"] == "ok"),
        ),
        ("mojorust_backup_last_size_bytes", "Size of the newest good set.", status.get("last_size_bytes")),
        (
            "mojorust_backup_last_duration_seconds",
            "How long the newest good set took.",
            status.get("last_duration_seconds"),
        ),
        (
            "mojorust_backup_offsite_last_success_timestamp_seconds",
            "Time of the last successful off-site push.",
            _epoch(status.get("offsite_last_success_at")),
        ),
        (
            "mojorust_backup_offsite_last_run_ok",
            "1 when the last off-site push succeeded.",
            None if "offsite_last_result" not in status else int(status["offsite_last_result"] == "ok"),
        ),
        (
            "mojorust_backup_verify_last_ok",
            "1 when the last verification of a set passed every check.",
            None if "verify_last_result" not in status else int(status["verify_last_result"] == "ok"),
        ),
    ]
    lines = []
    for name, help_text, value in gauges:
        if value is None:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def stale_problems(cfg: Config, now: datetime, offsite: bool) -> list[str]:
    """Why the backups are stale, if they are: no good set, or the newest good set (or off-site copy, when pushed
    off-site) older than cfg.stale_hours. The signal most backup tools lack: silence is not success."""
    try:
        with open(os.path.join(cfg.backup_dir, STATUS_FILE), encoding="utf-8") as handle:
            status = json.load(handle)
    except (OSError, ValueError):
        status = {}
    limit = cfg.stale_hours * 3600
    problems = []
    for key, what in [("last_success_at", "good backup set")] + (
        [("offsite_last_success_at", "off-site copy")] if offsite else []
    ):
        when = status.get(key)
        if not when:
            problems.append(f"no {what} recorded in {cfg.backup_dir}")
            continue
        age = (now - datetime.fromisoformat(when)).total_seconds()
        if age > limit:
            problems.append(f"the newest {what} is {age / 3600:.1f} h old (limit {cfg.stale_hours:g} h), from {when}")
    return problems


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def send_alert(cfg: Config, text: str) -> str:
    """Best effort Telegram message; returns '' or why it was not delivered (never the token)."""
    if not cfg.alert_api_base:
        return "alerts are not configured"
    try:
        env = read_env(cfg.env_file)
        body = json.dumps({"chat_id": env["TELEGRAM_CHAT_ID"], "text": text}).encode()
        request = urllib.request.Request(
            f"{cfg.alert_api_base.rstrip('/')}/bot{env['TELEGRAM_BOT_TOKEN']}/sendMessage",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        # The standard library's opener: this code is also the host command mojorust-backup, which runs without
        # Ansible (so without ansible.module_utils.urls).
        with urllib.request.build_opener().open(request, timeout=5) as response:
            response.read()
        return ""
    except Exception as error:  # an alert that cannot be sent must not hide the failure it reports
        return f"alert not delivered: {type(error).__name__}"


def create_set(cfg: Config, owner: str = "mojorust-backup", now: datetime | None = None, progress=None) -> dict:
    """Make one set, publish it atomically, apply retention. Raises BackupError; alerts on failure."""
    progress = progress or (lambda message: None)
    started = time.monotonic()
    now = now or now_utc()
    set_id = now.strftime(ID_FORMAT)
    if not cfg.recipients:
        raise BackupError("config", "no recipients: set the operator's GPG public key fingerprint(s)")
    if not cfg.signing_key:
        raise BackupError("config", "no signing key: set the host's signing key fingerprint")
    os.makedirs(cfg.backup_dir, mode=0o700, exist_ok=True)
    try:
        check_backup_dir(cfg)  # a replaced directory is alerted like any failure
        with BackupLock(cfg.backup_dir, owner), keyring(cfg.operator_keys_file, cfg.signing_key_file) as home:
            summary = _create_locked(cfg, set_id, now, progress, home)
    except BaseException as error:
        if isinstance(error, BackupError) and error.check == "lock":
            raise
        message = error.message if isinstance(error, BackupError) else str(error)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            free = shutil.disk_usage(cfg.backup_dir).free // (1 << 20)
            error = BackupError(
                "disk",
                f"disk full while writing the set in {cfg.backup_dir} ({free} MiB free); earlier sets are intact. "
                "Free space or point backup_dir at a larger disk, then run the backup again",
            )
            message = error.message
        # The alert first: on a full disk the status file cannot be written, and the alert must still go out.
        note = send_alert(cfg, f"BACKUP FAILED on {cfg.host} at {now.isoformat()}: {message}")
        try:
            _write_status(cfg, {"last_run_at": now.isoformat(), "last_result": "failed", "last_error": message})
        except OSError as status_error:
            note = "; ".join(filter(None, [note, f"status file not written: {status_error.strerror}"]))
        if isinstance(error, BackupError):
            error.message += f" ({note})" if note else ""
            raise error from None
        raise
    summary["duration_seconds"] = round(time.monotonic() - started, 3)
    _write_status(
        cfg,
        {
            "last_run_at": now.isoformat(),
            "last_result": "ok",
            "last_error": "",
            "last_success_at": now.isoformat(),
            "last_success_id": set_id,
            "last_size_bytes": summary["size"],
            "last_duration_seconds": summary["duration_seconds"],
        },
    )
    return summary


def _create_locked(cfg: Config, set_id: str, now: datetime, progress, home: str) -> dict:
    for name in os.listdir(cfg.backup_dir):
        if name.startswith(".partial-"):
            progress(f"removing {name} left by an interrupted run")
            shutil.rmtree(os.path.join(cfg.backup_dir, name))
    if os.path.exists(os.path.join(cfg.backup_dir, set_id)):
        raise BackupError("select", f"a set {set_id} exists already; wait a second and run again")
    partial = os.path.join(cfg.backup_dir, f".partial-{set_id}")
    os.mkdir(partial, 0o700)
    names = set_files(set_id)
    try:
        env = read_env(cfg.env_file)
        password = env.get("DB_PASSWORD", "")
        try:
            conn = db_connect(cfg, password)
        except Exception as error:  # psycopg2.Error, kept lazy so the module imports without psycopg2
            raise BackupError(
                "database",
                f"cannot connect to {cfg.db_name} at {cfg.db_host}:{cfg.db_port} as {cfg.db_user} "
                f"({str(error).strip()}); check that PostgreSQL is up and DB_PASSWORD in .env is right",
            ) from None
        try:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                # The cluster's system identifier names its WAL archive: a new host recovers the lost server's
                # cluster from exactly that archive (failover_fresh.yml), never from another cluster's, and its
                # replay must reach the WAL position of the snapshot (the set's moment).
                cur.execute(
                    "SELECT pg_export_snapshot(), current_setting('server_version'),"
                    " (SELECT system_identifier FROM pg_control_system())::text,"
                    " (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text"
                )
                snapshot, pg_version, system_id, wal_lsn = cur.fetchone()
            progress(f"dumping {cfg.db_name} from snapshot {snapshot}")
            dump_result: dict = {}
            dumper = threading.Thread(
                target=_dump_database,
                args=(cfg, password, snapshot, os.path.join(partial, MEMBERS[1]), dump_result, home),
            )
            dumper.start()
            # Row counts and checksums in the same snapshot as the dump, while it runs.
            try:
                tables = table_stats(conn)
            except Exception as error:  # psycopg2.Error: a table that cannot be read makes no good set
                raise BackupError(
                    "database",
                    f"cannot read every table of {cfg.db_name} ({str(error).strip()}); the database "
                    "may be damaged: restore it (playbooks/db_restore.yml) instead of backing it up",
                ) from None
            finally:
                dumper.join()
        finally:
            conn.close()
        if "error" in dump_result:
            raise dump_result["error"]
        progress("packing files")
        files = _pack_files(_files_to_pack(cfg, now), os.path.join(partial, MEMBERS[2]), cfg, home)
        manifest = _manifest(cfg, set_id, now, pg_version, dump_result, tables, files, env, (system_id, wal_lsn))
        _encrypt_bytes(home, cfg.recipients, json.dumps(manifest, indent=2).encode(), os.path.join(partial, MEMBERS[0]))
        tar_path = os.path.join(partial, names["tar"])
        # The archive's sha256 is taken as it is written: no second read of it.
        with open(tar_path, "wb") as raw:
            hashing = _HashingWriter(raw)
            with tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
                for member in MEMBERS:
                    tar.add(os.path.join(partial, member), arcname=member)
            digest = hashing.digest.hexdigest()
        for member in MEMBERS:
            os.unlink(os.path.join(partial, member))
        with open(os.path.join(partial, names["sha256"]), "w", encoding="utf-8") as handle:
            handle.write(f"{digest}  {names['tar']}\n")
        signed = subprocess.run(
            gpg_sign_command(home, cfg.signing_key, os.path.join(partial, names["sig"]), tar_path, set_id, cfg.host),
            capture_output=True,
            check=False,
        )
        if signed.returncode != 0:
            raise BackupError(
                "sign",
                f"gpg could not sign with {cfg.signing_key} from {cfg.signing_key_file}: "
                f"{signed.stderr.decode(errors='replace').strip()}; rerun playbooks/backup.yml",
            )
        summary = {
            "id": set_id,
            "created_at": now.isoformat(),
            "host": cfg.host,
            "tool_version": TOOL_VERSION,
            "size": os.path.getsize(tar_path),
            "sha256": digest,
            "recipients": list(cfg.recipients),
            "signer": cfg.signing_key,
        }
        with open(os.path.join(partial, names["summary"]), "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
        progress("verifying before publishing")
        # Read back from the disk (against the digest taken while writing it), the archive, the signature and the id
        # and host it signs: the checks every restore makes.
        staged = SetInfo(set_id, partial, now.isoformat(), summary["size"], digest, True)
        with OpenedSet(staged) as opened:
            _verify_opened(opened, home, [cfg.signing_key], None, [], {}, False, cfg.host)
        # On the disk before the rename publishes it: a crash after the rename never leaves a set of empty files.
        for name in os.listdir(partial):
            os.chmod(os.path.join(partial, name), 0o600)
            _fsync_file(os.path.join(partial, name))
        _fsync_dir(partial)
        final = os.path.join(cfg.backup_dir, set_id)
        os.rename(partial, final)
        _fsync_dir(cfg.backup_dir)
        _atomic_write(os.path.join(cfg.backup_dir, LAST_GOOD), set_id + "\n")
        progress(f"published {final}")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    keep, delete = retention_plan(list_sets(cfg.backup_dir), now, cfg.keep_days, cfg.min_keep, last_run_ok=True)
    for old in delete:
        shutil.rmtree(os.path.join(cfg.backup_dir, old))
    summary.update(path=final, tables=tables, retention={"kept": keep, "deleted": delete})
    return summary


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encrypt_bytes(home: str, recipients: list[str], data: bytes, out_path: str) -> None:
    result = subprocess.run(
        gpg_encrypt_command(home, recipients, out_path), input=data, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise BackupError("encrypt", result.stderr.decode(errors="replace").strip())


def git_head_commit(git_dir: str) -> str | None:
    """The commit HEAD of a repository points at, read from its files (no git: the backup user reads the bot's
    repository through CAP_DAC_READ_SEARCH, which git's access() checks ignore, and runs nothing of the bot's)."""
    hex_digits = set("0123456789abcdef")

    def commit_or_none(text: str) -> str | None:
        text = text.strip()
        return text if len(text) == 40 and set(text) <= hex_digits else None

    try:
        with open(os.path.join(git_dir, "HEAD"), encoding="utf-8") as handle:
            head = handle.read().strip()
        if not head.startswith("ref: "):
            return commit_or_none(head)
        ref = head[5:].strip()
        if ".." in ref.split("/"):
            return None
        try:
            with open(os.path.join(git_dir, ref), encoding="utf-8") as handle:
                return commit_or_none(handle.read())
        except FileNotFoundError:
            with open(os.path.join(git_dir, "packed-refs"), encoding="utf-8") as handle:
                for line in handle:
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return commit_or_none(parts[0])
    except OSError:
        return None
    return None


def _manifest(cfg, set_id, now, pg_version, dump, tables, files, env, cluster=(None, None)) -> dict:
    commit = git_head_commit(os.path.join(cfg.bot_home, "config", ".git"))
    portfolio = None
    state = os.path.join(cfg.bot_home, "data", "portfolio_state.json")
    if os.path.exists(state):
        with open(state, encoding="utf-8") as handle:
            portfolio = json.load(handle).get("portfolio_value")
    return {
        "id": set_id,
        "created_at": now.isoformat(),
        "host": cfg.host,
        "tool_version": TOOL_VERSION,
        "postgresql_version": pg_version,
        "database": {
            "name": cfg.db_name,
            "system_id": cluster[0],
            "wal_lsn": cluster[1],
            "format": "pg_dump custom, zstd",
            "size": dump["size"],
            "sha256": dump["sha256"],
            "tables": tables,
        },
        "files": files,
        "portfolio_value": portfolio,
        "config_git_commit": commit,
        "key_fingerprints": {
            "env": {key: fingerprint(env[key]) for key in ENV_KEYS_FINGERPRINTED if key in env},
            "wallet_pubkey": wallet_pubkey(cfg.wallet_path),
        },
        "recipients": list(cfg.recipients),
        "signer": cfg.signing_key,
    }


# --------------------------------------------------------------------------------------------------- verify
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


def _opened(source: SetInfo | OpenedSet) -> tuple[OpenedSet, bool]:
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


def _decrypt_member(opened: OpenedSet, member: str, gnupg_home: str, then=None, stdout=None):
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
    pipeline, feeder = _decrypt_member(opened, MEMBERS[0], gnupg_home)
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
    pipeline, feeder = _decrypt_member(opened, member, gnupg_home, then)
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
    opened, owned = _opened(source)
    try:
        _verify_opened(opened, keyring_home, signers, decrypt_home, checks, found, check_database, expected_host)
    finally:
        if owned:
            opened.close()
    return checks


def _verify_opened(opened, keyring_home, signers, decrypt_home, checks, found, check_database, expected_host):
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
        files = _read_files(opened, gnupg_home)
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


def _read_files(opened: OpenedSet, gnupg_home: str) -> dict[str, bytes]:
    pipeline, feeder = _decrypt_member(opened, MEMBERS[2], gnupg_home, [["zstd", "-q", "-d", "-c"]])
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


# -------------------------------------------------------------------------------------------------- restore
def restore_files(source: SetInfo | OpenedSet, gnupg_home: str, dest_dir: str) -> list[dict]:
    """Decrypt the files member into dest_dir (created 0700), each checked against the manifest. Pass the OpenedSet
    that verify_set checked."""
    opened, owned = _opened(source)
    try:
        manifest = decrypt_manifest(opened, gnupg_home)
        files = _read_files(opened, gnupg_home)
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
    opened, owned = _opened(source)
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
    pipeline, feeder = _decrypt_member(opened, MEMBERS[1], gnupg_home, [["zstd", "-q", "-d", "-c"]])

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


# ------------------------------------------------------------------------------------------------------ cli
def cli_main(argv: list[str]) -> int:
    """mojorust-backup create|list|status|offsite-push|check-stale: what the systemd timers run on the host.

    Run as root (Ansible's modules, a test), `create` and `offsite-push` first drop to the backup user, as their
    units run them: a set is always made and owned by that user. `--config -` reads the settings from stdin."""
    import argparse

    parser = argparse.ArgumentParser(prog="mojorust-backup", description=cli_main.__doc__)
    parser.add_argument("command", choices=["create", "list", "status", "offsite-push", "check-stale"])
    parser.add_argument("--config", default="/etc/mojorust-backup/config.json")
    parser.add_argument("--offsite-config", default="/etc/mojorust-backup/offsite.json")
    parser.add_argument("--owner", default="mojorust-backup.timer", help="who started this run (shown to others)")
    parser.add_argument("--at", help="make the set as of this UTC time (ISO 8601): drills with a faked clock")
    parser.add_argument("--json", action="store_true", help="the whole result as JSON on the last line")
    args = parser.parse_args(argv)
    try:
        if args.config == "-":
            settings = json.load(sys.stdin)
        else:
            with open(args.config, encoding="utf-8") as handle:
                settings = json.load(handle)
        cfg = Config.from_dict(settings)
        if args.command in ("create", "offsite-push") and os.geteuid() == 0 and cfg.backup_user != "root":
            return _run_as_backup_user(cfg, settings, args)
        if args.command == "create":
            at = datetime.fromisoformat(args.at).astimezone(UTC).replace(microsecond=0) if args.at else None
            summary = create_set(cfg, owner=args.owner, now=at, progress=_say)
            keys = ("id", "path", "size", "sha256", "duration_seconds", "retention")
            _say(json.dumps(summary if args.json else {k: summary[k] for k in keys}))
        elif args.command == "offsite-push":
            try:
                import offsite  # beside this file on the host, deployed by the offsite role
            except ImportError:
                from ansible_collections.mojorust.dr.plugins.module_utils import offsite

            with open(args.offsite_config, encoding="utf-8") as handle:
                remote = offsite.OffsiteConfig.from_dict(json.load(handle))
            result = offsite.push_all(remote, cfg, progress=_say)
            _say(json.dumps(result))
        elif args.command == "check-stale":
            problems = stale_problems(cfg, datetime.now(UTC), os.path.exists(args.offsite_config))
            if not problems:
                _say("backups are fresh")
                return 0
            message = f"STALE BACKUPS on {cfg.host}: " + "; ".join(problems)
            note = send_alert(cfg, message)
            _say(message + (f" ({note})" if note else ""))
            return 1
        elif args.command == "list":
            for item in list_sets(cfg.backup_dir):
                _say(f"{item.id}  {item.size:>12}  {'good' if item.good else 'BAD'}  {item.sha256[:16]}")
        else:
            with open(os.path.join(cfg.backup_dir, STATUS_FILE), encoding="utf-8") as handle:
                sys.stdout.write(handle.read())
        return 0
    except BackupError as error:
        _say(f"mojorust-backup: {error.check} failed: {error.message}")
        return 1
    except (OSError, ValueError) as error:
        _say(f"mojorust-backup: {error}")
        return 1


def _say(line: str) -> None:
    """A line on stdout, flushed: what the host command reports (journald reads it as it comes)."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def _run_as_backup_user(cfg: Config, settings: dict, args) -> int:
    """This command again, as the backup user (settings on stdin, so a file only root reads works too)."""
    again = [args.command, "--owner", args.owner, "--offsite-config", args.offsite_config, "--config", "-"]
    again += (["--at", args.at] if args.at else []) + (["--json"] if args.json else [])
    command = drop_privileges_argv(cfg, [sys.executable, os.path.abspath(sys.argv[0]), *again])
    return subprocess.run(command, input=json.dumps(settings).encode(), check=False).returncode


def set_info_dict(set_info: SetInfo) -> dict:
    return asdict(set_info)
