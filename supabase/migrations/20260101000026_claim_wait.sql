-- A long-poll claim for the PostgREST transport: claim_signals_wait waits, inside the database, a bounded
-- time for a signal this consumer could claim, then claims with claim_signals as usual.
--
-- The official Hummingbot image has no psycopg, so a bot on Supabase cannot LISTEN (0019) and claimed on a
-- 1 s poll; with the wait it claims within one short re-check of the signal's commit instead. It uses
-- neither LISTEN nor prepared statements nor session state, so it works the same behind PostgREST, through
-- Supabase's transaction-mode pooler and on a direct connection.
--
-- How it waits: a loop of pg_sleep(0.05) and a read-only look for a claimable signal (the same conditions
-- as claim_signals' picks, from the partial index signals_claimable_idx). It takes no lock while it waits;
-- claim_signals (expiry, exit resolution, SKIP LOCKED claim, leases, exit routing, max_count) runs exactly
-- once, when something is claimable or the wait is over, so its row locks are held only until the
-- request commits, as for a plain claim. Each look sees what committed before it because PostgREST runs a
-- volatile function in READ COMMITTED (each statement takes a new snapshot); under a stricter isolation
-- nothing new could become visible, so the function then claims at once without waiting.
--
-- The whole request is one transaction, so now() is the moment the wait began. claim_signals therefore
-- now stamps and compares with clock_timestamp() taken when it starts (its body is 0018's otherwise): a
-- signal claimed after a wait gets its true claimed_at and a full lease, and one that expired during the
-- wait is expired, not handed out.
--
-- The wait is bounded by wait_ms (0..60000) and, when the session has a statement_timeout (Supabase sets
-- one per API role), by that timeout less one second, so a wait never ends in a cancelled statement.

create or replace function queue_core.claim_signals(consumer text, max_count integer, lease_seconds integer,
                                                    markets jsonb default null)
returns setof signals
language plpgsql
volatile
security definer
set search_path = pg_catalog, public
as $$
declare
    fn constant text := 'claim_signals';
    -- the moment the claim runs, not the transaction's start: claim_signals_wait calls this after waiting
    as_of constant timestamptz := clock_timestamp();
begin
    if consumer is null or length(consumer) = 0 then
        perform queue_error(fn, 'consumer is required');
    end if;
    if max_count is null or max_count not between 0 and 1000 then
        perform queue_error(fn, 'max_count must be between 0 and 1000, got %s', coalesce(max_count::text, 'null'));
    end if;
    if lease_seconds is null or lease_seconds not between 1 and 86400 then
        perform queue_error(fn, 'lease_seconds must be between 1 and 86400, got %s',
                            coalesce(lease_seconds::text, 'null'));
    end if;
    if markets is not null and jsonb_typeof(markets) <> 'array' then
        perform queue_error(fn, 'markets must be an array of {"exchange": ..., "symbols": [...]}');
    end if;

    -- Expired before anyone executed them: they become expired instead of being handed out.
    update signals s set status = 'expired', finished_at = as_of, lease_until = null
     where s.expires_at <= as_of
       and (s.status = 'new' or (s.status = 'claimed' and s.lease_until < as_of));

    -- An exit whose entry is no longer an open position can never be executed: resolved, with the reason.
    update signals x
       set status = 'rejected', finished_at = as_of, lease_until = null,
           reject_reason = coalesce((
               select case
                   when e.status = 'closed' and t.signal_id is null
                       then format('entry %s closed without a fill: no position to exit', e.id)
                   when e.status = 'closed'
                       then format('entry %s closed (%s) before its exit was claimed', e.id, t.exit_reason)
                   else format('entry %s is %s: no position to exit', e.id, e.status) end
                 from signals e
                 left join trades t on t.signal_id = e.id
                where e.id = x.entry_signal_id), 'its entry signal is gone: no position to exit')
     where x.kind = 'exit'
       and (x.status = 'new' or (x.status = 'claimed' and x.lease_until < as_of))
       and not exists (select 1 from signals e where e.id = x.entry_signal_id and e.status in ('claimed', 'executing'));

    return query
    with exits as (
        -- this consumer's exits, on top of max_count: only the consumer holding the entry gets one
        select x.id from signals x
         where x.kind = 'exit'
           and (x.status = 'new' or (x.status = 'claimed' and x.lease_until < as_of))
           and x.expires_at > as_of
           and exists (
                   select 1 from signals e
                    where e.id = x.entry_signal_id
                      and e.claimed_by = claim_signals.consumer and e.status in ('claimed', 'executing'))
         order by x.created_at, x.id
         for update of x skip locked
    ), picked as (
        select s.id from signals s
         where (s.status = 'new' or (s.status = 'claimed' and s.lease_until < as_of))
           and s.expires_at > as_of
           and s.kind = 'entry'
           and (markets is null or exists (
                   select 1 from jsonb_array_elements(markets) m
                    where m ->> 'exchange' = s.exchange
                      and (coalesce(jsonb_typeof(m -> 'symbols'), 'null') = 'null' or m -> 'symbols' ? s.symbol)))
         order by s.created_at, s.id
         limit max_count
         for update skip locked
    ), claimed as (
        update signals s
           set status = 'claimed', claimed_by = consumer, claimed_at = coalesce(s.claimed_at, as_of),
               lease_until = as_of + make_interval(secs => lease_seconds), claim_count = s.claim_count + 1
          from (select id from exits union all select id from picked) p
         where s.id = p.id
        returning s.*
    )
    select * from claimed order by created_at, id;
end
$$;

-- The executor's entry point: binds the consumer to the JWT's claim (0016) like claim_signals, then waits
-- in queue_core.claim_signals_wait (below; plpgsql resolves it when called).
create function claim_signals_wait(consumer text, max_count integer, lease_seconds integer,
                                   markets jsonb default null, wait_ms integer default 1000)
returns setof signals
language plpgsql
volatile
security definer
set search_path = pg_catalog, public
as $$
begin
    return query select * from queue_core.claim_signals_wait(queue_consumer('claim_signals_wait', consumer),
                                                          max_count, lease_seconds, markets, wait_ms);
end
$$;

create function queue_core.claim_signals_wait(consumer text, max_count integer, lease_seconds integer,
                                              markets jsonb default null, wait_ms integer default 1000)
returns setof signals
language plpgsql
volatile
security definer
set search_path = pg_catalog, public
as $$
declare
    fn constant text := 'claim_signals_wait';
    step constant interval := interval '50 milliseconds';
    timeout_ms bigint := extract(epoch from current_setting('statement_timeout')::interval) * 1000;
    deadline timestamptz;
begin
    if wait_ms is null or wait_ms not between 0 and 60000 then
        perform queue_error(fn, 'wait_ms must be between 0 and 60000, got %s', coalesce(wait_ms::text, 'null'));
    end if;
    -- claim_signals checks its own arguments; a bad one fails here at once, not after the wait
    if consumer is null or length(consumer) = 0 or max_count is null or max_count not between 0 and 1000
       or lease_seconds is null or lease_seconds not between 1 and 86400
       or (markets is not null and jsonb_typeof(markets) <> 'array') then
        return query select * from queue_core.claim_signals(consumer, max_count, lease_seconds, markets);
        return;
    end if;
    deadline := clock_timestamp() + make_interval(secs => case
        when timeout_ms > 0 then greatest(0, least(wait_ms, timeout_ms - 1000)) else wait_ms end / 1000.0);

    while clock_timestamp() < deadline
          and current_setting('transaction_isolation') = 'read committed'
          and not exists (
              -- an entry claim_signals would pick for these markets ...
              select 1 from signals s
               where (s.status = 'new' or (s.status = 'claimed' and s.lease_until < clock_timestamp()))
                 and s.expires_at > clock_timestamp()
                 and s.kind = 'entry'
                 and max_count > 0
                 and (markets is null or exists (
                         select 1 from jsonb_array_elements(markets) m
                          where m ->> 'exchange' = s.exchange
                            and (coalesce(jsonb_typeof(m -> 'symbols'), 'null') = 'null' or m -> 'symbols' ? s.symbol)))
              union all
              -- ... or an exit of a position this consumer holds
              select 1 from signals x
               where x.kind = 'exit'
                 and (x.status = 'new' or (x.status = 'claimed' and x.lease_until < clock_timestamp()))
                 and x.expires_at > clock_timestamp()
                 and exists (select 1 from signals e
                              where e.id = x.entry_signal_id
                                and e.claimed_by = claim_signals_wait.consumer
                                and e.status in ('claimed', 'executing')))
    loop
        perform pg_sleep(extract(epoch from least(step, deadline - clock_timestamp())));
    end loop;

    return query select * from queue_core.claim_signals(consumer, max_count, lease_seconds, markets);
end
$$;
revoke all on function queue_core.claim_signals_wait(text, integer, integer, jsonb, integer)
    from public, anon, authenticated, executor, service_role;

-- apply_access_policy() takes execute back from every role on each run: as 0022 left it, plus the
-- executor's long-poll claim.
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
    -- the executor's functions beyond those apply_base_access_policy() grants
    grant execute on function claim_signals_wait(text, integer, integer, jsonb, integer) to executor;
    -- a materialized view cannot ask who reads it: the controller only
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relkind = 'm'
    loop
        execute format('revoke all on %I from authenticated', r.relname);
    end loop;
end
$$;

select apply_access_policy();
