"""The shadow evaluator: decisions for every (variation, candidate), outcomes once their horizon passed,
CHAMPION's calibration against real trades (the statistics per window are `shadow.compare`'s). The I/O edge
of `shadow/`.

A candidate is a scan (strategy, symbol, candle) at which CHAMPION or any variation enters. Every
(variation, candidate) pair gets a `shadow_outcomes` row, `pending` until the horizon (the variation's
time limit) has passed and the candles are there; then the vectorised replay walks the market path of
those candles (`bridge.path`, adaptive order: open, the extreme nearer the open, the other extreme, close)
and fills in the exit. 1m candles are used where they cover the horizon, else 5m (recorded on the row as
`data_timeframe`: the path's detail timeframe).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bridge.exits import REASONS
from controller.data.market_data import timeframe_seconds
from controller.scan import indicators
from controller.scan.strategies import EXIT_COLUMNS
from controller.scan.strategy_params import StrategiesConfig
from shadow.decide import decide
from shadow.recommend import Calibration
from shadow.replay import PENDING, BarrierGrid, Paths, replay
from shadow.settings import ShadowSettings
from shadow.variations import CHAMPION, Variation

logger = logging.getLogger(__name__)

FALLBACK = (("1m", 60), ("5m", 300))
COARSER = (("15m", 900), ("1h", 3600))
Progress = Callable[[str, int], None]  # (task, items done) for the CLI's progress bars


@dataclass
class EvaluationReport:
    candidates: int = 0
    outcomes_written: int = 0
    evaluated: int = 0
    still_pending: int = 0
    by_timeframe: dict[str, int] = field(default_factory=dict)
    performance_rows: int = 0
    calibration: dict[str, Calibration] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- variation rows


def sync_variations(conn: psycopg.Connection, variations: Iterable[Variation],
                    descriptions: dict[str, str] | None = None) -> dict[tuple[str, str], int]:
    """Register the current variations (once per parameter set) and mark only them active."""
    ids: dict[tuple[str, str], int] = {}
    for v in variations:
        base = next((c for c in variations if c.name == CHAMPION and c.strategy == v.strategy), v)
        row = conn.execute(
            "insert into shadow_variations (name, strategy, params, params_hash, base_params_hash, description)"
            " values (%s, %s, %s, %s, %s, %s) on conflict (strategy, name, params_hash) do update set active = true"
            " returning id",
            (v.name, v.strategy, Jsonb(v.params_json()), v.params_hash, base.params_hash,
             (descriptions or {}).get(v.name, ""))).fetchone()
        ids[(v.strategy, v.name)] = row[0]
    conn.execute("update shadow_variations set active = (id = any(%s))", (list(ids.values()),))
    return ids


# --------------------------------------------------------------------------------------- candles


def read_candles(conn: psycopg.Connection, exchange: str, symbol: str, timeframe: str, start: datetime,
                 end: datetime) -> pd.DataFrame:
    rows = conn.execute("select ts, open, high, low, close, volume from candles where exchange = %s and symbol = %s"
                        " and timeframe = %s and ts >= %s and ts < %s order by ts",
                        (exchange, symbol, timeframe, start, end)).fetchall()
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    for column in ("open", "high", "low", "close", "volume"):
        frame[column] = frame[column].astype(np.float64)
    return frame


def path_for(conn: psycopg.Connection, exchange: str, symbol: str, entry_at: datetime,
             end: datetime, *, coarser: bool = False) -> tuple[str, int, pd.DataFrame] | None:
    """Candles from the entry up to `end`: 1m where they cover the whole span, else 5m (from the entry on,
    as far as they go); with `coarser`, else 15m or 1h (the first that starts at the entry); None when none
    starts at the entry. Shadow outcomes stay on 1m/5m (their table allows no other); calibration may go coarser.

    An exit found in candles that stop before the horizon is final (the rule only looks back); no exit in
    them leaves the outcome pending."""
    fallback = None
    for timeframe, seconds in FALLBACK:
        frame = read_candles(conn, exchange, symbol, timeframe, entry_at, end)
        if frame.empty or frame["ts"].iloc[0].to_pydatetime() - entry_at >= timedelta(seconds=seconds):
            continue
        if frame["ts"].iloc[-1].to_pydatetime() + timedelta(seconds=seconds) >= end:
            return timeframe, seconds, frame
        if timeframe == "5m":
            fallback = (timeframe, seconds, frame)
    if fallback is not None or not coarser:
        return fallback
    # no 1m or 5m candles from the entry on (a run that scanned only the 15m strategies stores only the
    # timeframes it built): the strategies' own coarser candles are the best path left, on the same terms
    for timeframe, seconds in COARSER:
        frame = read_candles(conn, exchange, symbol, timeframe, entry_at, end)
        if frame.empty or frame["ts"].iloc[0].to_pydatetime() - entry_at >= timedelta(seconds=seconds):
            continue
        return timeframe, seconds, frame
    return None


# --------------------------------------------------------------------------------------- decisions


def record_decisions(conn: psycopg.Connection, champion: StrategiesConfig, variations: list[Variation],
                     ids: dict[tuple[str, str], int], since: datetime, until: datetime,
                     report: EvaluationReport, lookback_candles: int = 300) -> None:
    """Re-run every variation's entry rule on the scans in [since, until) and write outcome rows."""
    cur = conn.cursor(row_factory=dict_row)
    scans = cur.execute(
        "select s.id, s.candle_ts, s.strategy, s.exchange, s.symbol, s.timeframe, s.signal_id,"
        "       g.ml_confidence from scans s left join signals g on g.id = s.signal_id"
        " where s.candle_ts >= %s and s.candle_ts < %s and s.decision in ('enter', 'skip', 'blocked')"
        " order by s.strategy, s.exchange, s.symbol, s.candle_ts", (since, until)).fetchall()
    if not scans:
        return
    frame = pd.DataFrame(scans)
    rows: list[tuple[Any, ...]] = []
    for (strategy, exchange, symbol, timeframe), group in frame.groupby(["strategy", "exchange", "symbol",
                                                                         "timeframe"], sort=False):
        mine = [v for v in variations if v.strategy == strategy]
        if not mine:
            continue
        section = next(v.section for v in mine if v.name == CHAMPION)
        tf_s = timeframe_seconds(str(timeframe))
        first = group["candle_ts"].min() - timedelta(seconds=tf_s * (lookback_candles + 1))
        candles = read_candles(conn, str(exchange), str(symbol), str(timeframe), first, group["candle_ts"].max())
        if candles.empty:
            report.notes.append(f"no {timeframe} candles for {exchange} {symbol}: {len(group)} scans not re-decided")
            continue
        computed = indicators.compute(candles.assign(symbol=symbol)[["symbol", *candles.columns]], section.indicators)
        close_of_row = computed["ts"] + pd.Timedelta(seconds=tf_s)
        at = close_of_row.searchsorted(pd.to_datetime(group["candle_ts"], utc=True))
        found = (at < len(computed)) & (close_of_row.to_numpy()[np.minimum(at, len(computed) - 1)]
                                        == pd.to_datetime(group["candle_ts"], utc=True).to_numpy())
        ml = np.full(len(computed), np.nan)
        ml[at[found]] = group["ml_confidence"].to_numpy(dtype=np.float64)[found]
        decided = {v.name: decide(computed, v, ml) for v in mine}
        scan_rows = group[found]
        row_index = at[found]
        entered_any = np.zeros(len(row_index), dtype=bool)
        for d in decided.values():
            entered_any |= d["entry"].to_numpy()[row_index]
        for j in np.flatnonzero(entered_any):
            scan = scan_rows.iloc[j]
            i = row_index[j]
            report.candidates += 1
            price = float(computed["close"].iloc[i])
            for v in mine:
                d = decided[v.name]
                enter = bool(d["entry"].iloc[i])
                barriers = {c: _num(d[c].iloc[i]) for c in EXIT_COLUMNS} if enter else None
                rows.append((ids[(strategy, v.name)], scan["signal_id"], int(scan["id"]), exchange, symbol,
                             scan["candle_ts"], enter, price, strategy, Jsonb(barriers) if barriers else None,
                             float(d["size_multiplier"].iloc[i])))
    with conn.cursor() as write:
        write.executemany(
            "insert into shadow_outcomes (variation_id, signal_id, scan_id, exchange, symbol, candle_ts, would_enter,"
            " entry_price, strategy, barriers, size_multiplier) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (variation_id, exchange, symbol, candle_ts) do nothing", rows)
    report.outcomes_written += len(rows)


