"""The success criteria of each rollout phase, read from the database: `python -m controller phase check N`.

`read_facts` is the only I/O: a handful of aggregate queries over the trading tables. `check_phase` is pure:
facts in, a checklist out, each line with the figure behind it, so a test can feed it rows directly.

Conventions the checks rely on (what the executor, the ML scorer and the shadow evaluator write):
- a trade is a row of `trades`; an order failed when its status is `failed`;
- the signals reaching the bot are the entry signals as `dashboard_signal_funnel` counts them (its stages
  only narrow), the exit signals as `dashboard_exit_signals` does: the figures the dashboard and the report show;
- phase 3: a signal's ML arm is the `arm` of its latest `ml_predictions` row (0014: `boosted` when the
  score could move it, `control` when the randomized control held it back; `ood`, `stale`, `off` and
  unscored signals are in neither arm), as `dashboard_ml_vs_rules` reads it;
- phase 4: a variation's results are its evaluated `shadow_outcomes` (would_enter, pnl_pct); whether it
  differs from CHAMPION is what the shadow evaluator stored for its latest pass (`shadow_performance`: the
  comparison, its interval and its Benjamini-Hochberg q over the pass), never a second test here;
  a recommendation is validated when it was applied and is not rolled back: shadow.apply marks an applied
  change `applied`, and its rollback writes a new `applied` row with `rollback_of` set and marks the
  original `rolled_back`, so the rollback rows themselves are not recommendations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from controller.ops.report_figures import ExitCounts, Funnel
from controller.ops.signal_funnel import read_exits, read_funnel
from stats.pvalues import PValue

PHASES = (1, 2, 3, 4)
CHAMPION = "CHAMPION"  # shadow.variations.CHAMPION (controller does not import the shadow package)
SIGNIFICANCE = 0.05  # two-sided p-value below which two result sets count as different


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    figure: str


@dataclass(frozen=True)
class PhaseResult:
    phase: int
    title: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "title": self.title, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


@dataclass(frozen=True)
class TradeRow:
    strategy: str
    pnl_quote: float
    pnl_pct: float
    exit_reason: str
    side: str
    amount: float
    entry_price: float
    exit_price: float
    fees_quote: float
    has_entry_fill: bool
    has_exit_fill: bool
    ml_confidence: float | None
    ml_arm: str | None
    symbol: str = ""  # BASE-QUOTE: its quote names the currency of pnl_quote


@dataclass(frozen=True)
class Outcome:
    variation: str
    strategy: str
    champion: bool
    pnl_pct: float


@dataclass(frozen=True)
class Comparison:
    """A variation against CHAMPION as the shadow evaluator stored it (`shadow_performance`)."""

    variation: str
    strategy: str
    window_h: int
    mean_diff_pct: float
    ci_low_pct: float
    ci_high_pct: float
    q_value: float | None
    p_resolution: float | None
    basis: str | None


@dataclass(frozen=True)
class Recommendation:
    id: int
    strategy: str
    status: str
    rollback_of: int | None


@dataclass(frozen=True)
class Facts:
    """What the checks read, already aggregated where the database does it better."""

    signals_by_status: dict[str, int] = field(default_factory=dict)
    funnel: Funnel = field(default_factory=Funnel)  # entry signals, as dashboard_signal_funnel counts them
    exits: ExitCounts = field(default_factory=ExitCounts)  # exit signals, as dashboard_exit_signals counts them
    strategies_with_signals: tuple[str, ...] = ()
    orders_by_purpose_status: dict[tuple[str, str], int] = field(default_factory=dict)
    closed_signals_without_trade: int = 0
    trades: tuple[TradeRow, ...] = ()
    ml_predictions: int = 0
    ml_active_models: int = 0
    outcomes: tuple[Outcome, ...] = ()
    outcomes_pending: int = 0
    recommendations: tuple[Recommendation, ...] = ()
    comparisons: tuple[Comparison, ...] = ()  # the latest evaluation pass's stored comparisons


# --- statistics ----------------------------------------------------------------------------------

def _pct(part: int, whole: int) -> str:
    return f"{part / whole * 100:.1f} %" if whole else "n/a"


# --- the checks ----------------------------------------------------------------------------------

def _logged(trade: TradeRow) -> bool:
    return trade.has_entry_fill and trade.has_exit_fill


def _pnl_consistent(trade: TradeRow) -> bool:
    """P&L after fees agrees with entry, exit and amount (to a part in a thousand of the traded value)."""
    sign = 1 if trade.side == "buy" else -1
    gross = sign * (trade.exit_price - trade.entry_price) * trade.amount
    return abs(gross - trade.fees_quote - trade.pnl_quote) <= 1e-3 * trade.entry_price * trade.amount + 1e-12


def _signals_checks(f: Facts) -> list[Check]:
    # Entries must reach the bot; an exit the queue resolves unclaimed (its entry holds no position) is the
    # queue doing its job, so exits are shown beside the check, not judged by it.
    e, x = f.funnel, f.exits
    entries = sum(n for (purpose, _), n in f.orders_by_purpose_status.items() if purpose == "entry")
    exits = sum(n for (purpose, _), n in f.orders_by_purpose_status.items() if purpose == "exit")
    stages = ", ".join(f"{count} {stage}" for stage, count in e.stages())
    return [
        Check("signals reaching Hummingbot", e.claimed > 0 and e.never_claimed == 0,
              f"{e.claimed} of {e.emitted} entry signals claimed by an executor, {e.waiting} waiting, "
              f"{e.never_claimed} expired unclaimed; entry funnel: {stages}; exit signals: {x.emitted} emitted, "
              f"{x.claimed} claimed, {x.executed} executed, {x.rejected} rejected, {x.expired} expired"),
        Check("orders placed", entries > 0, f"{entries} entry and {exits} exit orders"),
    ]


def _tracking_checks(f: Facts) -> list[Check]:
    trades = f.trades
    open_positions = f.signals_by_status.get("executing", 0)
    inconsistent = sum(not _pnl_consistent(t) for t in trades)
    totals: dict[str, float] = {}
    for t in trades:  # amounts of two quote currencies are never added
        quote = t.symbol.rsplit("-", 1)[-1] or "quote"
        totals[quote] = totals.get(quote, 0.0) + t.pnl_quote
    total = ", ".join(f"{v:+.8f}".rstrip("0").rstrip(".") + f" {q}" for q, v in sorted(totals.items())) or "0"
    return [
        Check("positions tracked", bool(trades) and f.closed_signals_without_trade == 0,
              f"{len(trades)} closed positions with a trade row, {f.closed_signals_without_trade} closed signals "
              f"without one, {open_positions} open"),
        Check("P&L calculated", bool(trades) and inconsistent == 0,
              f"total {total} over {len(trades)} trades, {inconsistent} disagree with "
              "entry/exit/amount/fees"),
    ]


def phase1(f: Facts) -> PhaseResult:
    n = len(f.trades)
    checks = [Check("10+ trades", n >= 10, f"{n} closed trades"), *_signals_checks(f), *_tracking_checks(f)]
    return PhaseResult(1, "rules trading on paper", tuple(checks))


def phase2(f: Facts) -> PhaseResult:
    n = len(f.trades)
    orders = sum(f.orders_by_purpose_status.values())
    failed = sum(c for (_, status), c in f.orders_by_purpose_status.items() if status == "failed")
    stops = [t for t in f.trades if t.exit_reason == "stop_loss"]
    profits = [t for t in f.trades if t.exit_reason == "take_profit"]
    traded = {t.strategy for t in f.trades}
    untested = sorted(set(f.strategies_with_signals) - traded)
    per_strategy = ", ".join(f"{s}: {sum(t.strategy == s for t in f.trades)}" for s in sorted(traded)) or "none"
    unlogged = sum(not _logged(t) for t in f.trades) + f.closed_signals_without_trade
    checks = (
        Check("50+ trades", n >= 50, f"{n} closed trades"),
        Check("order failure rate < 5 %", orders > 0 and failed / orders < 0.05,
              f"{failed} of {orders} orders failed ({_pct(failed, orders)})"),
        Check("stop loss seen working", bool(stops) and all(t.pnl_pct < 0 for t in stops),
              f"{len(stops)} stop-loss exits, {sum(t.pnl_pct < 0 for t in stops)} of them at a loss"),
        Check("take profit seen working", bool(profits) and all(t.pnl_pct > 0 for t in profits),
              f"{len(profits)} take-profit exits, {sum(t.pnl_pct > 0 for t in profits)} of them at a profit"),
        Check("every strategy tested", bool(traded) and not untested,
              f"trades per strategy: {per_strategy}" + (f"; signals but no trade: {', '.join(untested)}"
                                                         if untested else "")),
        Check("every trade logged", n > 0 and unlogged == 0,
              f"{n - sum(not _logged(t) for t in f.trades)} of {n} trades with entry and exit fills, "
              f"{f.closed_signals_without_trade} closed signals without a trade row"),
    )
    return PhaseResult(2, "validation at volume", checks)


def ml_arms(trades: Sequence[TradeRow]) -> tuple[list[TradeRow], list[TradeRow]]:
    """(boosted, control) trades by their signal's latest ml_predictions arm."""
    return [t for t in trades if t.ml_arm == "boosted"], [t for t in trades if t.ml_arm == "control"]


