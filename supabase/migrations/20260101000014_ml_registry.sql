-- Phase 3 ML: who promoted a model and why, which arm of the randomized control each prediction fell in,
-- and a dashboard view that compares boosted signals with their control and with signals ML never touched.

alter table ml_models
    add column promoted_at    timestamptz,
    add column promoted_by    text,           -- 'gate' or the user who forced it (cli:<user>)
    add column promotion_note text,           -- the gate's verdict, or why it was forced
    add column evaluations    jsonb not null default '[]';  -- later out-of-sample evaluations (ml evaluate)

-- one row per scored candidate; `arm` says what the score was allowed to do:
--   boosted  scored and allowed to change size (and to veto, when ml.veto is on)
--   control  scored, not allowed to act (a share chosen by a hash of the signal's key)
--   ood      scored on inputs unlike the training set: no effect
--   stale    scored by a model older than ml.max_age_days: no effect
--   off      scored while ml.enabled is false: no effect
alter table ml_predictions
    add column arm             text not null default 'off'
                               check (arm in ('boosted', 'control', 'ood', 'stale', 'off')),
    add column size_multiplier double precision not null default 1 check (size_multiplier between 0.5 and 1.5),
    add column dissimilarity   double precision check (dissimilarity between 0 and 1),
    add column vetoed          boolean not null default false;

-- the view of 0007 compared ML-scored with unscored signals, which mixes who was scored with what
-- scoring did; the arms compare like with like. A 95 % Wilson interval on each win rate.
drop view dashboard_ml_vs_rules;
create view dashboard_ml_vs_rules as
with arms as (
    select s.strategy,
           coalesce((select p.arm from ml_predictions p where p.signal_id = s.id order by p.id desc limit 1),
                    'ml_off') as arm,
           t.pnl_quote, t.pnl_pct
      from trades t
      join signals s on s.id = t.signal_id
), rated as (
    select strategy, arm, count(*) as trades, count(*) filter (where pnl_quote > 0) as wins,
           sum(pnl_quote) as pnl_quote, avg(pnl_pct) as avg_pnl_pct
      from arms
     group by 1, 2
)
select strategy, arm, trades, wins,
       round(wins::numeric / trades * 100, 2)                                        as win_rate_pct,
       round(((p + z * z / (2 * n) - z * sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
              * 100)::numeric, 2)                                                    as win_rate_ci_low_pct,
       round(((p + z * z / (2 * n) + z * sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
              * 100)::numeric, 2)                                                    as win_rate_ci_high_pct,
       pnl_quote,
       round(avg_pnl_pct, 4)                                                         as avg_pnl_pct
  from rated,
       lateral (select wins::float8 / trades as p, trades::float8 as n, 1.96::float8 as z) w;

select apply_access_policy();
