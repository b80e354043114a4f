"""The host command `mojorust-backup`: the only place that joins making sets and pushing them off-site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

from . import offsite
from .config import BackupError, Config
from .create import create_set
from .hostdir import drop_privileges_argv
from .sets import list_sets
from .status import STATUS_FILE, send_alert, stale_problems


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
