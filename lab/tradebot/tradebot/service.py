"""The running bot: logging, alerts, API polling, the HTTP server, the trading loop and main()."""

import argparse
import base64
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import db
from .config import Config, ConfigError, load_config
from .state import (
    EIGHT_PLACES,
    State,
    health,
    read_state_file,
    render_metrics,
    state_payload,
    write_state_file,
)

EX_CONFIG = 78
HTTP_TIMEOUT = 3
log = logging.getLogger("tradebot")


class LineFormatter(logging.Formatter):
    """'2026-11-25T18:00:00.123Z LEVEL message', with every known secret value masked."""

    def __init__(self, secrets=()):
        super().__init__()
        self.secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def format(self, record):
        moment = datetime.fromtimestamp(record.created, UTC)
        line = f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z {record.levelname} "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line


class DailyFileHandler(logging.Handler):
    """Appends to <dir>/trading-bot-YYYYMMDD.log, switching files when the UTC date changes."""

    def __init__(self, directory: Path):
        super().__init__()
        self.directory, self.day, self.stream = directory, None, None

    def emit(self, record):
        try:
            day = datetime.fromtimestamp(record.created, UTC).strftime("%Y%m%d")
            if day != self.day:
                self.close_stream()
                self.stream = open(self.directory / f"trading-bot-{day}.log", "a", encoding="utf-8")  # noqa: SIM115
                self.day = day
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def close_stream(self):
        if self.stream is not None:
            self.stream.close()
            self.stream, self.day = None, None

    def close(self):
        self.close_stream()
        super().close()


def setup_logging(home: Path | None, secrets=()) -> None:
    """stderr (the journal) always; <home>/logs too when home is given and writable."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    problem = None
    if home is not None:
        try:
            (home / "logs").mkdir(exist_ok=True)  # not parents: a mistyped --home is not created
            handlers.append(DailyFileHandler(home / "logs"))
        except OSError as exc:
            problem = f"cannot write {home / 'logs'} ({exc.strerror}); logging to stderr only"
    for old in list(log.handlers):
        log.removeHandler(old)
        old.close()
    formatter = LineFormatter(secrets)
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    if problem:
        log.warning(problem)


def reason(exc: BaseException) -> str:
    """Why a request failed, without the URL (it can carry a key or a token)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def http_call(url: str, body: dict | None = None, headers: dict | None = None) -> None:
    """GET (or POST JSON when body is given); raises unless the answer is 2xx."""
    data = None if body is None else json.dumps(body).encode()
    headers = dict(headers or {}, **({"Content-Type": "application/json"} if data else {}))
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
        response.read(1 << 16)


def in_background(what: str, url: str, body: dict, headers: dict | None = None) -> threading.Thread:
    def run():
        try:
            http_call(url, body, headers)
        except Exception as exc:
            log.warning("%s failed: %s", what, reason(exc))

    thread = threading.Thread(target=run, name=what, daemon=True)
    thread.start()
    return thread


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version, sys_version = "tradebot/1.0", ""

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/health":
                code, body = health(state)
                self.reply(code, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                self.reply(200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(state).encode())
            else:
                self.reply(404, "text/plain; charset=utf-8", b"not found\n")

        def reply(self, code: int, content_type: str, data: bytes) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, format, *args):  # no access log in the bot log
            pass

    return Handler


