"""PostgreSQL: schema, start-up totals, and one transaction per simulated round-trip trade."""

import contextlib
import random
from dataclasses import dataclass
from decimal import Decimal

from .state import EIGHT_PLACES

try:
    import psycopg2

    Error = psycopg2.Error
except ImportError:  # --check-config and the unit tests run without the driver; run() refuses to start
    psycopg2 = None

    class Error(Exception):
        pass


TABLES = {
    "trades": """CREATE TABLE IF NOT EXISTS trades (
        id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now(), symbol text NOT NULL,
        side text NOT NULL, qty numeric(20,8) NOT NULL, price numeric(20,8) NOT NULL,
        pnl numeric(20,8) NOT NULL)""",
    "positions": """CREATE TABLE IF NOT EXISTS positions (
        symbol text PRIMARY KEY, qty numeric(20,8) NOT NULL, avg_price numeric(20,8) NOT NULL,
        status text NOT NULL, opened_at timestamptz, closed_at timestamptz)""",
    "portfolio": """CREATE TABLE IF NOT EXISTS portfolio (
        id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now(), value numeric(20,8) NOT NULL)""",
}
INSERT_TRADE = """INSERT INTO trades (symbol, side, qty, price, pnl)
    VALUES (%s, %s, %s, %s, %s) RETURNING id, ts"""
UPSERT_POSITION = """INSERT INTO positions (symbol, qty, avg_price, status, opened_at, closed_at)
    VALUES (%s, %s, %s, 'closed', now(), now())
    ON CONFLICT (symbol) DO UPDATE SET qty = EXCLUDED.qty, avg_price = EXCLUDED.avg_price,
        status = 'closed', opened_at = EXCLUDED.opened_at, closed_at = EXCLUDED.closed_at"""
PRICES = {"BONK/USDC": Decimal("0.00002"), "JUP/USDC": Decimal("0.8"), "SOL/USDC": Decimal("150")}


@dataclass(frozen=True)
class Trade:
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    pnl: Decimal


def make_trade(seed: str) -> Trade:
    """The same seed always gives the same trade; the loop seeds with '<bot name>:<trade number>'."""
    rng = random.Random(seed)
    symbol = rng.choice(sorted(PRICES))
    price = (PRICES[symbol] * Decimal(str(rng.uniform(0.95, 1.05)))).quantize(EIGHT_PLACES)
    qty = (Decimal(rng.randint(50, 500)) / price).quantize(EIGHT_PLACES)  # 50-500 USDC notional
    pnl = Decimal(str(rng.uniform(-2.0, 2.2))).quantize(EIGHT_PLACES)
    return Trade(symbol, rng.choice(("buy", "sell")), qty, price, pnl)


class Database:
    def __init__(self, settings: dict, password: str):
        self.params = {
            "host": settings["host"],
            "port": settings["port"],
            "dbname": settings["name"],
            "user": settings["user"],
            "password": password,
            "connect_timeout": 3,
            "application_name": "tradebot",
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
            "options": "-c statement_timeout=5000",
        }
        self.conn = None

    def connect(self) -> None:
        """(Re)connect and create missing tables (checked first, so existing tables need no CREATE right)."""
        self.close()
        self.conn = psycopg2.connect(**self.params)
        with self.conn, self.conn.cursor() as cur:
            for table, ddl in TABLES.items():
                cur.execute("SELECT to_regclass(%s)", (table,))
                if cur.fetchone()[0] is None:
                    cur.execute(ddl)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Error):
                self.conn.close()
            self.conn = None

    def totals(self, initial: Decimal, known_value: Decimal | None) -> dict:
        """Counters and portfolio value as the database has them.

        The value is the latest portfolio row plus the pnl of later trades; without a portfolio row it is
        known_value (from the state file or this run), else initial plus the pnl of all trades."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM trades")
            trades_total = cur.fetchone()[0]
            cur.execute("SELECT id, ts FROM trades ORDER BY id DESC LIMIT 1")
            last_id, last_ts = cur.fetchone() or (None, None)
            cur.execute("SELECT count(*) FROM positions WHERE status = 'open'")
            open_positions = cur.fetchone()[0]
            cur.execute("SELECT value, ts FROM portfolio ORDER BY id DESC LIMIT 1")
            snapshot = cur.fetchone()
            if snapshot:
                cur.execute("SELECT coalesce(sum(pnl), 0) FROM trades WHERE ts > %s", (snapshot[1],))
                value = snapshot[0] + cur.fetchone()[0]
            elif known_value is not None:
                value = known_value
            else:
                cur.execute("SELECT coalesce(sum(pnl), 0) FROM trades")
                value = initial + cur.fetchone()[0]
        return {
            "trades_total": trades_total,
            "last_trade_id": last_id,
            "last_trade_at": last_ts,
            "open_positions": open_positions,
            "portfolio_value": Decimal(value).quantize(EIGHT_PLACES),
        }

    def record_trade(self, trade: Trade, new_value: Decimal, snapshot: bool, max_open: int) -> tuple:
        """One transaction: the trade, its (closed) position, every tenth time a portfolio row.

        Returns (trade id, trade ts, open positions); id and ts are None when max_open blocks the trade."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM positions WHERE status = 'open'")
            open_positions = cur.fetchone()[0]
            if open_positions >= max_open:
                return None, None, open_positions
            cur.execute(INSERT_TRADE, (trade.symbol, trade.side, trade.qty, trade.price, trade.pnl))
            trade_id, ts = cur.fetchone()
            cur.execute(UPSERT_POSITION, (trade.symbol, trade.qty, trade.price))
            if snapshot:
                cur.execute("INSERT INTO portfolio (value) VALUES (%s)", (new_value,))
        return trade_id, ts, open_positions
