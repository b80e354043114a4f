"""mojorust-dr: run disaster drills against the lab and write reports."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import drill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mojorust-dr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("drill", help="run drills and write reports/drill-<UTC>.{json,md}")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every scenario")
    which.add_argument("--scenario", action="append", metavar="NAME", help="one scenario (repeatable)")
    run.add_argument("--reports", type=Path, default=drill.ROOT / "reports", help="report directory")
    run.add_argument(
        "--telegram",
        metavar="API_BASE",
        help="send the summary as one Telegram message (token and chat from TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID); "
        "'lab' sends it to the lab's Telegram stand-in on drlab-edge",
    )
    commands.add_parser("scenarios", help="list the scenarios")
    args = parser.parse_args(argv)
    if args.command == "scenarios":
        for s in drill.scenarios().values():
            print(f"{s.name:20} {s.plan_section:14} {s.title}")
        return 0
    names = list(drill.scenarios()) if args.all else args.scenario
    # The lab's podman settings (runc, explicit ulimits, netavark): make exports them; run directly, the drill's
    # containers would otherwise fail with "error setting rlimit ... operation not permitted".
    os.environ.setdefault("CONTAINERS_CONF", str(drill.ROOT / "lab" / "containers.conf"))
    telegram = None
    if args.telegram == "lab":
        telegram = drill.lab_telegram()
    elif args.telegram:
        token, chat = os.environ.get("TELEGRAM_BOT_TOKEN", ""), os.environ.get("TELEGRAM_CHAT_ID", "")
        if not token or not chat:
            parser.error("--telegram needs TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID in the environment")
        telegram = (args.telegram, token, chat)
    return drill.run(names, args.reports, telegram)


if __name__ == "__main__":
    raise SystemExit(main())
