#!/usr/bin/env python3
"""drlab-edge: the lab host that stands in for the outside world the trading bot talks to.

Telegram Bot API, RPC providers (Helius, QuickNode, Jupiter), a Solana JSON-RPC node, Infisical token
revocation, and an admin API for tests and drills. What it receives is recorded under --state-dir in
append-only JSON lines files; admin state lives in admin.json, written atomically. Both survive a restart.
Raw keys and tokens are never stored or logged: only the first 16 hex digits of their sha256.
Python 3.11 standard library, plus python3-cryptography to check a transaction's ed25519 signatures as a Solana node
does (a garbled or wrongly signed transaction is refused, never recorded as sent); see README.md for the endpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PROVIDERS = ("helius", "quicknode", "jupiter")
REVOCABLE = ("helius", "quicknode", "infisical", "telegram")
DOWNABLE = (*PROVIDERS, "infisical", "telegram", "rpc")
FILES = {"telegram": "telegram.jsonl", "api": "api.jsonl", "tx": "transactions.jsonl"}
ADMIN_FILE = "admin.json"
MAX_BODY = 1 << 20
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")
BOT_RE = re.compile(r"/bot([^/]+)/([A-Za-z]+)/?")
SOL_MINT = "So11111111111111111111111111111111111111112"
SYSTEM_PROGRAM = bytes(32)
TOKEN_PROGRAMS = ("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
FEE_LAMPORTS = 5000  # per signature, as on mainnet
BLOCKHASH_WINDOWS = 3  # a blockhash stays valid for this many windows of 150 slots (about a minute here)
USDC_MINT = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


class HttpError(Exception):
    def __init__(self, status: int, payload: object):
        super().__init__(status)
        self.status, self.payload = status, payload


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    # an unencoded "+00:00" in a query string arrives as " 00:00"
    parsed = datetime.fromisoformat(value.strip().replace(" ", "+"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def b58encode(data: bytes) -> str:
    n, out = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    n = 0
    for char in text:
        if char not in B58:
            raise ValueError(f"{text!r} is not base58")
        n = n * 58 + B58.index(char)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def blockhash_of(window: int) -> str:
    return b58encode(hashlib.sha256(str(window).encode()).digest())


class TxError(Exception):
    """A transaction a Solana node refuses: a JSON-RPC error code and message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _short_vec(raw: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(raw):
            raise TxError(-32602, "failed to deserialize the transaction: short vector cut off")
        byte = raw[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def parse_transaction(raw: bytes) -> dict:
    """A legacy transaction: signatures, header, account keys, blockhash, instructions; its signatures checked against
    the signing accounts (TxError -32003 otherwise, as a node answers)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        count, at = _short_vec(raw, 0)
        signatures = [raw[at + 64 * i : at + 64 * (i + 1)] for i in range(count)]
        at += 64 * count
        message = raw[at:]
        required, _readonly_signed, _readonly = message[0], message[1], message[2]
        keys_count, pos = _short_vec(message, 3)
        keys = [message[pos + 32 * i : pos + 32 * (i + 1)] for i in range(keys_count)]
        pos += 32 * keys_count
        blockhash = message[pos : pos + 32]
        pos += 32
        instructions = []
        n_instructions, pos = _short_vec(message, pos)
        for _ in range(n_instructions):
            program = message[pos]
            n_accounts, pos = _short_vec(message, pos + 1)
            accounts = list(message[pos : pos + n_accounts])
            pos += n_accounts
            n_data, pos = _short_vec(message, pos)
            instructions.append({"program": keys[program], "accounts": [keys[i] for i in accounts],
                                 "data": message[pos : pos + n_data]})  # fmt: skip
            pos += n_data
    except (IndexError, ValueError) as error:
        raise TxError(-32602, f"failed to deserialize the transaction: {error}") from None
    if count == 0 or count != required or any(len(sig) != 64 for sig in signatures) or len(blockhash) != 32:
        raise TxError(-32602, "failed to deserialize the transaction: signatures do not match its header")
    for signature, key in zip(signatures, keys[:required], strict=True):
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        except (InvalidSignature, ValueError):
            raise TxError(-32003, "Transaction signature verification failure") from None
    return {"signature": b58encode(signatures[0]), "payer": b58encode(keys[0]), "blockhash": b58encode(blockhash),
            "instructions": instructions, "fee": FEE_LAMPORTS * count}  # fmt: skip


def transfers_of(tx: dict) -> list[tuple[str, str, int]]:
    """(from, to, lamports) of each System Program transfer."""
    moves = []
    for instruction in tx["instructions"]:
        data = instruction["data"]
        if instruction["program"] == SYSTEM_PROGRAM and len(data) == 12 and int.from_bytes(data[:4], "little") == 2:
            source, target = (b58encode(k) for k in instruction["accounts"][:2])
            moves.append((source, target, int.from_bytes(data[4:], "little")))
    return moves


def hcloud_server(name: str, entry: dict) -> dict:
    """A server as the Hetzner Cloud API describes one (every field hetzner.hcloud.server reads)."""
    location = {"id": 1, "name": "fsn1", "description": "Falkenstein DC Park 1", "country": "DE", "city": "Falkenstein",
                "latitude": 50.47612, "longitude": 12.370071, "network_zone": "eu-central"}  # fmt: skip
    return {
        "id": entry["id"], "name": name, "status": entry["status"], "created": "2026-01-01T00:00:00+00:00",
        "public_net": {"ipv4": {"id": entry["id"], "ip": f"203.0.113.{entry['id'] % 250}", "blocked": False,
                                "dns_ptr": "static.example"},
                       "ipv6": None, "floating_ips": [], "firewalls": []},
        "private_net": [],
        "server_type": {"id": 1, "name": "cx32", "description": "CX32", "cores": 4, "memory": 8.0, "disk": 80,
                        "prices": [], "storage_type": "local", "cpu_type": "shared", "architecture": "x86",
                        "deprecation": None},
        "datacenter": {"id": 1, "name": "fsn1-dc14", "description": "Falkenstein 1 DC14", "location": location,
                       "server_types": {"supported": [1], "available": [1], "available_for_migration": [1]}},
        "image": {"id": 1, "type": "system", "status": "available", "name": "debian-12", "description": "Debian 12",
                  "os_flavor": "debian", "os_version": "12", "architecture": "x86", "rapid_deploy": True,
                  "protection": {"delete": False}, "labels": {}, "created": "2026-01-01T00:00:00+00:00",
                  "deleted": None, "deprecated": None, "disk_size": 5, "image_size": None, "bound_to": None,
                  "created_from": None},
        "iso": None, "rescue_enabled": False, "locked": False, "backup_window": None,
        "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21990232555520,
        "protection": {"delete": False, "rebuild": False}, "labels": {}, "volumes": [], "load_balancers": [],
        "primary_disk_size": 80, "placement_group": None,
    }  # fmt: skip


def hcloud_action(resource: int, command: str, action_id: int | None = None) -> dict:
    """A finished action (the stand-in does everything at once)."""
    return {"id": action_id or resource * 1000 + 1, "command": command, "status": "success", "progress": 100,
            "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:01+00:00",
            "resources": [{"id": resource, "type": "server"}], "error": None}  # fmt: skip


def current_slot() -> int:
    return int(time.time() * 2.5) - 3_900_000_000  # 400 ms slots, mainnet-sized and monotonic


def safe_path(raw: str) -> str:
    """Request path for logs: no query string (Helius keys travel there), Telegram bot token masked."""
    return re.sub(r"^/bot[^/]+", "/bot<redacted>", urlsplit(raw).path)


def empty_admin() -> dict:
    return {
        "revoked": {p: [] for p in REVOCABLE},
        "down": {p: False for p in DOWNABLE},
        "balances": {},
        # owner -> [{pubkey, mint, amount, decimals, program}]: SPL token accounts a wallet holds
        "token_accounts": {},
        # signature -> slot of the transactions this node executed
        "signatures": {},
        # Hetzner Cloud servers (name -> {id, status}) and the fingerprints of the API tokens that acted on them
        "hcloud": {},
    }


class State:
    """Admin state plus the append-only record files; one re-entrant lock serialises all writes."""

    def __init__(self, state_dir: str | os.PathLike):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.admin = empty_admin()
        admin_path = self.dir / ADMIN_FILE
        if admin_path.exists():  # written atomically, so a parse error means tampering: fail loudly
            for key, value in json.loads(admin_path.read_text()).items():
                if key in self.admin:
                    self.admin[key].update(value)
        self.message_id = max((m.get("message_id", 0) for m in self.read("telegram")), default=0)

    def _save_admin(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".admin.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.admin, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / ADMIN_FILE)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def settle(self, tx: dict, slot: int) -> None:
        """The fee and the transfers of a checked transaction, all or nothing (TxError when a balance would go below
        zero, or when it was executed before)."""
        with self.lock:
            if tx["signature"] in self.admin["signatures"]:
                raise TxError(-32002, "Transaction simulation failed: This transaction has already been processed")
            balances = dict(self.admin["balances"])
            balances[tx["payer"]] = balances.get(tx["payer"], 0) - tx["fee"]
            for source, target, lamports in transfers_of(tx):
                balances[source] = balances.get(source, 0) - lamports
                balances[target] = balances.get(target, 0) + lamports
            if any(value < 0 for value in balances.values()):
                raise TxError(-32002, "Transaction simulation failed: Attempt to debit an account but found no record "
                              "of a prior credit, or insufficient funds")  # fmt: skip
            self.admin["balances"] = balances
            self.admin["signatures"][tx["signature"]] = slot
            self._save_admin()

    def snapshot(self, key: str | None = None) -> dict:
        with self.lock:
            return json.loads(json.dumps(self.admin if key is None else self.admin[key]))

    def update(self, section: str, key: str, value: object) -> None:
        with self.lock:
            self.admin[section][key] = value
            self._save_admin()

    def is_revoked(self, provider: str, fp: str | None) -> bool:
        with self.lock:
            return fp in self.admin["revoked"].get(provider, [])

    def is_down(self, provider: str) -> bool:
        with self.lock:
            return bool(self.admin["down"].get(provider))

    def set_revoked(self, provider: str, fp: str, revoked: bool) -> None:
        with self.lock:
            keys = set(self.admin["revoked"].get(provider, []))
            keys = keys | {fp} if revoked else keys - {fp}
            self.update("revoked", provider, sorted(keys))

    def append(self, kind: str, record: dict) -> None:
        with self.lock, open(self.dir / FILES[kind], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def read(self, kind: str) -> list[dict]:
        with self.lock:
            try:
                text = (self.dir / FILES[kind]).read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
        records = []
        for line in text.splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a torn last line after a crash
                records.append(json.loads(line))
        return [r for r in records if isinstance(r, dict)]

    def clear(self, kind: str) -> int:
        with self.lock:
            count = len(self.read(kind))
            (self.dir / FILES[kind]).unlink(missing_ok=True)
            return count

    def reset(self) -> None:
        with self.lock:
            self.admin = empty_admin()
            self._save_admin()
            for kind in FILES:
                self.clear(kind)
            self.message_id = 0


def tg_error(code: int, description: str) -> tuple[int, dict]:
    return code, {"ok": False, "error_code": code, "description": description}


def rpc_error(rid: object, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def jupiter_quote(query: dict) -> dict:
    amount = int(query["amount"]) if query.get("amount", "").isdigit() else 1_000_000_000
    slippage = int(query["slippageBps"]) if query.get("slippageBps", "").isdigit() else 50
    in_mint, out_mint = query.get("inputMint", SOL_MINT), query.get("outputMint", USDC_MINT)
    out_amount = amount * 150 // 1000  # 1 SOL (1e9 lamports) ~ 150 USDC (1e6 units)
    return {
        "inputMint": in_mint,
        "inAmount": str(amount),
        "outputMint": out_mint,
        "outAmount": str(out_amount),
        "otherAmountThreshold": str(out_amount * (10_000 - slippage) // 10_000),
        "swapMode": query.get("swapMode", "ExactIn"),
        "slippageBps": slippage,
        "priceImpactPct": "0.0001",
        "routePlan": [
            {
                "swapInfo": {"label": "drlab", "inputMint": in_mint, "outputMint": out_mint},
                "percent": 100,
            }
        ],
        "contextSlot": current_slot(),
        "timeTaken": 0.002,
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "drlab-edge/1"
    error_content_type = "application/json"  # malformed requests and unsupported methods answer JSON too
    error_message_format = '{"error": "http %(code)d"}'

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # the default lines carry query strings and bot tokens
        pass

    def log_request(self, code="-", size="-"):
        if self.server.log_requests:
            path, code = safe_path(getattr(self, "path", "") or ""), getattr(code, "value", code)
            sys.stderr.write(f"{self.client_address[0]} {self.command} {path} {code}\n")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    @property
    def state(self) -> State:
        return self.server.state

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            length = self.headers.get("Content-Length", "0").strip() or "0"
            if not length.isdigit():
                raise HttpError(400, {"error": "bad Content-Length"})
            length = int(length)
            if length > MAX_BODY:
                raise HttpError(413, {"error": "request body too large"})
            self.body = self.rfile.read(length) if length > 0 else b""
            status, payload = self._route(method, url.path)
        except HttpError as exc:
            status, payload = exc.status, exc.payload
        except Exception as exc:  # keep answering; never echo request data
            sys.stderr.write(f"drlab-edge: internal error {type(exc).__name__}\n")
            status, payload = 500, {"error": "internal error"}
        data = json.dumps(payload).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def _allow(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(405, {"error": "method not allowed", "allowed": list(allowed)})

    def _json(self) -> object:
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HttpError(400, {"error": "invalid JSON body"}) from None

    def _json_object(self) -> dict:
        body = self._json()
        if not isinstance(body, dict):
            raise HttpError(400, {"error": "expected a JSON object"})
        return body

    def _params(self) -> dict:
        """Query, form or JSON parameters, as Telegram accepts them."""
        params = dict(self.query)
        if not self.body:
            return params
        if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            form = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
            return params | {k: v[-1] for k, v in form.items()}
        try:
            body = json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HttpError(*tg_error(400, "Bad Request: can't parse JSON object")) from None
        return params | body if isinstance(body, dict) else params

    def _route(self, method: str, path: str) -> tuple[int, object]:
        if path == "/health":
            self._allow(method, "GET")
            return 200, {"status": "ok"}
        if match := BOT_RE.fullmatch(path):
            self._allow(method, "GET", "POST")
            return self._telegram(match[1], match[2])
        if path == "/telegram/messages":
            self._allow(method, "GET", "DELETE")
            return self._messages(method)
        if path == "/rpc":
            self._allow(method, "POST")
            if self.state.is_down("rpc"):
                return 503, {"error": "rpc unavailable"}
            return 200, self._rpc(None)
        if path.startswith("/admin/"):
            return self._admin(method, path.removeprefix("/admin/"))
        top = path.lstrip("/").split("/")[0]
        if top in PROVIDERS:
            self._allow(method, "GET", "POST")
            return self._provider(method, top, path)
        if top == "infisical":
            return self._infisical(method, path)
        if top == "hcloud":
            return self._hcloud(method, path.removeprefix("/hcloud/v1"))
        return 404, {"error": "not found"}

    # A Hetzner Cloud API stand-in (https://docs.hetzner.cloud): enough for hetzner.hcloud.server to find a server by
    # name and power it off (the fence of an old server that does not answer). Servers come from /admin/hcloud_server.
    def _hcloud(self, method: str, path: str) -> tuple[int, object]:
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token:
            return 401, {"error": {"code": "unauthorized", "message": "unable to authenticate"}}
        servers = self.state.snapshot("hcloud")
        by_id = {entry["id"]: name for name, entry in servers.items()}
        if path == "/servers" and method == "GET":
            wanted = self.query.get("name")
            listed = [hcloud_server(n, e) for n, e in sorted(servers.items()) if wanted in (None, n)]
            pagination = {"page": 1, "per_page": 50, "previous_page": None, "next_page": None,
                          "last_page": 1, "total_entries": len(listed)}  # fmt: skip
            return 200, {"servers": listed, "meta": {"pagination": pagination}}
        parts = path.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "servers" and parts[1].isdigit() and int(parts[1]) in by_id:
            name = by_id[int(parts[1])]
            if len(parts) == 2 and method == "GET":
                return 200, {"server": hcloud_server(name, servers[name])}
            if parts[2:] == ["actions", "poweroff"] and method == "POST":
                self.state.update("hcloud", name, servers[name] | {"status": "off", "by": fingerprint(token)})
                return 201, {"action": hcloud_action(int(parts[1]), "stop_server")}
        if len(parts) == 2 and parts[0] == "actions" and parts[1].isdigit() and method == "GET":
            return 200, {"action": hcloud_action(0, "stop_server", int(parts[1]))}
        return 404, {"error": {"code": "not_found", "message": "not found"}}

    def _telegram(self, token: str, api_method: str) -> tuple[int, dict]:
        fp = fingerprint(token)
        if self.state.is_down("telegram"):
            return tg_error(503, "Service Unavailable")
        if self.state.is_revoked("telegram", fp):
            return tg_error(401, "Unauthorized")
        if api_method == "getMe":
            bot = {"id": int(fp[:8], 16), "is_bot": True, "first_name": "drlab", "username": "drlab_bot"}
            return 200, {"ok": True, "result": bot}
        if api_method != "sendMessage":
            return tg_error(404, "Not Found")
        params = self._params()
        chat_id, text = params.get("chat_id"), params.get("text")
        if chat_id is None or chat_id == "":
            return tg_error(400, "Bad Request: chat_id is empty")
        if text is None or not str(text).strip():
            return tg_error(400, "Bad Request: message text is empty")
        text = str(text)
        if isinstance(chat_id, str) and re.fullmatch(r"-?\d+", chat_id):
            chat_id = int(chat_id)
        with self.state.lock:
            self.state.message_id += 1
            message_id = self.state.message_id
            record = {"ts": now_iso(), "token_sha256": fp, "chat_id": chat_id, "text": text}
            self.state.append("telegram", record | {"message_id": message_id})
        result = {"message_id": message_id, "chat": {"id": chat_id}, "date": int(time.time()), "text": text}
        return 200, {"ok": True, "result": result}

    def _messages(self, method: str) -> tuple[int, object]:
        if method == "DELETE":
            return 200, {"ok": True, "deleted": self.state.clear("telegram")}
        messages = self.state.read("telegram")
        if since := self.query.get("since"):
            try:
                cutoff = parse_iso(since)
                messages = [m for m in messages if parse_iso(m["ts"]) >= cutoff]
            except (ValueError, KeyError):
                raise HttpError(400, {"error": "since must be an ISO 8601 timestamp"}) from None
        if contains := self.query.get("contains"):
            messages = [m for m in messages if contains in str(m.get("text", ""))]
        return 200, messages

    def _provider(self, method: str, provider: str, path: str) -> tuple[int, object]:
        key = self.query.get("api-key") if provider == "helius" else self.headers.get("x-api-key")
        fp = fingerprint(key) if key else None
        if self.state.is_down(provider):
            status, payload = 503, {"error": f"{provider} unavailable"}
        elif provider != "jupiter" and not key:
            status, payload = 401, {"error": "missing api key"}
        elif provider != "jupiter" and self.state.is_revoked(provider, fp):
            status, payload = 401, {"error": "api key revoked"}
        elif method == "POST" and self.body and self.body.lstrip()[:1] in (b"{", b"["):
            status, payload = 200, self._rpc(provider)
        elif provider == "jupiter" and path.rstrip("/").endswith("/quote"):
            status, payload = 200, jupiter_quote(self.query)
        else:
            status, payload = 200, {"status": "ok", "provider": provider}
        client = self.client_address[0]
        record = {"ts": now_iso(), "provider": provider, "path": path, "key_sha256": fp, "status": status}
        self.state.append("api", record | {"client": client})
        return status, payload

    def _rpc(self, provider: str | None) -> object:
        try:
            body = json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return rpc_error(None, -32700, "Parse error")
        if isinstance(body, list):
            answers = [self._rpc_call(req, provider) for req in body]
            return answers or rpc_error(None, -32600, "Invalid request")
        return self._rpc_call(body, provider)

    def _rpc_call(self, req: object, provider: str | None) -> dict:
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            return rpc_error(None, -32600, "Invalid request")
        rid, method, params = req.get("id"), req["method"], req.get("params", [])
        if not isinstance(params, list):
            return rpc_error(rid, -32602, "Invalid params: expected an array")
        slot = current_slot()
        if method == "getHealth":
            result = "ok"
        elif method == "getSlot":
            result = slot
        elif method == "getBalance":
            if not params or not isinstance(params[0], str):
                return rpc_error(rid, -32602, "Invalid params: expected [pubkey]")
            lamports = self.state.snapshot("balances").get(params[0], 0)
            result = {"context": {"slot": slot}, "value": lamports}
        elif method == "getLatestBlockhash":
            value = {"blockhash": blockhash_of(slot // 150), "lastValidBlockHeight": slot + 150}
            result = {"context": {"slot": slot}, "value": value}
        elif method == "sendTransaction":
            if not params or not isinstance(params[0], str) or not params[0]:
                return rpc_error(rid, -32602, "Invalid params: expected [transaction, config]")
            opts = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
            try:
                result = self._execute(params[0], opts.get("encoding") or "base58", slot, provider)
            except TxError as error:
                return rpc_error(rid, error.code, error.message)
        elif method == "getSignatureStatuses":
            if not params or not isinstance(params[0], list):
                return rpc_error(rid, -32602, "Invalid params: expected [[signature, ...]]")
            executed = self.state.snapshot("signatures")
            value = [
                {"slot": executed[sig], "confirmations": None, "err": None, "status": {"Ok": None},
                 "confirmationStatus": "finalized"} if sig in executed else None
                for sig in params[0]
            ]  # fmt: skip
            result = {"context": {"slot": slot}, "value": value}
        elif method == "getTokenAccountsByOwner":
            if len(params) < 2 or not isinstance(params[0], str) or not isinstance(params[1], dict):
                return rpc_error(rid, -32602, "Invalid params: expected [owner, {programId|mint}, config]")
            accounts = self.state.snapshot("token_accounts").get(params[0], [])
            wanted_program, wanted_mint = params[1].get("programId"), params[1].get("mint")
            value = [
                {"pubkey": a["pubkey"], "account": {"owner": a["program"], "lamports": 2039280, "data": {
                    "program": "spl-token", "parsed": {"type": "account", "info": {
                        "mint": a["mint"], "owner": params[0], "tokenAmount": {
                            "amount": str(a["amount"]), "decimals": a["decimals"],
                            "uiAmountString": str(a["amount"] / 10 ** a["decimals"])}}}}}}
                for a in accounts
                if (wanted_program is None or a["program"] == wanted_program)
                and (wanted_mint is None or a["mint"] == wanted_mint)
            ]  # fmt: skip
            result = {"context": {"slot": slot}, "value": value}
        elif provider:
            result = {"provider": provider, "method": method}
        else:
            return rpc_error(rid, -32601, "Method not found")
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _execute(self, encoded: str, encoding: str, slot: int, provider: str | None) -> str:
        """What a node does with sendTransaction: decode, check every signature and the blockhash, move the lamports
        of its System Program transfers (plus the fee) or refuse; only an executed transaction is recorded."""
        import base64
        import binascii

        try:
            raw = base64.b64decode(encoded, validate=True) if encoding == "base64" else b58decode(encoded)
        except (binascii.Error, ValueError):
            raise TxError(-32602, f"failed to decode the transaction as {encoding}") from None
        tx = parse_transaction(raw)
        if tx["blockhash"] not in {blockhash_of(slot // 150 - i) for i in range(BLOCKHASH_WINDOWS)}:
            raise TxError(-32002, "Transaction simulation failed: Blockhash not found")
        self.state.settle(tx, slot)
        record = {"ts": now_iso(), "signature": tx["signature"], "tx": encoded, "encoding": encoding,
                  "transfers": [list(m) for m in transfers_of(tx)], "fee": tx["fee"]}  # fmt: skip
        self.state.append("tx", record | {"via": provider or "rpc", "client": self.client_address[0]})
        return tx["signature"]

    def _admin(self, method: str, name: str) -> tuple[int, object]:
        if name in ("state", "revoked"):
            self._allow(method, "GET")
            return 200, self.state.snapshot(None if name == "state" else "revoked")
        if name not in ("revoke", "down", "balance", "token_accounts", "hcloud_server", "reset"):
            return 404, {"error": "not found"}
        self._allow(method, "POST")
        if name == "reset":
            self.state.reset()
            return 200, {"reset": True}
        body = self._json_object()
        provider = body.get("provider")
        if name == "revoke":
            fp = str(body.get("key_sha256", "")).lower()
            if provider not in REVOCABLE or not FINGERPRINT_RE.fullmatch(fp):
                raise HttpError(400, {"error": f"need provider in {list(REVOCABLE)} and key_sha256 (16 hex)"})
            revoked = body.get("revoked", True) is not False
            self.state.set_revoked(provider, fp, revoked)
            return 200, {"revoked": revoked, "provider": provider, "key_sha256": fp}
        if name == "down":
            if provider not in DOWNABLE or not isinstance(body.get("down"), bool):
                raise HttpError(400, {"error": f"need provider in {list(DOWNABLE)} and down (bool)"})
            self.state.update("down", provider, body["down"])
            return 200, {"provider": provider, "down": body["down"]}
        if name == "hcloud_server":
            server, status = body.get("name"), body.get("status", "running")
            if not isinstance(server, str) or not server or status not in ("running", "off"):
                raise HttpError(400, {"error": "need name and status (running or off)"})
            known = self.state.snapshot("hcloud")
            entry = known.get(server, {"id": 100 + len(known)}) | {"status": status}
            self.state.update("hcloud", server, entry)
            return 200, {"name": server, **entry}
        if name == "token_accounts":
            owner, accounts = body.get("owner"), body.get("accounts")
            keys = {"pubkey", "mint", "amount", "decimals"}
            if (
                not isinstance(owner, str)
                or not isinstance(accounts, list)
                or not all(isinstance(a, dict) and keys <= set(a) and type(a["amount"]) is int for a in accounts)
            ):
                raise HttpError(400, {"error": "need owner and accounts [{pubkey, mint, amount, decimals}]"})
            listed = [{**a, "program": a.get("program", TOKEN_PROGRAMS[0])} for a in accounts]
            self.state.update("token_accounts", owner, listed)
            return 200, {"owner": owner, "accounts": listed}
        pubkey, lamports = body.get("pubkey"), body.get("lamports")
        if not isinstance(pubkey, str) or not pubkey or type(lamports) is not int or lamports < 0:
            raise HttpError(400, {"error": "need pubkey (string) and lamports (integer >= 0)"})
        self.state.update("balances", pubkey, lamports)
        return 200, {"pubkey": pubkey, "lamports": lamports}

    def _infisical(self, method: str, path: str) -> tuple[int, object]:
        sub = path.removeprefix("/infisical").rstrip("/")
        if sub not in ("/api/v1/health", "/api/v1/auth/token/revoke"):
            return 404, {"error": "not found"}
        self._allow(method, "GET" if sub.endswith("health") else "POST")
        if self.state.is_down("infisical"):
            return 503, {"error": "infisical unavailable"}
        if sub.endswith("health"):
            return 200, {"status": "ok", "provider": "infisical"}
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token and self.body:  # the real API also takes {"accessToken": ...}
            token = str(self._json_object().get("accessToken") or "")
        if not token:
            return 401, {"error": "missing bearer token"}
        self.state.set_revoked("infisical", fingerprint(token), True)
        return 200, {"message": "revoked"}


class EdgeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: State, log_requests: bool = False):
        self.state, self.log_requests = state, log_requests
        super().__init__(address, Handler)


def make_server(host: str, port: int, state_dir: str | os.PathLike, log_requests: bool = False) -> EdgeServer:
    return EdgeServer((host, port), State(state_dir), log_requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--state-dir", default="/var/lib/drlab-edge")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.state_dir, log_requests=not args.quiet)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = server.server_address[:2]
    print(f"drlab-edge listening on {host}:{port}, state in {args.state_dir}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
