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
-- The report, the demo's console tables and `phase check` read these two views: one definition.

create or replace view dashboard_signal_funnel as
select strategy, day,
       count(*)                                                              as emitted,
       count(*) filter (where c)                                             as claimed,
       count(*) filter (where c and o)                                       as ordered,
       count(*) filter (where c and o and f)                                 as filled,
       count(*) filter (where c and o and f and t)                           as closed,
       count(*) filter (where status = 'rejected')                           as rejected,
       count(*) filter (where status = 'expired')                            as expired,
       count(*) filter (where status in ('new', 'claimed', 'executing'))     as open,
       count(*) filter (where status = 'new' and not c)                      as waiting,
       count(*) filter (where not c and (o or f or t))                       as skipped_claimed,
       count(*) filter (where not o and (f or t))                            as skipped_ordered,
       count(*) filter (where not f and t)                                   as skipped_filled
  from (select s.strategy,
               (s.created_at at time zone 'UTC')::date as day,
               s.status,
               s.claimed_at is not null as c,
               exists (select 1 from orders o where o.signal_id = s.id and o.purpose = 'entry') as o,
               exists (select 1 from fills f join orders o using (client_order_id)
                        where f.signal_id = s.id and o.purpose = 'entry') as f,
               exists (select 1 from trades t where t.signal_id = s.id) as t
          from signals s
         where s.kind = 'entry') stages
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

-- gates both views on dashboard membership (0016) and grants them as every dashboard view
select apply_access_policy();
