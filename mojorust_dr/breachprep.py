"""Drill helper for key_compromise: note the moment the breach begins, and write the new provider keys an operator
would have made by hand at each provider (random lab values), 0600 - the off-site bucket's new key pair among them,
made at the lab's S3 (its key management, with the lab's admin pair).

    python -m mojorust_dr.breachprep reports/breach-drill
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
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
        "OFFSITE_ACCESS_KEY_ID": f"AKIADRILL{secrets.token_hex(6).upper()}",
        "OFFSITE_SECRET_ACCESS_KEY": f"drill-offsite-{secrets.token_hex(16)}",
    }
    make_offsite_key(keys["OFFSITE_ACCESS_KEY_ID"], keys["OFFSITE_SECRET_ACCESS_KEY"])
    path = directory / "new-keys.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("---\nkey_rotation_new:\n" + "".join(f'  {k}: "{v}"\n' for k, v in keys.items()))


def make_offsite_key(access_key: str, secret_key: str, container: str = "drlab-offsite") -> None:
    """The new pair, made at the lab's S3 as an operator makes one at the provider (its /_drlab/ key management)."""
    inspect = subprocess.run(["podman", "inspect", container], capture_output=True, text=True, check=True)
    address = next(iter(json.loads(inspect.stdout)[0]["NetworkSettings"]["Networks"].values()))["IPAddress"]
    request = urllib.request.Request(
        f"http://{address}:9000/_drlab/keys/{access_key}",
        data=json.dumps({"secret_key": secret_key}).encode(),
        method="PUT",
        headers={"Authorization": "Bearer drlab-offsite-lab-only-secret-key-000001"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as answer:
        answer.read()


if __name__ == "__main__":
    prepare(Path(sys.argv[1]))
