"""Recommendations that reach trading: written with their evidence, applied as a new `strategy_params`
version that the next scan reads (through `ActiveParams`, injected into the Scanner by the wiring), and
rolled back as a new row pointing at the change, the previous version active again.

Applying needs the flag `shadow.apply`; with it off nothing is activated and the scanner keeps reading
conf/strategies.yml (or the version active before).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bridge.schemas import params_hash
from controller.scan.strategy_params import StrategiesConfig, StrategyConfig
from shadow.recommend import Recommendation
from shadow.rollback import LiveTrade, against_previous, baseline_of, emergency, half_way, trigger, underperforms
from shadow.settings import RollbackConfig
from shadow.variations import CHAMPION, PREVIOUS

logger = logging.getLogger(__name__)


class ApplyRefused(Exception):
    """An apply or rollback that cannot be done; the message says why."""


def params_json(section: StrategyConfig[Any]) -> dict[str, Any]:
    """The stored form of a strategy's parameters: the default and each tier's complete set."""
    params = section.params
    return {"default": params.default.model_dump(mode="json"),
            "tiers": {tier: p.model_dump(mode="json") for tier, p in params.tiers.items()}}


def with_params(section: StrategyConfig[Any], stored: Mapping[str, Any]) -> StrategyConfig[Any]:
    """`section` with the stored parameters (validated by the strategy's model), keeping its tier map."""
    model = type(section.params)
    params = model.model_validate(dict(stored)).with_tier_map(section.params.tier_map)
    return section.model_copy(update={"params": params})


class ActiveParams:
    """The scanner's lookup: a strategy's active `strategy_params` version, else the conf section.

    One small query per strategy per scan; the parsed version is cached until another one is active.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection]) -> None:
        self.connect = connect
        self._cache: dict[tuple[str, int], StrategyConfig[Any]] = {}

    def __call__(self, strategy: str, section: StrategyConfig[Any]) -> StrategyConfig[Any]:
        with self.connect() as conn:
            row = conn.execute("select version, params from dashboard_active_strategy_params where strategy = %s",
                               (strategy,)).fetchone()
        if row is None:
            return section
        key = (strategy, row[0])
        if key not in self._cache:
            self._cache[key] = with_params(section, row[1])
        return self._cache[key]

    def canary(self, strategy: str, section: StrategyConfig[Any]) -> tuple[StrategyConfig[Any], float] | None:
        """(the control version's section, the canary share) while the latest activation is a canary."""
        with self.connect() as conn:
            row = conn.execute(
                "select a.canary_share, sp.version, sp.params from strategy_params_activations a"
                " join strategy_params sp on sp.strategy = a.strategy and sp.version = a.control_version"
                " where a.id = (select max(id) from strategy_params_activations where strategy = %s)",
                (strategy,)).fetchone()
        if row is None:
            return None
        key = (strategy, row[1])
        if key not in self._cache:
            self._cache[key] = with_params(section, row[2])
        return self._cache[key], float(row[0])


def active_section(conn: psycopg.Connection, strategy: str, section: StrategyConfig[Any]) -> StrategyConfig[Any]:
    row = conn.execute("select params from dashboard_active_strategy_params where strategy = %s",
                       (strategy,)).fetchone()
    return section if row is None else with_params(section, row[0])


def active_config(conn: psycopg.Connection, config: StrategiesConfig) -> StrategiesConfig:
    """`config` with each strategy's active version in place of its conf parameters."""
    return config.model_copy(update={name: active_section(conn, name, section) for name, section in config.items()})


def write_recommendation(conn: psycopg.Connection, current: StrategyConfig[Any], rec: Recommendation) -> int:
    """Record a proposed recommendation with its evidence; return its id."""
    changes = {key: {where: list(v) for where, v in per.items()} for key, per in rec.changes.items()}
    row = conn.execute(
        "insert into recommendations (strategy, from_params_hash, to_params_hash, params, evidence, variation, tier)"
        " values (%s, %s, %s, %s, %s, %s, %s) returning id",
        (rec.strategy, params_hash(params_json(current)), params_hash(params_json(rec.section)),
         Jsonb(params_json(rec.section)), Jsonb({**rec.evidence, "changes": changes}), rec.variation,
         rec.tier)).fetchone()
    return int(row[0])


def _register(conn: psycopg.Connection, strategy: str, stored: dict[str, Any]) -> int:
    return int(conn.execute("select register_strategy_params(%s, %s, %s)",
                            (strategy, Jsonb(stored), params_hash(stored))).fetchone()[0])


def apply(conn: psycopg.Connection, recommendation_id: int, config: StrategiesConfig, flags: Mapping[str, Any],
          now: datetime, *, canary_share: float = 0.0) -> int:
    """Activate a proposed recommendation's parameters; return the new version. Refused with the flag
    `shadow.apply` off, for a recommendation not proposed, or one drawn from parameters no longer active.
    `canary_share` in (0, 1): a canary rollout, that share of the scan's decisions on the new version and
    the rest on the one before, until the monitor ends it with its window."""
    if not flags.get("shadow.apply", False):
        raise ApplyRefused("shadow.apply is off: recommendations are written, never applied "
                           "(python -m controller flags set shadow.apply true)")
    cur = conn.cursor(row_factory=dict_row)
    rec = cur.execute("select * from recommendations where id = %s for update", (recommendation_id,)).fetchone()
    if rec is None:
        raise ApplyRefused(f"no recommendation {recommendation_id}")
    if rec["status"] != "proposed":
        raise ApplyRefused(f"recommendation {recommendation_id} is {rec['status']}, not proposed")
    section = dict(config.items()).get(rec["strategy"])
    if section is None:
        raise ApplyRefused(f"recommendation {recommendation_id}: unknown strategy {rec['strategy']}")
    current = active_section(conn, rec["strategy"], section)
    stored_now = params_json(current)
    if params_hash(stored_now) != rec["from_params_hash"]:
        raise ApplyRefused(f"recommendation {recommendation_id} was drawn from parameters that are no longer active")
    to_apply = with_params(section, rec["params"])  # validate before anything is written
    replayed = conn.execute(
        "select v.name from shadow_variations v where v.strategy = %s and v.params_hash = %s"
        " and exists (select 1 from shadow_outcomes o where o.variation_id = v.id) order by v.id limit 1",
        (rec["strategy"], to_apply.params_hash())).fetchone()
    if replayed is None:
        raise ApplyRefused(f"recommendation {recommendation_id}: its parameters were never replayed as a variation "
                           "(only a tested set is applied)")
    control = _register(conn, rec["strategy"], stored_now)  # the version to roll back to
    version = _register(conn, rec["strategy"], rec["params"])
    canary = 0 < canary_share < 1
    conn.execute("insert into strategy_params_activations (strategy, version, recommendation_id, reason, activated_at,"
                 " canary_share, control_version) values (%s, %s, %s, %s, %s, %s, %s)",
                 (rec["strategy"], version, recommendation_id,
                  f"recommendation {recommendation_id} ({rec['variation']}, {rec['tier']})"
                  + (f", canary on {canary_share:.0%} of decisions" if canary else ""), now,
                  canary_share if canary else None, control if canary else None))
    conn.execute("update recommendations set status = 'applied', decided_at = %s, version = %s where id = %s",
                 (now, version, recommendation_id))
    logger.info("recommendation applied", extra={"recommendation_id": recommendation_id,
                                                  "strategy": rec["strategy"], "version": version})
    return version


def rollback(conn: psycopg.Connection, recommendation_id: int, config: StrategiesConfig, reason: str,
             now: datetime) -> int:
    """Undo an applied recommendation: a new row pointing at it, the previous parameters active again.
    Returns the new row's id."""
    cur = conn.cursor(row_factory=dict_row)
    rec = cur.execute("select * from recommendations where id = %s for update", (recommendation_id,)).fetchone()
    if rec is None:
        raise ApplyRefused(f"no recommendation {recommendation_id}")
    if rec["status"] != "applied" or rec["rollback_of"] is not None:
        raise ApplyRefused(f"recommendation {recommendation_id} is {rec['status']}: only an applied change rolls back")
    previous = cur.execute("select version, params from strategy_params where strategy = %s and params_hash = %s",
                           (rec["strategy"], rec["from_params_hash"])).fetchone()
    if previous is None:
        raise ApplyRefused(f"recommendation {recommendation_id}: its previous parameters were never registered")
    row = conn.execute(
        "insert into recommendations (strategy, from_params_hash, to_params_hash, params, evidence, status,"
        " decided_at, rollback_of, version) values (%s, %s, %s, %s, %s, 'applied', %s, %s, %s) returning id",
        (rec["strategy"], rec["to_params_hash"], rec["from_params_hash"], Jsonb(previous["params"]),
         Jsonb({"rollback": reason}), now, recommendation_id, previous["version"])).fetchone()
    conn.execute("insert into strategy_params_activations (strategy, version, recommendation_id, reason, activated_at)"
                 " values (%s, %s, %s, %s, %s)", (rec["strategy"], previous["version"], row[0],
                                                  f"rollback of {recommendation_id}: {reason}", now))
    conn.execute("update recommendations set status = 'rolled_back' where id = %s", (recommendation_id,))
    logger.warning("recommendation rolled back", extra={"recommendation_id": recommendation_id, "reason": reason})
    return int(row[0])


def revert_half(conn: psycopg.Connection, recommendation_id: int, config: StrategiesConfig, reason: str,
                now: datetime) -> int:
    """The gradual revert's first step: parameters half-way back to those before the change become active,
    as a new row pointing at it (`evidence.revert_share` 0.5); the change stays `applied` until the monitor
    rolls it back fully or it recovers. Returns the new row's id."""
    cur = conn.cursor(row_factory=dict_row)
    rec = cur.execute("select * from recommendations where id = %s for update", (recommendation_id,)).fetchone()
    if rec is None or rec["status"] != "applied" or rec["rollback_of"] is not None:
        raise ApplyRefused(f"recommendation {recommendation_id}: only an applied change reverts")
    previous = cur.execute("select params from strategy_params where strategy = %s and params_hash = %s",
                           (rec["strategy"], rec["from_params_hash"])).fetchone()
    section = dict(config.items()).get(rec["strategy"])
    if previous is None or section is None:
        raise ApplyRefused(f"recommendation {recommendation_id}: its previous parameters were never registered")
    stored = params_json(with_params(section, half_way(rec["params"], previous["params"])))
    version = _register(conn, rec["strategy"], stored)
    row = conn.execute(
        "insert into recommendations (strategy, from_params_hash, to_params_hash, params, evidence, status,"
        " decided_at, rollback_of, version) values (%s, %s, %s, %s, %s, 'applied', %s, %s, %s) returning id",
        (rec["strategy"], rec["to_params_hash"], params_hash(stored), Jsonb(stored),
         Jsonb({"rollback": reason, "revert_share": 0.5}), now, recommendation_id, version)).fetchone()
    conn.execute("insert into strategy_params_activations (strategy, version, recommendation_id, reason, activated_at)"
                 " values (%s, %s, %s, %s, %s)", (rec["strategy"], version, row[0],
                                                  f"half-way revert of {recommendation_id}: {reason}", now))
    logger.warning("recommendation half reverted", extra={"recommendation_id": recommendation_id, "reason": reason})
    return int(row[0])


def applied_times(conn: psycopg.Connection, since: datetime) -> list[datetime]:
    return [r[0] for r in conn.execute("select decided_at from recommendations where status in ('applied',"
                                       " 'rolled_back') and rollback_of is null and decided_at >= %s",
                                       (since,)).fetchall()]


def end_canary(conn: psycopg.Connection, recommendation_id: int, now: datetime) -> bool:
    """A canary of `recommendation_id` that is still the latest activation becomes a full rollout (its
    window passed without a rollback). Returns whether it did."""
    row = conn.execute("select a.strategy, a.version from strategy_params_activations a where a.recommendation_id = %s"
                       " and a.canary_share is not null and a.id = (select max(id) from strategy_params_activations"
                       " where strategy = a.strategy)", (recommendation_id,)).fetchone()
    if row is None:
        return False
    conn.execute("insert into strategy_params_activations (strategy, version, recommendation_id, reason, activated_at)"
                 " values (%s, %s, %s, %s, %s)", (row[0], row[1], recommendation_id,
                                                  f"recommendation {recommendation_id}: canary window passed, "
                                                  "full rollout", now))
    return True


def regime_readings(conn: psycopg.Connection, since: datetime, until: datetime) -> list[tuple[datetime, str, str]]:
    """The regime each scan recorded in [since, until]: (scan time, regime, its BTC changes), one per scan time."""
    rows = conn.execute(
        "select distinct on (candle_ts) candle_ts, features ->> 'regime', features ->> 'regime_market',"
        " features ->> 'btc_change_1h_pct', features ->> 'btc_change_24h_pct' from scans"
        " where candle_ts >= %s and candle_ts <= %s and features ? 'regime' order by candle_ts, id",
        (since, until)).fetchall()
    out = []
    for at, regime, market, change_1h, change_24h in rows:
        read = ", ".join(f"{label} {float(v):+.2f} %" for label, v in (("1h", change_1h), ("24h", change_24h))
                         if v is not None)
        out.append((at, str(regime), f"{market or 'no market'}{': ' + read if read else ''}"))
    return out


def applied_vs_previous(conn: psycopg.Connection, strategy: str, since: datetime, until: datetime) -> np.ndarray:
    """Per candidate since the change where the active CHAMPION (the applied parameters) and PREVIOUS came
    out differently, in scan order: 1 where the applied did better (net P&L per unit, 0 without an entry)."""
    rows = conn.execute(
        "select a.pnl > p.pnl from"
        " (select o.exchange, o.symbol, o.candle_ts, case when o.would_enter then o.pnl_pct else 0 end as pnl"
        "    from shadow_outcomes o join shadow_variations v on v.id = o.variation_id"
        "   where v.active and v.name = %s and v.strategy = %s and o.status = 'evaluated') a"
        " join (select o.exchange, o.symbol, o.candle_ts, case when o.would_enter then o.pnl_pct else 0 end as pnl"
        "    from shadow_outcomes o join shadow_variations v on v.id = o.variation_id"
        "   where v.active and v.name = %s and v.strategy = %s and o.status = 'evaluated') p"
        "   using (exchange, symbol, candle_ts)"
        " where candle_ts >= %s and candle_ts <= %s and a.pnl <> p.pnl order by candle_ts, exchange, symbol",
        (CHAMPION, strategy, PREVIOUS, strategy, since, until)).fetchall()
    return np.array([bool(r[0]) for r in rows], dtype=bool)


def shadow_running(conn: psycopg.Connection, strategy: str, since: datetime) -> bool:
    """Whether the evaluator replays PREVIOUS for `strategy` on candidates since the change."""
    return conn.execute("select exists (select 1 from shadow_outcomes o join shadow_variations v on v.id ="
                        " o.variation_id where v.active and v.name = %s and v.strategy = %s and o.candle_ts >= %s)",
                        (PREVIOUS, strategy, since)).fetchone()[0]


def _trades(conn: psycopg.Connection, strategy: str, since: datetime) -> list[LiveTrade]:
    return [LiveTrade(c, r, float(p), a) for c, r, p, a in conn.execute(
        "select t.closed_at, t.exit_reason, t.pnl_pct, s.features ->> 'params_arm' from trades t"
        " join signals s on s.id = t.signal_id where s.strategy = %s and t.closed_at >= %s order by t.closed_at",
        (strategy, since)).fetchall()]


def monitor(conn: psycopg.Connection, config: StrategiesConfig, rollback_config: RollbackConfig,
            now: datetime) -> list[tuple[int, str]]:
    """Roll back every change applied within the monitoring window whose live results (or the regime)
    tripped a trigger; at the end of its window, move a change that underperformed half-way back; and
    roll back fully a half-reverted change that did not recover within the next window.
    Returns (recommendation id, reason) per step taken."""
    done = []
    window = timedelta(hours=rollback_config.monitor_h)
    recs = conn.execute("select id, strategy, decided_at from recommendations r where status = 'applied'"
                        " and rollback_of is null and decided_at >= %s"
                        " and not exists (select 1 from recommendations h where h.rollback_of = r.id)",
                        (now - 2 * window,)).fetchall()
    for rec_id, strategy, applied_at in recs:
        trades = _trades(conn, strategy, applied_at - window)
        baseline = baseline_of([t for t in trades if t.closed_at < applied_at])
        # a canary's control trades ran on the previous parameters: they are not the change's results
        after = [t for t in trades if applied_at <= t.closed_at <= applied_at + window and t.arm != "control"]
        if now <= applied_at + window:
            reason = emergency(applied_at, now, regime_readings(conn, applied_at, now), rollback_config)
            shadowed = shadow_running(conn, strategy, applied_at)
            reason = reason or trigger(applied_at, now, baseline, after, rollback_config, with_shadow=shadowed)
            if shadowed:
                reason = reason or against_previous(applied_vs_previous(conn, strategy, applied_at, now),
                                                    rollback_config)
            if reason is not None:
                rollback(conn, rec_id, config, reason, now)
                done.append((rec_id, reason))
        elif (reason := underperforms(baseline, after, rollback_config)) is not None:
            reason = f"gradual: {reason}; half-way back"
            revert_half(conn, rec_id, config, reason, now)
            done.append((rec_id, reason))
        else:
            end_canary(conn, rec_id, now)
    halves = conn.execute(
        "select r.id, r.strategy, r.decided_at, h.decided_at from recommendations h"
        " join recommendations r on r.id = h.rollback_of where h.evidence ? 'revert_share' and r.status = 'applied'"
        " and h.decided_at <= %s and exists (select 1 from dashboard_active_strategy_params a"
        " where a.strategy = h.strategy and a.params_hash = h.to_params_hash)", (now - window,)).fetchall()
    # only while the half-way set is still the active one: a later change is not undone from under it
    for rec_id, strategy, applied_at, halved_at in halves:
        trades = _trades(conn, strategy, applied_at - window)
        baseline = baseline_of([t for t in trades if t.closed_at < applied_at])
        after = [t for t in trades if halved_at <= t.closed_at <= halved_at + window]
        if (reason := underperforms(baseline, after, rollback_config)) is not None:
            reason = f"gradual: no recovery in {rollback_config.monitor_h:g} h after the half-way revert: {reason}"
            rollback(conn, rec_id, config, reason, now)
            done.append((rec_id, reason))
    return done
