"""Unit tests for lab/tradebot, the stand-in trading bot: everything that needs no database."""

import json
import logging
import os
import sys
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab" / "tradebot"))

from tradebot import VERSION, config, db, service, state

GOOD_TOML = """\
[bot]
name = "mojorust"
mode = "paper"
trade_interval_seconds = 1.0
api_poll_seconds = 10.0
[database]
host = "localhost"
port = 5432
name = "trading_db"
user = "trading_user"
[server]
listen = "0.0.0.0"
port = 8082
[apis]
helius_url = "http://edge:8080/helius"
quicknode_url = "http://edge:8080/quicknode"
jupiter_url = "http://edge:8080/jupiter"
[alerts]
enabled = true
telegram_api_base = "http://edge:8080"
[wallet]
keypair_path = "wallet/id.json"
[risk]
max_open_positions = 3
circuit_breaker_max_errors = 5
[portfolio]
state_file = "data/portfolio_state.json"
initial_value = 10000.0
"""
SECRETS = {
    "HELIUS_API_KEY": "helius-secret-0123456789",
    "QUICKNODE_API_KEY": "quicknode-secret-0123456789",
    "INFISICAL_TOKEN": "st.infisical-secret-0123456789",
    "DB_PASSWORD": "db-password-0123456789",
    "TELEGRAM_BOT_TOKEN": "123456:telegram-secret-0123456789",
    "TELEGRAM_CHAT_ID": "-1001234567890",
}
# Solana's system program id: 32 zero bytes.
ZERO_PUBKEY = "11111111111111111111111111111111"


def write_home(root: Path, toml: str = GOOD_TOML, env: dict | None = None, keypair=None) -> Path:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "trading.toml").write_text(toml)
    env = SECRETS if env is None else env
    (root / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    (root / "wallet").mkdir(exist_ok=True)
    keypair = list(range(32)) + [0] * 32 if keypair is None else keypair
    (root / "wallet" / "id.json").write_text(json.dumps(keypair))
    return root


def config_error(home: Path) -> str:
    with pytest.raises(config.ConfigError) as info:
        config.load_config(home)
    message = str(info.value)
    assert not any(secret in message for secret in SECRETS.values())
    return message


# --- configuration ---------------------------------------------------------------------------------


def test_good_config_loads(tmp_path):
    cfg = config.load_config(write_home(tmp_path))
    assert cfg.settings["bot"]["mode"] == "paper"
    assert cfg.settings["database"]["port"] == 5432
    assert cfg.env == SECRETS
    assert cfg.wallet_pubkey == ZERO_PUBKEY
    assert cfg.path("data/portfolio_state.json") == tmp_path / "data" / "portfolio_state.json"
    assert cfg.path("/abs/x.json") == Path("/abs/x.json")
    assert SECRETS["DB_PASSWORD"] in cfg.secrets
    assert SECRETS["TELEGRAM_CHAT_ID"] not in cfg.secrets


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port = 5432", 'port = "5432"', "[database] port must be an integer"),
        ("port = 5432", "port = 70000", "[database] port must be an integer"),
        ("port = 5432", "port = true", "[database] port must be an integer"),
        ('mode = "paper"', 'mode = "yolo"', "[bot] mode must be one of"),
        (
            "trade_interval_seconds = 1.0",
            "trade_interval_seconds = 0",
            "[bot] trade_interval_seconds must be",
        ),
        ("enabled = true", 'enabled = "yes"', "[alerts] enabled must be true or false"),
        ('jupiter_url = "http://edge:8080/jupiter"', 'jupiter_url = "edge"', "[apis] jupiter_url must be"),
        ('name = "mojorust"', 'nmae = "mojorust"', "[bot] unknown key nmae"),
        ('name = "mojorust"', 'nmae = "mojorust"', "[bot] missing key name"),
        ("[risk]", "[risk]\nextra = 1", "[risk] unknown key extra"),
        ("[wallet]", "[walet]", "missing section [wallet]"),
        ("[wallet]", "[walet]", "unknown section [walet]"),
        ("[bot]", "oops = 1\n[bot]", "unknown top-level key oops"),
    ],
)
def test_bad_toml_is_named(tmp_path, old, new, expected):
    assert old in GOOD_TOML
    message = config_error(write_home(tmp_path, GOOD_TOML.replace(old, new, 1)))
    assert message.startswith("config/trading.toml: ")
    assert expected in message


