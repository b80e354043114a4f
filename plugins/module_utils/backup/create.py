"""Making a set: dump and files streamed through zstd and gpg, signed, verified, published atomically."""

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
import threading
import time
from datetime import datetime, timedelta

from ..wallet import wallet_pubkey
from .config import BackupError, Config, fingerprint, now_utc, read_env
from .gpg import encrypt_bytes, gpg_encrypt_command, gpg_sign_command, keyring
from .hostdir import BackupLock, check_backup_dir
from .pgstats import db_connect, pg_client_args, table_stats
from .pipeline import CHUNK, HashingWriter, Pipeline, atomic_write, fsync_dir, fsync_file, pump
from .sets import ID_FORMAT, LAST_GOOD, MEMBERS, SetInfo, list_sets, retention_plan, set_files
from .status import send_alert, write_status
from .verify import OpenedSet, verify_opened

TOOL_VERSION = "mojorust-backup 1.0"
ENV_KEYS_FINGERPRINTED = (
    "HELIUS_API_KEY",
    "QUICKNODE_API_KEY",
    "INFISICAL_TOKEN",
    "DB_PASSWORD",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
)


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


def free_second(backup_dir: str, now: datetime, clock=now_utc, sleep=time.sleep) -> datetime:
    """`now`, or when a set already has its second as its id (a run that ended within the same second), the next
    second, waited for: a set's id is its UTC second. Gives up after two seconds (a set from a clock ahead)."""
    for _attempt in range(3):
        if not os.path.exists(os.path.join(backup_dir, now.strftime(ID_FORMAT))):
            break
        sleep(max(0.0, 1.0 - now.microsecond / 1_000_000) + 0.01)
        now = clock()
    return now


def create_set(cfg: Config, owner: str = "mojorust-backup", now: datetime | None = None, progress=None) -> dict:
    """Make one set, publish it atomically, apply retention. Raises BackupError; alerts on failure."""
    progress = progress or (lambda message: None)
    started = time.monotonic()
    asked_now = now
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
            if asked_now is None:  # under the lock, no other run takes the second chosen here
                now = free_second(cfg.backup_dir, now)
                set_id = now.strftime(ID_FORMAT)
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
            write_status(cfg, {"last_run_at": now.isoformat(), "last_result": "failed", "last_error": message})
        except OSError as status_error:
            note = "; ".join(filter(None, [note, f"status file not written: {status_error.strerror}"]))
        if isinstance(error, BackupError):
            error.message += f" ({note})" if note else ""
            raise error from None
        raise
    summary["duration_seconds"] = round(time.monotonic() - started, 3)
    write_status(
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
        encrypt_bytes(home, cfg.recipients, json.dumps(manifest, indent=2).encode(), os.path.join(partial, MEMBERS[0]))
        tar_path = os.path.join(partial, names["tar"])
        # The archive's sha256 is taken as it is written: no second read of it.
        with open(tar_path, "wb") as raw:
            hashing = HashingWriter(raw)
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
            verify_opened(opened, home, [cfg.signing_key], None, [], {}, False, cfg.host)
        # On the disk before the rename publishes it: a crash after the rename never leaves a set of empty files.
        for name in os.listdir(partial):
            os.chmod(os.path.join(partial, name), 0o600)
            fsync_file(os.path.join(partial, name))
        fsync_dir(partial)
        final = os.path.join(cfg.backup_dir, set_id)
        os.rename(partial, final)
        fsync_dir(cfg.backup_dir)
        atomic_write(os.path.join(cfg.backup_dir, LAST_GOOD), set_id + "\n")
        progress(f"published {final}")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    keep, delete = retention_plan(list_sets(cfg.backup_dir), now, cfg.keep_days, cfg.min_keep, last_run_ok=True)
    for old in delete:
        shutil.rmtree(os.path.join(cfg.backup_dir, old))
    summary.update(path=final, tables=tables, retention={"kept": keep, "deleted": delete})
    return summary


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