class Bot:
    def __init__(self, config: Config):
        self.config, settings = config, config.settings
        self.name, self.mode = settings["bot"]["name"], settings["bot"]["mode"]
        self.interval = float(settings["bot"]["trade_interval_seconds"])
        self.poll_interval = float(settings["bot"]["api_poll_seconds"])
        self.max_errors = settings["risk"]["circuit_breaker_max_errors"]
        self.max_open = settings["risk"]["max_open_positions"]
        self.initial = Decimal(str(settings["portfolio"]["initial_value"])).quantize(EIGHT_PLACES)
        self.state_path = config.path(settings["portfolio"]["state_file"])
        self.state = State(settings["bot"]["mode"], config.wallet_pubkey, config.fingerprints)
        self.state.portfolio_value = self.initial
        saved = read_state_file(self.state_path)  # shown until the database answers
        for key, value in (saved or {}).items():
            setattr(self.state, key, value)
        self.value_known = saved is not None
        self.db = db.Database(settings["database"], config.env["DB_PASSWORD"])
        self.stop = threading.Event()
        self.errors_in_row = 0
        self.blocked = self.save_failed = False
        self.host = socket.gethostname()

    def alert(self, text: str) -> threading.Thread | None:
        if not self.config.settings["alerts"]["enabled"]:
            return None
        if self.mode == "drill":
            log.info("alert not sent (mode drill): %s", text)
            return None
        base = self.config.settings["alerts"]["telegram_api_base"].rstrip("/")
        url = f"{base}/bot{self.config.env['TELEGRAM_BOT_TOKEN']}/sendMessage"
        return in_background("alert", url, {"chat_id": self.config.env["TELEGRAM_CHAT_ID"], "text": text})

    def poll_apis(self) -> None:
        apis, env = self.config.settings["apis"], self.config.env
        query = urllib.parse.urlencode({"api-key": env["HELIUS_API_KEY"]})
        calls = {
            "helius": (f"/health?{query}", {}),
            "quicknode": ("/health", {"x-api-key": env["QUICKNODE_API_KEY"]}),
            "jupiter": ("/health", {}),
        }
        for name, (path, headers) in calls.items():
            url = apis[f"{name}_url"].rstrip("/") + path
            started = time.monotonic()
            try:
                http_call(url, headers=headers)
                ok = True
                log.info("API %s ok %dms", name, (time.monotonic() - started) * 1000)
            except Exception as exc:
                ok = False
                log.warning("API %s failed: %s", name, reason(exc))
            with self.state.lock:
                self.state.apis[name] = ok

    def poll_loop(self) -> None:
        while not self.stop.is_set():
            self.poll_apis()
            self.stop.wait(self.poll_interval)

    def tick(self) -> None:
        """One trading interval: reconnect if needed (always while the breaker is open), then trade."""
        state = self.state
        try:
            if self.db.conn is None or state.breaker_open:
                self.db.connect()
                totals = self.db.totals(self.initial, state.portfolio_value if self.value_known else None)
                self.value_known = True
                with state.lock:
                    for key, value in totals.items():
                        setattr(state, key, value)
                    state.db_ok = True
                log.info("database connected trades_total=%d portfolio_value=%s", *self.summary())
                if state.breaker_open:
                    with state.lock:
                        state.breaker_open = False
                    log.info("circuit breaker reset")
                    self.alert(f"{self.name} circuit breaker reset on {self.host}")
            self.trade()
            self.errors_in_row = 0
        except db.Error as exc:
            self.db.close()
            self.errors_in_row += 1
            with state.lock:
                state.db_ok = False
                state.db_errors_total += 1
                opening = not state.breaker_open and self.errors_in_row >= self.max_errors
                state.breaker_open = state.breaker_open or opening
            message = " ".join(str(exc).split()) or type(exc).__name__
            if opening:
                log.error(
                    "circuit breaker open after %d consecutive database errors: %s",
                    self.errors_in_row,
                    message,
                )
                self.alert(
                    f"{self.name} circuit breaker open on {self.host}: {self.errors_in_row} consecutive "
                    "database errors, trading stopped"
                )
            elif not state.breaker_open:
                log.warning("database error %d/%d: %s", self.errors_in_row, self.max_errors, message)

    def summary(self) -> tuple[int, Decimal]:
        with self.state.lock:
            return self.state.trades_total, self.state.portfolio_value

    def trade(self) -> None:
        state = self.state
        number = state.trades_total + 1
        trade = db.make_trade(f"{self.name}:{number}")
        value = (state.portfolio_value + trade.pnl).quantize(EIGHT_PLACES)
        trade_id, ts, open_positions = self.db.record_trade(trade, value, number % 10 == 0, self.max_open)
        if trade_id is None:
            if not self.blocked:
                log.warning("not trading: %d open positions, max_open_positions=%d", open_positions, self.max_open)
            self.blocked = True
            with state.lock:
                state.open_positions, state.db_ok = open_positions, True
            return
        self.blocked = False
        with state.lock:
            state.trades_total, state.last_trade_id, state.last_trade_at = number, trade_id, ts
            state.portfolio_value, state.open_positions, state.db_ok = value, open_positions, True
        self.save_state()
        if number % 10 == 0:
            log.info("trades_total=%d portfolio_value=%s", number, value)
        if self.mode == "live":  # the only path that sends a transaction; paper and drill never do
            tx = base64.b64encode(f"{self.config.wallet_pubkey}:{trade_id}:{trade.side}:{trade.symbol}".encode())
            rpc = {"jsonrpc": "2.0", "id": trade_id, "method": "sendTransaction"}
            rpc["params"] = [tx.decode(), {"encoding": "base64"}]
            headers = {"x-api-key": self.config.env["QUICKNODE_API_KEY"]}
            in_background("sendTransaction", self.config.settings["apis"]["quicknode_url"], rpc, headers)

    def save_state(self) -> None:
        try:
            write_state_file(self.state_path, state_payload(self.state))
            self.save_failed = False
        except OSError as exc:
            if not self.save_failed:
                log.warning("cannot write %s: %s", self.state_path, exc.strerror or exc)
            self.save_failed = True

    def run(self) -> int:
        if db.psycopg2 is None:
            log.error("cannot start: psycopg2 is not installed (Debian: apt-get install python3-psycopg2)")
            return 1
        server_cfg = self.config.settings["server"]
        try:
            server = ThreadingHTTPServer((server_cfg["listen"], server_cfg["port"]), make_handler(self.state))
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", server_cfg["listen"], server_cfg["port"], exc.strerror or exc)
            return 1
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        threading.Thread(target=self.poll_loop, name="api", daemon=True).start()
        log.info("started pid=%d mode=%s wallet=%s", self.state.pid, self.mode, self.config.wallet_pubkey)
        self.alert(f"{self.name} started on {self.host}, wallet {self.config.wallet_pubkey}")
        deadline = time.monotonic()
        while not self.stop.is_set():
            self.tick()
            deadline = max(deadline + self.interval, time.monotonic())
            self.stop.wait(deadline - time.monotonic())
        self.save_state()
        log.info("stopping")
        sent = self.alert(f"{self.name} stopped on {self.host}")
        if sent is not None:
            sent.join(2)
        server.shutdown()
        server.server_close()
        self.db.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tradebot", description="Stand-in for the MojoRust trading bot.")
    parser.add_argument("--home", required=True, type=Path, help="the bot's home, e.g. ~/mojo-trading-bot")
    parser.add_argument("--check-config", action="store_true", help="validate the config, then exit 0 or 78")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.home)
    except ConfigError as exc:
        setup_logging(None if args.check_config else args.home)
        log.error("config invalid: %s", exc)
        return EX_CONFIG
    if args.check_config:
        print("config ok")
        return 0
    setup_logging(args.home, config.secrets)
    bot = Bot(config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: bot.stop.set())
    return bot.run()