def test_toml_syntax_error_and_missing_file(tmp_path):
    assert config_error(write_home(tmp_path, "[bot\n")).startswith("config/trading.toml: not valid TOML")
    (tmp_path / "config" / "trading.toml").unlink()
    assert config_error(tmp_path) == "config/trading.toml: file not found"


@pytest.mark.parametrize("key", config.ENV_KEYS)
def test_missing_env_key_is_named_without_values(tmp_path, key):
    env = {k: v for k, v in SECRETS.items() if k != key}
    assert config_error(write_home(tmp_path, env=env)) == f".env: missing required key {key}"


def test_empty_env_value_and_missing_env_file(tmp_path):
    home = write_home(tmp_path, env=SECRETS | {"DB_PASSWORD": ""})
    assert config_error(home) == ".env: empty value for DB_PASSWORD"
    (home / ".env").unlink()
    assert config_error(home) == ".env: file not found"


def test_parse_env():
    text = (
        "# comment\n\n"
        "A=plain\n"
        "export B = spaced \n"
        'C="double # not a comment"  # comment\n'
        "D='single'\n"
        "E=value # not a comment either\n"
        "F=\n"
        "G=a=b\n"
    )
    assert config.parse_env(text) == {
        "A": "plain",
        "B": "spaced",
        "C": "double # not a comment",
        "D": "single",
        "E": "value # not a comment either",
        "F": "",
        "G": "a=b",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nno equals sign secret-value\n", ".env: line 2: expected KEY=VALUE"),
        ('A="secret-value\n', ".env: line 1: unterminated quote in value of A"),
        ('A="secret" value\n', ".env: line 1: text after the closing quote of A"),
    ],
)
def test_parse_env_errors_hide_the_line(text, expected):
    with pytest.raises(config.ConfigError) as info:
        config.parse_env(text)
    assert str(info.value) == expected
    assert "secret" not in str(info.value)


# --- wallet ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_bytes", "encoded"),
    [  # Bitcoin Core's src/test/data/base58_encode_decode.json
        ("", ""),
        ("61", "2g"),
        ("626262", "a3gV"),
        ("636363", "aPEr"),
        ("73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"),
        ("00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"),
        ("516b6fcd0f", "ABnLTmg"),
        ("bf4f89001e670274dd", "3SEo3LWLoPntC"),
        ("572e4794", "3EFU7m"),
        ("ecac89cad93923c02321", "EJDM8drfXA6uyA"),
        ("10c8511e", "Rt5zm"),
        ("00000000000000000000", "1111111111"),
    ],
)
def test_base58_vectors(hex_bytes, encoded):
    assert config.b58encode(bytes.fromhex(hex_bytes)) == encoded


def test_base58_solana_keys():
    assert config.b58encode(bytes(32)) == ZERO_PUBKEY
    # bytes 1..32: leading byte non-zero, so no '1' padding; check by decoding with plain integer arithmetic
    encoded = config.b58encode(bytes(range(1, 33)))
    number = 0
    for char in encoded:
        number = number * 58 + config.B58_ALPHABET.index(char)
    assert number.to_bytes(32, "big") == bytes(range(1, 33))
    assert len(encoded) in (43, 44) and encoded[0] != "1"


