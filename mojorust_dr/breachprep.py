"""Drill helper for key_compromise: note the moment the breach begins, and write the new provider keys an operator
would have made by hand at each provider (random lab values), 0600.

    python -m mojorust_dr.breachprep reports/breach-drill
"""

from __future__ import annotations

import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path


def prepare(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "breach-time").write_text(datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00") + "\n")
    keys = {
        "HELIUS_API_KEY": f"drill-helius-{secrets.token_hex(16)}",
        "QUICKNODE_API_KEY": f"drill-quicknode-{secrets.token_hex(16)}",
        "INFISICAL_TOKEN": f"drill-infisical-{secrets.token_hex(16)}",
        "TELEGRAM_BOT_TOKEN": f"700000003:drill-telegram-{secrets.token_hex(16)}",
    }
    path = directory / "new-keys.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("---\nkey_rotation_new:\n" + "".join(f'  {k}: "{v}"\n' for k, v in keys.items()))


if __name__ == "__main__":
    prepare(Path(sys.argv[1]))
