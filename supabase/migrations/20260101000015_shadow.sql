-- Phase 4, shadow variations: what the evaluator records beside 0005's tables, which strategy_params
-- version is active (so an applied recommendation reaches the very next scan), the calibration of
-- CHAMPION against real trades, and a leaderboard with the paired statistics.

-- An outcome knows its strategy, the barriers it was replayed with, the candles it used (1m, or 5m where
-- 1m was missing), its relative size and when it exited. pnl_pct is net of fees and slippage.
alter table shadow_outcomes
    add column strategy        text,
    add column barriers        jsonb,
    add column size_multiplier numeric not null default 1 check (size_multiplier > 0),
    add column data_timeframe  text check (data_timeframe in ('1m', '5m')),
    add column exit_at         timestamptz;
-- statistics read evaluated outcomes by strategy and time
create index shadow_outcomes_evaluated_idx on shadow_outcomes (strategy, candle_ts) where status = 'evaluated';

alter table shadow_variations
    add column description text not null default '';

-- Per window: the figures the dashboard ranks by, and the paired difference to CHAMPION.
alter table shadow_performance
    add column strategy       text,
    add column window_h       integer,
    add column sharpe         double precision,
    add column win_rate_pct   double precision,
    add column paired_n       integer,
    add column mean_diff_pct  double precision,  -- variation minus CHAMPION per candidate, size-weighted net %
    add column ci_low_pct     double precision,
    add column ci_high_pct    double precision,
    add column p_value        double precision,
    add column q_value        double precision;  -- Benjamini-Hochberg across the variations of the strategy

alter table recommendations
    add column variation text,
    add column tier      text,
    add column version   integer;  -- the strategy_params version applying it registered (or restored)

-- Which parameter version each strategy trades with: the latest row per strategy. Immutable rows, so the
-- history of changes (and of rollbacks) stays readable; no row means conf/strategies.yml.
create table strategy_params_activations (
    id                bigint generated always as identity primary key,
    strategy          text not null,
    version           integer not null,
    recommendation_id bigint references recommendations (id),
    reason            text not null,
    activated_at      timestamptz not null default now(),
    foreign key (strategy, version) references strategy_params (strategy, version)
);
create index strategy_params_activations_latest_idx on strategy_params_activations (strategy, id desc);

-- (a dashboard view too: which parameter version each strategy trades with, and why)
create view dashboard_active_strategy_params as
select distinct on (a.strategy)
       a.strategy, a.version, sp.params, sp.params_hash, a.recommendation_id, a.reason, a.activated_at
  from strategy_params_activations a
  join strategy_params sp on sp.strategy = a.strategy and sp.version = a.version
 order by a.strategy, a.id desc;

-- CHAMPION replayed from each real closed trade's entry, against what really happened.
create table shadow_calibration (
    signal_id         uuid primary key references signals (id),
    strategy          text not null,
    real_exit_reason  text not null,
    sim_exit_reason   text,  -- null: the candles do not reach the exit yet
    real_entry_price  numeric not null,
    sim_entry_price   numeric not null,
    real_exit_price   numeric not null,
    sim_exit_price    numeric,
    real_pnl_pct      numeric not null,
    sim_pnl_pct       numeric,
    agrees            boolean,
    computed_at       timestamptz not null default now()
);

drop view dashboard_shadow_leaderboard;
create view dashboard_shadow_leaderboard as
select distinct on (v.id, p.window_h)
       v.strategy, v.name, v.params_hash, p.window_h, p.window_start, p.window_end, p.trades, p.wins,
       round(p.wins::numeric / nullif(p.trades, 0) * 100, 2) as win_rate_pct,
       p.avg_pnl_pct, p.total_pnl_pct, p.max_drawdown_pct, p.sharpe,
       p.paired_n, p.mean_diff_pct, p.ci_low_pct, p.ci_high_pct, p.p_value, p.q_value
  from shadow_variations v
  join shadow_performance p on p.variation_id = v.id
 where v.active
 order by v.id, p.window_h, p.window_end desc;

select apply_access_policy();