def test_keypair_uses_the_last_32_bytes(tmp_path):
    path = tmp_path / "id.json"
    path.write_text(json.dumps([7] * 32 + [0] * 32))
    assert config.load_keypair(path) == ZERO_PUBKEY
    path.write_text(json.dumps(list(range(64))))
    assert config.load_keypair(path) == config.b58encode(bytes(range(32, 64)))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file not found"),
        ("[1, 2", "not valid JSON"),
        (json.dumps([1] * 63), "must be a JSON array of 64 integers 0-255"),
        (json.dumps([1] * 63 + [256]), "must be a JSON array of 64 integers 0-255"),
        (json.dumps([1] * 63 + [True]), "must be a JSON array of 64 integers 0-255"),
        (json.dumps({"secret": [1] * 64}), "must be a JSON array of 64 integers 0-255"),
    ],
)
def test_bad_keypair_refused(tmp_path, content, expected):
    home = write_home(tmp_path)
    path = home / "wallet" / "id.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    assert config_error(home).startswith(f"{path}: {expected}")


def test_fingerprints():
    assert config.fingerprint("abc") == "ba7816bf8f01cfea"  # sha256("abc") = ba7816bf8f01cfea4141...
    cfg = config.Config(Path("/h"), {}, SECRETS, ZERO_PUBKEY)
    assert set(cfg.fingerprints) == set(config.ENV_KEYS)
    assert all(len(fp) == 16 and int(fp, 16) >= 0 for fp in cfg.fingerprints.values())
    assert not set(cfg.fingerprints.values()) & set(SECRETS.values())


# --- command line ----------------------------------------------------------------------------------


def test_check_config_ok(tmp_path, capsys):
    assert service.main(["--home", str(write_home(tmp_path)), "--check-config"]) == 0
    assert capsys.readouterr().out == "config ok\n"
    assert not (tmp_path / "logs").exists()


def test_check_config_refuses_with_78(tmp_path, capsys):
    home = write_home(tmp_path, env={k: v for k, v in SECRETS.items() if k != "INFISICAL_TOKEN"})
    assert service.main(["--home", str(home), "--check-config"]) == service.EX_CONFIG == 78
    err = capsys.readouterr().err.strip()
    assert err.endswith(" ERROR config invalid: .env: missing required key INFISICAL_TOKEN")
    assert not any(secret in err for secret in SECRETS.values())


def test_start_with_bad_config_logs_to_file(tmp_path, capsys):
    home = write_home(tmp_path, GOOD_TOML.replace("port = 5432", 'port = "x"'))
    assert service.main(["--home", str(home)]) == 78
    (logfile,) = (home / "logs").glob("trading-bot-*.log")
    assert logfile.name == f"trading-bot-{datetime.now(UTC):%Y%m%d}.log"
    assert "ERROR config invalid: config/trading.toml: [database] port must be an integer" in logfile.read_text()


# --- logging ---------------------------------------------------------------------------------------


def test_log_line_format_and_redaction():
    formatter = service.LineFormatter(SECRETS.values())
    record = logging.LogRecord("tradebot", logging.WARNING, __file__, 1, "url %s", ("x/bot123456:tel",), None)
    record.created = datetime(2026, 11, 25, 18, 0, 0, 123456, tzinfo=UTC).timestamp()
    assert formatter.format(record) == "2026-11-25T18:00:00.123Z WARNING url x/bot123456:tel"
    record.args = (f"x/bot{SECRETS['TELEGRAM_BOT_TOKEN']}/sendMessage?k={SECRETS['HELIUS_API_KEY']}",)
    assert formatter.format(record).endswith("url x/bot***/sendMessage?k=***")


def test_daily_file_handler_switches_on_utc_date(tmp_path):
    handler = service.DailyFileHandler(tmp_path)
    handler.setFormatter(service.LineFormatter())
    for day in (24, 24, 25):
        record = logging.LogRecord("tradebot", logging.INFO, __file__, 1, "day %d", (day,), None)
        record.created = datetime(2026, 11, day, 23, 59, tzinfo=UTC).timestamp()
        handler.emit(record)
    handler.close()
    assert (tmp_path / "trading-bot-20261124.log").read_text().count("INFO day 24") == 2
    assert (tmp_path / "trading-bot-20261125.log").read_text().endswith("INFO day 25\n")