SEED_LIFT = 0.05  # the seed's phase-3 aim: boosted trades win 5 points more often than control
POWER = 0.8


def ml_lift(strategy: str, boosted: Sequence[TradeRow], control: Sequence[TradeRow]) -> tuple[str, str]:
    """("holds" | "worse" | "undecided", figure) for one strategy's boosted vs control win rates.

    The pre-registered metric is the win rate, the seed's own criterion. It holds only when the 95 % interval
    of the difference lies above zero, and is worse when it lies below; otherwise it is undecided, with the
    trades still needed to detect the seed's +5 points at 80 % power at the arms' current split (neither a
    pass nor a fail). Strategies are never pooled: a change in their mix alone would show as a lift."""
    from stats import power, rates  # statsmodels is heavy; only phase 3 needs it

    wins_b, wins_c = sum(t.pnl_quote > 0 for t in boosted), sum(t.pnl_quote > 0 for t in control)
    n_b, n_c = len(boosted), len(control)
    base = wins_c / n_c if n_c else 0.45
    share = n_b / (n_b + n_c) if n_b and n_c else 0.8  # ml.control_share's default 0.2
    share = min(max(share, 0.05), 0.95)
    needed = power.trades_needed_rates(min(max(base, 0.01), 0.94), min(max(base, 0.01), 0.94) + SEED_LIFT,
                                       treatment_share=share, power=POWER)
    more = max(0, needed.treatment - n_b) + max(0, needed.control - n_c)
    arms = f"boosted {_pct(wins_b, n_b)} of {n_b}, control {_pct(wins_c, n_c)} of {n_c}"
    if not n_b or not n_c:
        return "undecided", f"{strategy}: {arms}: a side is empty; undecided: {more} more trades needed"
    diff, low, high = rates.rate_difference(wins_b, n_b, wins_c, n_c)
    figure = f"{strategy}: {diff * 100:+.1f} points (95 % CI {low * 100:+.1f} to {high * 100:+.1f}): {arms}"
    if low > 0:
        return "holds", f"{figure}: holds"
    if high < 0:
        return "worse", f"{figure}: boosted wins less"
    return "undecided", f"{figure}: undecided: {more} more trades needed for +5 points at 80 % power"


