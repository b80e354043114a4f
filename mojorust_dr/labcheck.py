"""Check from this machine that the lab's bot answers at its DNS name: ask drlab-dns for bot.drlab.test, then GET
/health at that address. Used by the failover drills as their last phase (exit 0 when healthy)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import dns.message
import dns.query
import dns.rdatatype


def container_address(name: str, network: str = "drlab") -> str:
    out = subprocess.run(["podman", "inspect", name], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]


def resolve(name: str, server: str) -> str:
    answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.A), server, timeout=3)
    records = [r.address for rrset in answer.answer for r in rrset if rrset.rdtype == dns.rdatatype.A]
    if not records:
        raise LookupError(f"{name} has no A record at {server}")
    return records[0]


def bot_at_dns_name(name: str = "bot.drlab.test.", dns_container: str = "drlab-dns", timeout: float = 30) -> dict:
    """The /health answer of the bot at the address the name resolves to; raises when it is not healthy in time."""
    server = container_address(dns_container)
    deadline = time.monotonic() + timeout
    while True:
        address = resolve(name, server)
        try:
            with urllib.request.urlopen(f"http://{address}:8082/health", timeout=3) as response:
                health = json.load(response)
            if health.get("status") == "ok":
                return {"address": address, **health}
            problem = f"status {health.get('status')}"
        except OSError as error:
            problem = str(error)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bot at {name} ({address}) is not healthy: {problem}")
        time.sleep(1)


def main() -> int:
    try:
        health = bot_at_dns_name()
    except (LookupError, RuntimeError, OSError, subprocess.CalledProcessError) as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    print(f"bot.drlab.test -> {health['address']}: {health['status']}, {health['trades_total']} trades")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