def test_reason_has_no_url():
    err = urllib.error.HTTPError("http://x/health?api-key=SECRET", 401, "Unauthorized", None, None)
    assert service.reason(err) == "HTTP 401"
    assert service.reason(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))) == (
        "[Errno 111] Connection refused"
    )
    assert service.reason(TimeoutError("timed out")) == "timed out"


# --- health, metrics, state file -------------------------------------------------------------------


def make_state(**changes) -> state.State:
    st = state.State("paper", ZERO_PUBKEY, config.Config(Path("/h"), {}, SECRETS, ZERO_PUBKEY).fingerprints)
    for key, value in changes.items():
        setattr(st, key, value)
    return st


HEALTH_KEYS = {
    "status",
    "db_ok",
    "last_trade_at",
    "last_trade_id",
    "trades_total",
    "open_positions",
    "portfolio_value",
    "circuit_breaker",
    "mode",
    "apis",
    "key_fingerprints",
    "wallet_pubkey",
    "version",
    "pid",
    "started_at",
}


def test_health_before_database():
    code, body = state.health(make_state(portfolio_value=Decimal("10000")))
    assert code == 503
    assert set(body) == HEALTH_KEYS
    assert body["status"] == "degraded" and body["db_ok"] is False
    assert body["last_trade_at"] is None and body["last_trade_id"] is None
    assert body["apis"] == {"helius": None, "quicknode": None, "jupiter": None}
    assert body["circuit_breaker"] == "closed"
    assert body["portfolio_value"] == 10000.0
    assert body["version"] == VERSION == "tradebot 1.0"
    assert body["pid"] == os.getpid()
    assert body["started_at"].endswith("Z")
    text = json.dumps(body)
    assert not any(secret in text for secret in SECRETS.values())


def test_health_ok_and_breaker_open():
    moment = datetime(2026, 11, 25, 18, 0, 0, 123456, tzinfo=UTC)
    st = make_state(db_ok=True, trades_total=42, last_trade_id=42, last_trade_at=moment)
    st.portfolio_value = Decimal("10001.12345678")
    code, body = state.health(st)
    assert (code, body["status"]) == (200, "ok")
    assert body["last_trade_at"] == "2026-11-25T18:00:00.123Z"
    assert body["portfolio_value"] == 10001.12345678
    assert body["key_fingerprints"]["DB_PASSWORD"] == config.fingerprint(SECRETS["DB_PASSWORD"])
    st.breaker_open = True
    code, body = state.health(st)
    assert (code, body["status"], body["circuit_breaker"]) == (503, "degraded", "open")


