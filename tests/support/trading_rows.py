"""Rows of a trading history written straight into the tables, as the executor, the ML booster and the shadow
evaluator would leave them: closed trades with their signal, orders and fills; predictions; shadow outcomes;
recommendations. P&L is computed from prices, amount and fees the way the executor does (after fees)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

T0 = datetime(2018, 1, 12, tzinfo=UTC)


class History:
    def __init__(self, conn: psycopg.Connection, start: datetime = T0) -> None:
        self.conn = conn
        self.now = start
        self.n = 0

    def signal(self, strategy: str = "DCA", symbol: str = "ETH-BTC", status: str = "closed", claimed: bool = True,
               ml_confidence: float | None = None, reason: str | None = None) -> uuid.UUID:
        self.n += 1
        self.now += timedelta(minutes=30)
        features: dict[str, object] = {}
        return self.conn.execute(
            "insert into signals (created_at, expires_at, strategy, exchange, symbol, side, price, quote_amount,"
            " take_profit_pct, stop_loss_pct, confidence, ml_confidence, model_version, features, status,"
            " claimed_by, claimed_at, reject_reason, finished_at)"
            " values (%s, %s, %s, 'bittrex', %s, 'buy', 0.1, 0.002, 3, 2, 0.6, %s, %s, %s, %s, %s, %s, %s, %s)"
            " returning id",
            (self.now, self.now + timedelta(minutes=10), strategy, symbol, ml_confidence,
             "m1" if ml_confidence is not None else None, Jsonb(features), status,
             "bot" if claimed else None, self.now if claimed else None, reason,
             self.now if status in ("closed", "rejected", "expired") else None)).fetchone()[0]

    def order(self, signal_id: uuid.UUID, purpose: str, status: str = "filled", price: float = 0.1,
              amount: float = 0.02, fee: float = 0.0, fill: bool = True) -> str:
        coid = f"{purpose}-{signal_id.hex[:12]}-{self.n}"
        self.conn.execute(
            "insert into orders (client_order_id, signal_id, exchange, symbol, side, purpose, order_type, price,"
            " amount, status, filled_amount, created_at, updated_at)"
            " values (%s, %s, 'bittrex', 'ETH-BTC', %s, %s, 'market', %s, %s, %s, %s, %s, %s)",
            (coid, signal_id, "buy" if purpose == "entry" else "sell", purpose, price, amount, status,
             amount if fill else 0, self.now, self.now))
        if fill:
            self.conn.execute("insert into fills (client_order_id, exchange_trade_id, signal_id, price, amount,"
                              " fee_quote, ts) values (%s, 't1', %s, %s, %s, %s, %s)",
                              (coid, signal_id, price, amount, fee, self.now))
        return coid

    def trade(self, pnl_pct: float, exit_reason: str | None = None, strategy: str = "DCA",
              symbol: str = "ETH-BTC", ml_confidence: float | None = None,
              logged: bool = True, entry: float = 0.1, amount: float = 0.02, fee_rate: float = 0.001) -> uuid.UUID:
        """A closed long trade that made `pnl_pct` before fees."""
        exit_reason = exit_reason or ("take_profit" if pnl_pct > 0 else "stop_loss")
        sid = self.signal(strategy, symbol, ml_confidence=ml_confidence)
        exit_price = entry * (1 + pnl_pct / 100)
        fees = (entry + exit_price) * amount * fee_rate
        self.order(sid, "entry", price=entry, amount=amount, fee=entry * amount * fee_rate)
        self.order(sid, "exit", price=exit_price, amount=amount, fee=exit_price * amount * fee_rate, fill=logged)
        pnl = (exit_price - entry) * amount - fees
        self.conn.execute(
            "insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, fees_quote,"
            " pnl_quote, pnl_pct, exit_reason, opened_at, closed_at)"
            " values (%s, 'bittrex', %s, 'buy', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (sid, symbol, amount, entry, exit_price, fees, pnl, pnl / (entry * amount) * 100, exit_reason,
             self.now, self.now + timedelta(minutes=20)))
        return sid

    def open_position(self, strategy: str = "CHANNEL", symbol: str = "LTC-BTC", entry: float = 0.018,
                      amount: float = 0.1) -> uuid.UUID:
        """An entry the executor is still holding: executing, its entry order filled, no trade row yet."""
        sid = self.signal(strategy, symbol, status="executing")
        self.conn.execute("update signals set executing_at = created_at where id = %s", (sid,))
        self.order(sid, "entry", price=entry, amount=amount, fee=entry * amount * 0.001)
        return sid

    def model(self, version: str = "m1", active: bool = True) -> None:
        self.conn.execute("insert into ml_models (version, features, training_start, training_end, artefact_path,"
                          " artefact_sha256, active) values (%s, '[\"rsi\"]', %s, %s, 'x.joblib', 'ab', %s)",
                          (version, T0 - timedelta(days=5), T0, active))

    def prediction(self, signal_id: uuid.UUID, confidence: float, version: str = "m1", arm: str = "boosted") -> None:
        """A scored candidate; `arm` is what the score was allowed to do (0014: boosted, control, ood, ...)."""
        self.conn.execute("insert into ml_predictions (model_version, signal_id, strategy, exchange, symbol,"
                          " candle_ts, confidence, arm) values (%s, %s, 'DCA', 'bittrex', 'ETH-BTC', %s, %s, %s)",
                          (version, signal_id, self.now, confidence, arm))

    def variation(self, name: str, strategy: str = "DCA") -> int:
        """As shadow.evaluate registers it: CHAMPION is the active set (its own base), others vary it."""
        params_hash = "base" if name == "CHAMPION" else f"h-{name}"
        return self.conn.execute(
            "insert into shadow_variations (name, strategy, params, params_hash, base_params_hash)"
            " values (%s, %s, '{}', %s, 'base') returning id", (name, strategy, params_hash)).fetchone()[0]

    def outcome(self, variation_id: int, pnl_pct: float) -> None:
        self.now += timedelta(minutes=5)
        self.conn.execute(
            "insert into shadow_outcomes (variation_id, exchange, symbol, candle_ts, would_enter, status,"
            " entry_price, exit_price, exit_reason, pnl_pct, evaluated_at)"
            " values (%s, 'bittrex', 'ETH-BTC', %s, true, 'evaluated', 0.1, 0.1, 'take_profit', %s, %s)",
            (variation_id, self.now, pnl_pct, self.now))

    def performance(self, variation_id: int, trades: int, wins: int, total_pnl_pct: float) -> None:
        self.conn.execute(
            "insert into shadow_performance (variation_id, window_start, window_end, trades, wins, avg_pnl_pct,"
            " total_pnl_pct) values (%s, %s, %s, %s, %s, %s, %s)",
            (variation_id, T0, self.now, trades, wins, total_pnl_pct / max(trades, 1), total_pnl_pct))

    def comparison(self, variation_id: int, *, mean_diff_pct: float, p: float, q: float, window_h: int = 72,
                   ci: tuple[float, float] = (0.0, 0.0), basis: str = "equal size", strategy: str = "DCA",
                   window_end: datetime | None = None) -> None:
        """A stored comparison with CHAMPION, as shadow.compare writes it (p resolution of 2000 resamples)."""
        end = window_end or self.now
        self.conn.execute(
            "insert into shadow_performance (variation_id, window_start, window_end, trades, wins, strategy,"
            " window_h, paired_n, mean_diff_pct, ci_low_pct, ci_high_pct, p_value, q_value, p_resolution, mde_pct,"
            " basis) values (%s, %s, %s, 30, 15, %s, %s, 30, %s, %s, %s, %s, %s, %s, 0.5, %s)",
            (variation_id, end - timedelta(hours=window_h), end, strategy, window_h, mean_diff_pct, ci[0], ci[1],
             p, q, 1 / 2001, basis))

    def recommendation(self, status: str = "applied", rollback_of: int | None = None) -> int:
        self.now += timedelta(hours=1)
        return self.conn.execute(
            "insert into recommendations (strategy, from_params_hash, to_params_hash, params, evidence, status,"
            " created_at, decided_at, rollback_of) values ('DCA', 'base', %s, '{}', '{}', %s, %s, %s, %s)"
            " returning id", (f"h-{self.now:%H%M%S}", status, self.now, self.now, rollback_of)).fetchone()[0]

    def rollback(self, recommendation_id: int) -> int:
        """As shadow.apply.rollback writes it: a new applied row pointing at the change it undoes, which
        becomes rolled_back."""
        self.now += timedelta(hours=1)
        row = self.conn.execute(
            "insert into recommendations (strategy, from_params_hash, to_params_hash, params, evidence, status,"
            " created_at, decided_at, rollback_of) select strategy, to_params_hash, from_params_hash, '{}',"
            " '{\"rollback\": \"test\"}', 'applied', %s, %s, id from recommendations where id = %s returning id",
            (self.now, self.now, recommendation_id)).fetchone()[0]
        self.conn.execute("update recommendations set status = 'rolled_back' where id = %s", (recommendation_id,))
        return row
