-- The leaderboard shows what the evaluator stored and nothing else, as a reader should see it: each window
-- with the span its evidence really covers, windows whose evidence is the same shown once, no rows for
-- variations that change nothing, figures rounded to what they can tell (P&L to 0.01 %, p and q to three
-- digits, "< 0.001" at the resampling's floor).

-- The first and last decision (candle) a window's comparison read, and how many candidates (scans) it held:
-- a 720 h window over 5 days of evidence covers those 5 days, not a month.
alter table shadow_performance
    add column evidence_start timestamptz,
    add column evidence_end   timestamptz,
    add column candidates     integer check (candidates >= 0);

-- A p-value (or q) as text with three digits, "< 0.001" below them or at the floor `resolution` of the
-- resampling behind it; the same text as stats.pvalues.PValue.display(3) (a test holds them together).
create or replace function shadow_p_shown(value double precision, resolution double precision)
returns text language sql immutable as $$
    select case
        when value is null then null
        when coalesce(resolution, 0) > 0 and value <= resolution * (1 + 1e-9) then
            case when greatest(0.001, power(10::double precision, ceil(log(resolution)))) < 1
                 then '< ' || to_char(greatest(0.001, power(10::double precision, ceil(log(resolution)))), 'FM0.000')
                 else '<= ' || to_char(resolution, 'FM0.000') end
        when value < 0.001 then '< 0.001'
        else to_char(value, 'FM0.000')
    end
$$;

drop view dashboard_shadow_leaderboard;
create view dashboard_shadow_leaderboard as
with latest as (  -- each window's latest row per variation
    select distinct on (p.variation_id, p.window_h) p.*,
           coalesce(p.evidence_start, p.window_start) as span_start,
           coalesce(p.evidence_end, p.window_end)     as span_end
      from shadow_performance p
     order by p.variation_id, p.window_h, p.window_end desc
), spans as (  -- windows of one pass that read the same evidence: one row, the shortest window, all listed
    select l.*,
           array_agg(l.window_h) over same_evidence                        as windows_h,
           row_number() over (same_evidence order by l.window_h nulls last) as nth
      from latest l
    window same_evidence as (partition by l.variation_id, l.window_end, l.span_start, l.span_end)
)
select v.strategy, v.name, v.params_hash, s.window_h, s.windows_h,
       greatest(s.window_start, s.span_start) as window_start, s.window_end,
       s.evidence_start, s.evidence_end, s.candidates, s.trades, s.wins,
       round(s.wins::numeric / nullif(s.trades, 0) * 100, 2)  as win_rate_pct,
       round(s.avg_pnl_pct, 2)                                 as avg_pnl_pct,
       round(s.total_pnl_pct, 2)                               as total_pnl_pct,
       round(s.max_drawdown_pct, 2)                            as max_drawdown_pct,
       round(s.sharpe::numeric, 2)                             as sharpe,
       s.paired_n,
       round(s.mean_diff_pct::numeric, 2)                      as mean_diff_pct,
       round(s.ci_low_pct::numeric, 2)                         as ci_low_pct,
       round(s.ci_high_pct::numeric, 2)                        as ci_high_pct,
       round(s.mde_pct::numeric, 2)                            as mde_pct,
       round(s.p_value::numeric, 3)                            as p_value,
       round(s.q_value::numeric, 3)                            as q_value,
       shadow_p_shown(s.p_value, s.p_resolution)               as p_shown,
       -- (least() skips a null: CHAMPION, compared with nothing, would read q = 1)
       shadow_p_shown(case when s.q_value > 1 then 1 else s.q_value end, s.p_resolution) as q_shown,
       s.basis
  from shadow_variations v
  join spans s on s.variation_id = v.id
 where v.active and s.nth = 1 and s.basis is distinct from 'no-op';

-- The leaderboard view runs as its reader, who calls shadow_p_shown: apply_access_policy() takes execute
-- back from every role on each run, so it grants this one again, as it does is_dashboard_member().
create or replace function apply_access_policy()
returns void
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    r record;
begin
    perform gate_views();
    perform apply_base_access_policy();
    -- the gated views call these as the reader
    grant execute on function is_dashboard_member() to authenticated;
    grant execute on function shadow_p_shown(double precision, double precision) to authenticated;
    -- a materialized view cannot ask who reads it: the controller only
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relkind = 'm'
    loop
        execute format('revoke all on %I from authenticated', r.relname);
    end loop;
end
$$;

select apply_access_policy();