def parse_metrics(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_rendering():
    moment = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
    st = make_state(db_ok=True, trades_total=7, last_trade_at=moment, db_errors_total=2)
    st.portfolio_value = Decimal("9999.5")
    st.apis.update(helius=True, quicknode=False)
    text = state.render_metrics(st)
    assert text.endswith("\n")
    assert "# TYPE tradebot_trades_total counter" in text
    assert "# TYPE tradebot_db_errors_total counter" in text
    assert "# TYPE tradebot_portfolio_value gauge" in text
    samples = parse_metrics(text)
    assert samples == {
        "tradebot_up": 1,
        "tradebot_db_up": 1,
        "tradebot_trades_total": 7,
        "tradebot_last_trade_timestamp_seconds": moment.timestamp(),
        "tradebot_portfolio_value": 9999.5,
        "tradebot_open_positions": 0,
        "tradebot_circuit_breaker_open": 0,
        "tradebot_db_errors_total": 2,
        'tradebot_api_up{api="helius"}': 1,
        'tradebot_api_up{api="quicknode"}': 0,
        'tradebot_api_up{api="jupiter"}': 0,
        'tradebot_info{version="tradebot 1.0",mode="paper"}': 1,
    }
    for name in {key.split("{")[0] for key in samples}:
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text


def test_state_file_is_written_atomically(tmp_path):
    path = tmp_path / "data" / "portfolio_state.json"
    st = make_state(trades_total=3, last_trade_id=3, portfolio_value=Decimal("10000.5"))
    state.write_state_file(path, state.state_payload(st))
    saved = json.loads(path.read_text())
    assert set(saved) == {
        "portfolio_value",
        "updated_at",
        "last_trade_id",
        "trades_total",
        "open_positions",
        "wallet_pubkey",
    }
    assert saved["portfolio_value"] == 10000.5 and saved["wallet_pubkey"] == ZERO_PUBKEY
    assert datetime.fromisoformat(saved["updated_at"]).tzinfo is not None
    assert state.read_state_file(path) == {
        "portfolio_value": Decimal("10000.50000000"),
        "last_trade_id": 3,
        "trades_total": 3,
        "open_positions": 0,
    }
    assert os.listdir(path.parent) == ["portfolio_state.json"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_state_file_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "portfolio_state.json"
    state.write_state_file(path, {"portfolio_value": 1.0})

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state.os, "replace", broken_replace)
    with pytest.raises(OSError):
        state.write_state_file(path, {"portfolio_value": 2.0})
    assert json.loads(path.read_text()) == {"portfolio_value": 1.0}
    assert os.listdir(tmp_path) == ["portfolio_state.json"]


@pytest.mark.parametrize(
    "content",
    [None, "{", "[]", '{"portfolio_value": "x"}', '{"portfolio_value": true}', '{"portfolio_value": NaN}'],
)
def test_unusable_state_file_is_ignored(tmp_path, content):
    path = tmp_path / "portfolio_state.json"
    if content is not None:
        path.write_text(content)
    assert state.read_state_file(path) is None


# --- trades and the HTTP server --------------------------------------------------------------------


def test_trades_are_deterministic():
    assert db.make_trade("mojorust:1") == db.make_trade("mojorust:1") != db.make_trade("mojorust:2")
    for number in range(1, 200):
        trade = db.make_trade(f"mojorust:{number}")
        assert trade.symbol in db.PRICES and trade.side in ("buy", "sell")
        assert trade.price > 0 and trade.qty > 0 and -2 <= trade.pnl <= Decimal("2.2")
        for value in (trade.price, trade.qty, trade.pnl):
            assert value == value.quantize(state.EIGHT_PLACES) and abs(value) < 10**12  # numeric(20,8)


def test_http_server_routes():
    st = make_state(db_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), service.make_handler(st))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            assert response.status == 200 and json.load(response)["status"] == "ok"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert b"tradebot_up 1" in response.read()
        st.db_ok = False
        for path, code in (("/health", 503), ("/nope", 404)):
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(f"{base}{path}", timeout=5)
            assert info.value.code == code
            info.value.close()
    finally:
        server.shutdown()
        server.server_close()


def test_alerts_suppressed_in_drill_mode(tmp_path, monkeypatch):
    cfg = config.load_config(write_home(tmp_path, GOOD_TOML.replace('mode = "paper"', 'mode = "drill"')))
    sent = []
    monkeypatch.setattr(service, "in_background", lambda *args, **kwargs: sent.append(args))
    bot = service.Bot(cfg)
    assert bot.alert("hello") is None and sent == []
    bot.mode = "paper"
    bot.alert("hello")
    assert sent == [
        (
            "alert",
            f"http://edge:8080/bot{SECRETS['TELEGRAM_BOT_TOKEN']}/sendMessage",
            {"chat_id": SECRETS["TELEGRAM_CHAT_ID"], "text": "hello"},
        )
    ]