def phase3(f: Facts) -> PhaseResult:
    boosted, control = ml_arms(f.trades)
    strategies = sorted({t.strategy for t in (*boosted, *control)})
    verdicts = [ml_lift(s, [t for t in boosted if t.strategy == s], [t for t in control if t.strategy == s])
                for s in strategies]
    if verdicts:
        holds = any(v == "holds" for v, _ in verdicts) and not any(v == "worse" for v, _ in verdicts)
        lift = Check("win rate up vs control, per strategy", holds, "; ".join(text for _, text in verdicts))
    else:
        lift = Check("win rate up vs control, per strategy", False,
                     f"{len(boosted)} boosted and {len(control)} control trades: a side is empty")
    checks = (
        Check("ML predictions generated", f.ml_predictions > 0 and f.ml_active_models > 0,
              f"{f.ml_predictions} predictions, {f.ml_active_models} active model(s)"),
        Check("100+ ML-influenced trades", len(boosted) >= 100, f"{len(boosted)} trades of ML-boosted signals"),
        lift,
    )
    return PhaseResult(3, "ML as a booster", checks)


def _q(c: Comparison) -> str:
    """q with the resolution of the resampling behind it ("< 0.001" at the floor)."""
    assert c.q_value is not None
    return PValue(min(1.0, c.q_value), c.p_resolution or 0.0).display()


