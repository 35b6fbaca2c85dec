-- The signal funnel only narrows, and exit signals are counted apart.
--
-- dashboard_signal_funnel counted every signal by its status, exits included, so an entry that closed without
-- a fill (or an exit signal, which places no entry order) made `closed` larger than `filled`. Now it counts
-- entry signals only, and each stage counts the signals that passed it and every stage before it:
--   emitted  >= claimed (an executor claimed it) >= ordered (an entry order placed)
--            >= filled (an entry fill logged) >= closed (its trade row written).
-- A signal recorded at a later stage without an earlier one (a trade row with no entry fill logged) stops at
-- the stage it skipped and is counted in skipped_<stage>, so it is named instead of hidden.
-- rejected, expired and open count entry signals by status; waiting counts those still new and never claimed
-- (emitted - claimed - waiting entries expired before any executor claimed them).
-- The columns of the old view keep their names and order (readers do not break); new ones come after.
--
-- dashboard_exit_signals counts the strategies' exit signals per strategy and day: they close an entry's
-- position and place no entry order of their own, so they have no place in the funnel.
--
-- The report, the demo's console tables, `phase check` and `verify` read these views: one definition.

-- Each signal with the stages it passed, narrowed: `ordered` only if it was also claimed, and so on. `stage`
-- names the furthest; skipped_<stage> marks one recorded at a later stage without that one. Exit signals are
-- listed too (kind 'exit') with every stage false: they place no entry order. The funnel below and
-- `verify` (over any window of created_at) count these rows, so the stages are defined here only.
create view dashboard_signal_stages as
select id as signal_id, strategy, kind, status, created_at, day,
       c as claimed,
       c and o as ordered,
       c and o and f as filled,
       c and o and f and t as closed,
       case when c and o and f and t then 'closed' when c and o and f then 'filled' when c and o then 'ordered'
            when c then 'claimed' else 'emitted' end as stage,
       not c and (o or f or t) as skipped_claimed,
       not o and (f or t) as skipped_ordered,
       not f and t as skipped_filled
  from (select s.id, s.strategy, s.kind, s.status, s.created_at,
               (s.created_at at time zone 'UTC')::date as day, r.c, r.o, r.f, r.t
          from signals s
          -- offset 0 keeps each flag's subquery run once per signal: pulled up, every use of a flag above
          -- would run its exists again (four times for `o`); a filter on signals still reaches its scan
          cross join lateral (
              select s.kind = 'entry' and s.claimed_at is not null as c,
                     s.kind = 'entry' and exists (select 1 from orders o
                                                   where o.signal_id = s.id and o.purpose = 'entry') as o,
                     s.kind = 'entry' and exists (select 1 from fills f join orders o using (client_order_id)
                                                   where f.signal_id = s.id and o.purpose = 'entry') as f,
                     s.kind = 'entry' and exists (select 1 from trades t where t.signal_id = s.id) as t
              offset 0) r) recorded;

create or replace view dashboard_signal_funnel as
select strategy, day,
       count(*)                                                              as emitted,
       count(*) filter (where claimed)                                       as claimed,
       count(*) filter (where ordered)                                       as ordered,
       count(*) filter (where filled)                                        as filled,
       count(*) filter (where closed)                                        as closed,
       count(*) filter (where status = 'rejected')                           as rejected,
       count(*) filter (where status = 'expired')                            as expired,
       count(*) filter (where status in ('new', 'claimed', 'executing'))     as open,
       count(*) filter (where status = 'new' and not claimed)                as waiting,
       count(*) filter (where skipped_claimed)                               as skipped_claimed,
       count(*) filter (where skipped_ordered)                               as skipped_ordered,
       count(*) filter (where skipped_filled)                                as skipped_filled
  from dashboard_signal_stages
 where kind = 'entry'
 group by 1, 2;

create view dashboard_exit_signals as
select strategy,
       (created_at at time zone 'UTC')::date                                 as day,
       count(*)                                                              as emitted,
       count(*) filter (where claimed_at is not null)                        as claimed,
       count(*) filter (where status = 'closed')                             as executed,
       count(*) filter (where status = 'rejected')                           as rejected,
       count(*) filter (where status = 'expired')                            as expired,
       count(*) filter (where status in ('new', 'claimed', 'executing'))     as open,
       count(*) filter (where status = 'new' and claimed_at is null)         as waiting
  from signals
 where kind = 'exit'
 group by 1, 2;

-- gates the three views on dashboard membership (0016) and grants them as every dashboard view
select apply_access_policy();
