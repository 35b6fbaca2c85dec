-- Exit signals go to the bot that holds their entry (issue 11, item 5).
--
-- Until now any consumer could claim an exit signal; a bot that did not hold the entry's position could only
-- reject it, and the exit was lost. claim_signals now:
--   * hands an exit only to the consumer that claimed its entry, while that entry is claimed or executing;
--     other consumers never see it;
--   * resolves an exit whose entry is no longer an open position (closed, never filled, rejected, expired,
--     deleted) as rejected, with the reason, instead of leaving it new until it expires;
--   * hands out the consumer's exits on top of max_count (at most one open exit per
--     entry, so they are bounded by the positions it holds): a bot whose slots are full still gets the
--     exits that free them. max_count 0 asks for those exits only.
-- Unclaimed exits still expire at expires_at like entries (the expiry update is unchanged).
-- Only the function in queue_core changes; the public wrapper of 0016 (which binds the consumer) calls it.

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
    update signals s set status = 'expired', finished_at = now(), lease_until = null
     where s.expires_at <= now()
       and (s.status = 'new' or (s.status = 'claimed' and s.lease_until < now()));

    -- An exit whose entry is no longer an open position can never be executed: resolved, with the reason.
    update signals x
       set status = 'rejected', finished_at = now(), lease_until = null,
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
       and (x.status = 'new' or (x.status = 'claimed' and x.lease_until < now()))
       and not exists (select 1 from signals e where e.id = x.entry_signal_id and e.status in ('claimed', 'executing'));

    return query
    with exits as (
        -- this consumer's exits, on top of max_count: only the consumer holding the entry gets one
        select x.id from signals x
         where x.kind = 'exit'
           and (x.status = 'new' or (x.status = 'claimed' and x.lease_until < now()))
           and x.expires_at > now()
           and exists (
                   select 1 from signals e
                    where e.id = x.entry_signal_id
                      and e.claimed_by = claim_signals.consumer and e.status in ('claimed', 'executing'))
         order by x.created_at, x.id
         for update of x skip locked
    ), picked as (
        select s.id from signals s
         where (s.status = 'new' or (s.status = 'claimed' and s.lease_until < now()))
           and s.expires_at > now()
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
           set status = 'claimed', claimed_by = consumer, claimed_at = coalesce(s.claimed_at, now()),
               lease_until = now() + make_interval(secs => lease_seconds), claim_count = s.claim_count + 1
          from (select id from exits union all select id from picked) p
         where s.id = p.id
        returning s.*
    )
    select * from claimed order by created_at, id;
end
$$;