def phase4(f: Facts) -> PhaseResult:
    tested = [c for c in f.comparisons if c.q_value is not None]
    different = sorted((c for c in tested if c.q_value is not None and c.q_value < SIGNIFICANCE),
                       key=lambda c: (c.strategy, c.variation, c.window_h))
    shown = "; ".join(f"{c.variation} ({c.strategy}, {c.window_h} h) {c.mean_diff_pct:+.2f} % per candidate "
                      f"[{c.ci_low_pct:+.2f}, {c.ci_high_pct:+.2f}] {c.basis}, q {_q(c)}" for c in different)
    rollbacks = {r.rollback_of for r in f.recommendations if r.rollback_of is not None}
    changes = [r for r in f.recommendations if r.rollback_of is None]  # rollback rows undo, they recommend nothing
    applied = [r for r in changes if r.status in ("applied", "rolled_back")]
    rolled_back = [r for r in applied if r.status == "rolled_back" or r.id in rollbacks]
    standing = [r for r in applied if r not in rolled_back]
    checks = (
        Check("variations evaluated", len({o.variation for o in f.outcomes}) >= 2,
              f"{len(f.outcomes)} evaluated outcomes over {len({o.variation for o in f.outcomes})} variations, "
              f"{f.outcomes_pending} pending"),
        Check("variations with significantly different results", bool(different),
              f"{len(different)} of {len(tested)} stored comparisons of the latest pass differ from the champion"
              f" at q < {SIGNIFICANCE} (Benjamini-Hochberg over the pass)" + (f": {shown}" if shown else "")),
        Check("recommendations validated", bool(standing),
              f"{len(changes)} recommendations, {len(applied)} applied, {len(rolled_back)} rolled back, "
              f"{len(standing)} standing"),
    )
    return PhaseResult(4, "shadows recommending", checks)


def check_phase(phase: int, facts: Facts) -> PhaseResult:
    return {1: phase1, 2: phase2, 3: phase3, 4: phase4}[phase](facts)


# --- reading the database ------------------------------------------------------------------------

def read_facts(conn: psycopg.Connection) -> Facts:
    """Read what the checks need (read only; ends its transaction)."""
    signals = dict(conn.execute("select status, count(*) from signals group by 1").fetchall())
    funnel, exits = read_funnel(conn), read_exits(conn)
    strategies = tuple(r[0] for r in conn.execute("select distinct strategy from signals order by 1").fetchall())
    orders = {(p, s): n for p, s, n in conn.execute(
        "select purpose, status, count(*) from orders group by 1, 2").fetchall()}
    # an exit signal closes its entry's position: the trade row is the entry's, never its own
    orphans = conn.execute("select count(*) from signals s where s.status = 'closed' and s.kind = 'entry'"
                           " and not exists (select 1 from trades t where t.signal_id = s.id)").fetchone()[0]
    trades = tuple(TradeRow(*row) for row in conn.execute("""
        select s.strategy, t.pnl_quote::float8, t.pnl_pct::float8, t.exit_reason, t.side, t.amount::float8,
               t.entry_price::float8, t.exit_price::float8, t.fees_quote::float8,
               exists (select 1 from fills f join orders o using (client_order_id)
                        where f.signal_id = t.signal_id and o.purpose = 'entry'),
               exists (select 1 from fills f join orders o using (client_order_id)
                        where f.signal_id = t.signal_id and o.purpose = 'exit'),
               s.ml_confidence,
               (select p.arm from ml_predictions p where p.signal_id = s.id order by p.id desc limit 1),
               t.symbol
          from trades t join signals s on s.id = t.signal_id
         order by t.closed_at""").fetchall())
    predictions = conn.execute("select count(*) from ml_predictions").fetchone()[0]
    models = conn.execute("select count(*) from ml_models where active").fetchone()[0]
    outcomes = tuple(Outcome(*row) for row in conn.execute("""
        select v.name, v.strategy, v.name = %s, o.pnl_pct::float8
          from shadow_outcomes o join shadow_variations v on v.id = o.variation_id
         where o.status = 'evaluated' and o.would_enter and o.pnl_pct is not null""", (CHAMPION,)).fetchall())
    pending = conn.execute("select count(*) from shadow_outcomes where status = 'pending'").fetchone()[0]
    recommendations = tuple(Recommendation(*row) for row in conn.execute(
        "select id, strategy, status, rollback_of from recommendations order by id").fetchall())
    comparisons = tuple(Comparison(*row) for row in conn.execute("""
        select v.name, p.strategy, p.window_h, p.mean_diff_pct::float8, p.ci_low_pct::float8,
               p.ci_high_pct::float8, p.q_value::float8, p.p_resolution, p.basis
          from shadow_performance p join shadow_variations v on v.id = p.variation_id
         where p.window_end = (select max(window_end) from shadow_performance) and v.name <> %s
           and p.window_h is not null
         order by p.strategy, v.name, p.window_h""", (CHAMPION,)).fetchall())
    conn.rollback()
    return Facts(signals, funnel, exits, strategies, orders, orphans, trades, predictions, models, outcomes, pending,
                 recommendations, comparisons)


def check(conn: psycopg.Connection, phases: Sequence[int]) -> list[PhaseResult]:
    facts = read_facts(conn)
    return [check_phase(p, facts) for p in phases]
