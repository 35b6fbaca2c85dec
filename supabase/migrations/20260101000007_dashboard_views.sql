-- Views for the dashboard. They run with their owner's rights, so `authenticated` can read them
-- without any privilege on the tables beneath (which row-level security closes to it).

-- Signal funnel per strategy per day: emitted -> claimed -> ordered -> filled -> closed, plus the exits.
create view dashboard_signal_funnel as
select s.strategy,
       (s.created_at at time zone 'UTC')::date                              as day,
       count(*)                                                             as emitted,
       count(*) filter (where s.claimed_at is not null)                     as claimed,
       count(*) filter (where exists (select 1 from orders o where o.signal_id = s.id and o.purpose = 'entry'))
                                                                            as ordered,
       count(*) filter (where exists (select 1 from fills f join orders o using (client_order_id)
                                      where f.signal_id = s.id and o.purpose = 'entry'))
                                                                            as filled,
       count(*) filter (where s.status = 'closed')                          as closed,
       count(*) filter (where s.status = 'rejected')                        as rejected,
       count(*) filter (where s.status = 'expired')                         as expired,
       count(*) filter (where s.status in ('new', 'claimed', 'executing'))  as open
  from signals s
 group by 1, 2;

-- Why signals were rejected, per strategy per day.
create view dashboard_signal_rejections as
select strategy,
       (created_at at time zone 'UTC')::date as day,
       reject_reason                        as reason,
       count(*)                             as signals
  from signals
 where status = 'rejected'
 group by 1, 2, 3;

-- Closed trades per strategy.
create view dashboard_strategy_performance as
select s.strategy,
       count(*)                                          as trades,
       count(*) filter (where t.pnl_quote > 0)           as wins,
       round(avg((t.pnl_quote > 0)::int) * 100, 2)       as win_rate_pct,
       sum(t.pnl_quote)                                  as pnl_quote,
       round(avg(t.pnl_pct), 4)                          as avg_pnl_pct,
       sum(t.fees_quote)                                 as fees_quote,
       min(t.closed_at)                                  as first_close,
       max(t.closed_at)                                  as last_close
  from trades t
  join signals s on s.id = t.signal_id
 group by s.strategy;

-- Trades of ML-scored signals against the rest, per strategy.
create view dashboard_ml_vs_rules as
select s.strategy,
       s.ml_confidence is not null                      as ml_scored,
       count(*)                                         as trades,
       round(avg((t.pnl_quote > 0)::int) * 100, 2)      as win_rate_pct,
       sum(t.pnl_quote)                                 as pnl_quote,
       round(avg(t.pnl_pct), 4)                         as avg_pnl_pct
  from trades t
  join signals s on s.id = t.signal_id
 group by 1, 2;

-- Positions being executed: what filled on entry, net of exits so far.
create view dashboard_open_positions as
select s.id                                                    as signal_id,
       s.strategy, s.exchange, s.symbol, s.side,
       s.claimed_by                                            as executor,
       s.executing_at                                          as opened_at,
       coalesce(sum(f.amount) filter (where o.purpose = 'entry'), 0)
         - coalesce(sum(f.amount) filter (where o.purpose = 'exit'), 0)  as amount,
       round(sum(f.price * f.amount) filter (where o.purpose = 'entry')
             / nullif(sum(f.amount) filter (where o.purpose = 'entry'), 0), 8) as avg_entry_price,
       s.take_profit_pct, s.stop_loss_pct, s.time_limit_s
  from signals s
  left join fills f on f.signal_id = s.id
  left join orders o on o.client_order_id = f.client_order_id
 where s.status = 'executing'
 group by s.id;

-- Shadow variations ranked by their latest evaluation window.
create view dashboard_shadow_leaderboard as
select distinct on (v.id)
       v.strategy, v.name, v.params_hash, p.window_start, p.window_end, p.trades, p.wins,
       round(p.wins::numeric / nullif(p.trades, 0) * 100, 2) as win_rate_pct,
       p.avg_pnl_pct, p.total_pnl_pct, p.max_drawdown_pct
  from shadow_variations v
  join shadow_performance p on p.variation_id = v.id
 order by v.id, p.window_end desc;

-- Storage per table (partitions counted with their parent), largest first.
create view dashboard_storage as
select c.relname                                                    as table_name,
       sum(coalesce(st.n_live_tup, 0))::bigint                      as rows_estimate,
       sum(pg_total_relation_size(t.relid))::bigint                 as total_bytes,
       pg_size_pretty(sum(pg_total_relation_size(t.relid))::bigint) as total_size
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
  cross join lateral (select c.oid as relid union select relid from pg_partition_tree(c.oid)) t
  left join pg_stat_user_tables st on st.relid = t.relid
 where c.relkind in ('r', 'p') and not c.relispartition
 group by c.relname;