def _num(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


# --------------------------------------------------------------------------------------- outcomes


def resolve_pending(conn: psycopg.Connection, now: datetime, settings: ShadowSettings, report: EvaluationReport,
                    progress: Progress | None = None) -> None:
    """Replay every pending outcome whose horizon has passed; a non-entry is evaluated as no trade."""
    conn.execute("update shadow_outcomes set status = 'evaluated', evaluated_at = %s"
                 " where status = 'pending' and not would_enter", (now,))
    cur = conn.cursor(row_factory=dict_row)
    pending = cur.execute("select id, exchange, symbol, candle_ts, entry_price, barriers from shadow_outcomes"
                          " where status = 'pending' and would_enter order by exchange, symbol, candle_ts").fetchall()
    entries: list[dict[str, Any]] = []
    for row in pending:
        limit = row["barriers"].get("time_limit_s")
        horizon_end = row["candle_ts"] + timedelta(seconds=float(limit or 30 * 86400))
        found = path_for(conn, row["exchange"], row["symbol"], row["candle_ts"], min(horizon_end, now))
        if found is None:
            report.still_pending += 1
            continue
        timeframe, seconds, candles = found
        entries.append({**row, "timeframe": timeframe, "candle_s": seconds, "candles": candles})
        if progress:
            progress("candles", len(entries))
    if not entries:
        return
    paths = Paths.from_lists(
        [float(e["entry_price"]) for e in entries], [e["candle_ts"].timestamp() for e in entries],
        [_seconds(e["candles"]["ts"]) for e in entries], [e["candles"]["open"].to_numpy() for e in entries],
        [e["candles"]["high"].to_numpy() for e in entries],
        [e["candles"]["low"].to_numpy() for e in entries], [e["candles"]["close"].to_numpy() for e in entries],
        [float(e["candle_s"]) for e in entries])
    grid = BarrierGrid(*[np.array([[_nan(e["barriers"].get(c)) for e in entries]]) for c in EXIT_COLUMNS])
    result = replay(paths, grid, fee_pct=settings.fee_pct, slippage_pct=settings.slippage_pct)
    updates = []
    for n, e in enumerate(entries):
        if result.reason[0, n] == PENDING:
            report.still_pending += 1
            continue
        exit_at = datetime.fromtimestamp(float(result.exit_time_s[0, n]), tz=now.tzinfo)
        updates.append((float(result.exit_price[0, n]), REASONS[result.reason[0, n]], float(result.pnl_pct[0, n]),
                        now, e["timeframe"], exit_at, e["id"]))
        report.by_timeframe[e["timeframe"]] = report.by_timeframe.get(e["timeframe"], 0) + 1
    with conn.cursor() as write:
        write.executemany("update shadow_outcomes set exit_price = %s, exit_reason = %s, pnl_pct = %s,"
                          " status = 'evaluated', evaluated_at = %s, data_timeframe = %s, exit_at = %s where id = %s",
                          updates)
    report.evaluated += len(updates)
    if progress:
        progress("replayed", len(updates))


def _seconds(ts: pd.Series) -> np.ndarray:
    return np.array([t.timestamp() for t in ts], dtype=np.float64)


def _nan(value: Any) -> float:
    return np.nan if value is None else float(value)


# --------------------------------------------------------------------------------------- calibration


# A DCA trade whose grid levels filled has an averaged entry and barriers on that average; the replay here is
# one entry at the signal's price, so such trades are left out of the calibration (the replay cannot place a grid).
GRID_AVERAGED = ("(s.grid_levels is not null and (select count(*) from orders o where o.signal_id = t.signal_id"
                 " and o.purpose = 'entry' and o.filled_amount > 0) > 1)")


def calibrate(conn: psycopg.Connection, settings: ShadowSettings, report: EvaluationReport, *,
              closes_only: bool = False) -> dict[str, Calibration]:
    """Replay CHAMPION (the barriers the real signal carried) from each real closed trade's own entry fill,
    over the candles after the one its signal was decided on, and compare with what the executor did: exit
    reason, exit price, P&L (the entry is the real one, so the gap is the exit's).

    The replay starts at the scan's candle close (data time), not at the trade's `opened_at`: a replayed
    run (the offline demo) trades on a paper clock of its own, whose times are not the candles'.
    `closes_only` replays the prices a paper book that follows the closes shows (high = low = close):
    where that agrees and the full candles do not, the difference is the wicks the paper world never had."""
    cur = conn.cursor(row_factory=dict_row)
    trades = cur.execute(
        "select t.signal_id, s.strategy, t.exchange, t.symbol, t.entry_price, t.exit_price, t.exit_reason,"
        "       t.pnl_pct, t.opened_at, t.closed_at, s.price as reference, s.take_profit_pct, s.stop_loss_pct,"
        "       s.time_limit_s, s.trailing_activation_pct, s.trailing_delta_pct,"
        "       coalesce((select min(sc.candle_ts) from scans sc where sc.signal_id = s.id), t.opened_at) as decided_at"
        "  from trades t join signals s on s.id = t.signal_id"
        " where t.exit_reason in ('take_profit', 'stop_loss', 'time_limit', 'trailing_stop')"
        f"  and not {GRID_AVERAGED}"
        " order by t.closed_at").fetchall()
    rows = []
    for trade in trades:
        limit = float(trade["time_limit_s"] or 30 * 86400)
        entry_at = trade["decided_at"]
        found = path_for(conn, trade["exchange"], trade["symbol"], entry_at, entry_at + timedelta(seconds=limit),
                         coarser=True)
        sim_reason = sim_exit = sim_pnl = None
        # the real trade's own entry fill: the executor entered during the candle after the decision (after its
        # stability window), not at the decision close, so the replay's barriers sit where the executor's did
        sim_entry = float(trade["entry_price"])
        if found is not None:
            _, seconds, candles = found
            opening, high, low = ("close", "close", "close") if closes_only else ("open", "high", "low")
            paths = Paths.from_lists([sim_entry], [entry_at.timestamp()],
                                     [_seconds(candles["ts"])], [candles[opening].to_numpy()],
                                     [candles[high].to_numpy()], [candles[low].to_numpy()],
                                     [candles["close"].to_numpy()], [float(seconds)])
            grid = BarrierGrid(*[np.array([[_nan(trade[c])]]) for c in EXIT_COLUMNS])
            result = replay(paths, grid, fee_pct=settings.fee_pct, slippage_pct=settings.slippage_pct,
                            entry_is_filled=True)
            if result.reason[0, 0] != PENDING:
                sim_reason = REASONS[result.reason[0, 0]]
                sim_exit = float(result.exit_price[0, 0])
                sim_pnl = float(result.pnl_pct[0, 0])
        # a match is the same exit AND the same money: a take profit replayed as a take profit that pays
        # another price is no match
        agrees = None if sim_reason is None or trade["pnl_pct"] is None else (
            sim_reason == trade["exit_reason"]
            and abs(sim_pnl - float(trade["pnl_pct"])) <= settings.pnl_match_points)
        rows.append((trade["signal_id"], trade["strategy"], trade["exit_reason"], sim_reason, trade["entry_price"],
                     sim_entry, trade["exit_price"], sim_exit, trade["pnl_pct"], sim_pnl, agrees))
    with conn.cursor() as write:
        write.executemany(
            "insert into shadow_calibration (signal_id, strategy, real_exit_reason, sim_exit_reason, real_entry_price,"
            " sim_entry_price, real_exit_price, sim_exit_price, real_pnl_pct, sim_pnl_pct, agrees)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict (signal_id) do update set"
            " sim_exit_reason = excluded.sim_exit_reason, sim_entry_price = excluded.sim_entry_price,"
            " sim_exit_price = excluded.sim_exit_price, sim_pnl_pct = excluded.sim_pnl_pct,"
            " agrees = excluded.agrees, computed_at = now()", rows)
    calibration = calibration_by_strategy(conn)
    report.calibration = calibration
    return calibration


_BARRIER_EXITS = "('take_profit', 'stop_loss', 'time_limit', 'trailing_stop')"
NOT_COMPARABLE = {
    "grid-averaged": f"t.exit_reason in {_BARRIER_EXITS} and {GRID_AVERAGED}",
    "strategy exit": f"t.exit_reason not in {_BARRIER_EXITS}",
}


def calibration_by_strategy(conn: psycopg.Connection) -> dict[str, Calibration]:
    """Per strategy: the comparable trades, how many the replay matched (reason and net P&L), the P&L gaps,
    and the trades left out with why (the replay does not model an averaged grid entry or a strategy's own
    exit; a replay whose candles end before its exit is not comparable yet)."""
    out: dict[str, Calibration] = {}
    apart: dict[str, dict[str, int]] = {}
    for why, condition in NOT_COMPARABLE.items():
        for strategy, n in conn.execute("select s.strategy, count(*) from trades t join signals s on s.id = t.signal_id"
                                        f" where t.closed_at is not null and {condition} group by s.strategy"):
            apart.setdefault(strategy, {})[why] = int(n)
    for strategy, n in conn.execute("select strategy, count(*) from shadow_calibration where agrees is null"
                                    " group by strategy"):
        apart.setdefault(strategy, {})["replay incomplete"] = int(n)
    rows = conn.execute(
        "select strategy, count(*) filter (where agrees is not null), avg(agrees::int), count(*) filter (where agrees),"
        "       avg((sim_exit_reason = real_exit_reason)::int) filter (where agrees is not null),"
        "       avg(abs(sim_entry_price / real_entry_price - 1) * 100),"
        "       avg(abs(sim_exit_price / real_exit_price - 1) * 100), avg(sim_pnl_pct - real_pnl_pct),"
        "       avg(abs(sim_pnl_pct - real_pnl_pct)) filter (where agrees is not null),"
        "       max(abs(sim_pnl_pct - real_pnl_pct)) filter (where agrees is not null)"
        "  from shadow_calibration group by strategy").fetchall()

    def num(value: Any) -> float | None:
        return None if value is None else float(value)

    for strategy, n, agreement, matches, reasons, entry_err, exit_err, pnl_diff, gap, worst in rows:
        out[strategy] = Calibration(int(n), num(agreement), num(entry_err), num(exit_err), num(pnl_diff),
                                    int(matches or 0), num(reasons), num(gap), num(worst), apart.get(strategy, {}))
    for strategy, why in apart.items():
        out.setdefault(strategy, Calibration(0, None, not_comparable=why))
    return out
