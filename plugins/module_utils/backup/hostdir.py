"""The backup directory on the host: who owns it, one run at a time (its lock), and the backup user's
privileges."""

from __future__ import annotations

import fcntl
import os
import stat

from .config import BackupError, Config, now_utc


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
