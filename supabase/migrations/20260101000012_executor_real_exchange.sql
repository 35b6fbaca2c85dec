-- The executor on a real exchange (issue 10).
--
-- * trades.dust_amount: what was left below the exchange's minimum order (size or notional) when the position
--   was closed; it stays in the wallet and is valued in the trade's P&L at the exit price.
-- * exit reason 'flat': a position found with nothing left to sell (e.g. restored after a restart).
-- * signals.stuck_reason: a position whose exit failed max_order_retries times; it needs a person.
-- * signals.trailing_peak: the highest bid since entry, so a restarted bot keeps its trailing stop armed.
-- * ack_signal: "claimed by another consumer" gets its own SQLSTATE, PT409 (PostgREST answers it with HTTP
--   409), so the executor can tell it from an expired or wrong key (42501, 401/403), which it must keep
--   retrying instead of dropping.
-- * executor_positions also returns the peak and the entry fees taken in the base asset, which the restored
--   position needs to know what it can sell, and a manual close request, which the executor polls.
-- * request_close: `python -m controller close` asks the executor holding a signal to exit at market
--   (reason manual); service role only, recording who asked.

alter table trades add column dust_amount numeric not null default 0 check (dust_amount >= 0);
alter table trades drop constraint trades_exit_reason_check;
alter table trades add constraint trades_exit_reason_check
    check (exit_reason in ('take_profit', 'stop_loss', 'time_limit', 'trailing_stop', 'order_health', 'manual',
                           'flat'));
alter table signals add column stuck_reason text;
alter table signals add column trailing_peak numeric check (trailing_peak > 0);
alter table signals add column close_requested_at timestamptz;
alter table signals add column close_requested_by text;

-- request_close: flag an executing signal (or, with signal_id null, every executing signal) for a manual
-- close; returns the flagged ids. A repeated request keeps the first time and asker.
create function request_close(signal_id uuid, requested_by text)
returns setof uuid
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    if requested_by is null or length(requested_by) = 0 then
        perform queue_error('request_close', 'requested_by is required');
    end if;
    return query
    update signals s
       set close_requested_at = coalesce(s.close_requested_at, now()),
           close_requested_by = coalesce(s.close_requested_by, requested_by)
     where s.status = 'executing' and (request_close.signal_id is null or s.id = request_close.signal_id)
    returning s.id;
end
$$;

create or replace function ack_signal(signal_id uuid, consumer text, status text, reason text default null)
returns signals
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
declare
    fn constant text := 'ack_signal';
    s signals%rowtype;
begin
    if status is null or status not in ('executing', 'rejected', 'closed') then
        perform queue_error(fn, 'status must be executing, rejected or closed, got %s', coalesce(status, 'null'));
    end if;
    if status = 'rejected' and (reason is null or length(reason) = 0) then
        perform queue_error(fn, 'a rejection needs a reason');
    end if;

    select * into s from signals where id = ack_signal.signal_id for update;
    if not found then
        perform queue_error(fn, 'unknown signal %s', signal_id::text);
    end if;
    if s.claimed_by is distinct from consumer then
        raise exception 'ack_signal: signal % is claimed by %, not %', signal_id, coalesce(s.claimed_by, 'nobody'),
            consumer using errcode = 'PT409';
    end if;
    if s.status = ack_signal.status then
        return s;  -- repeated ack
    end if;
    if not (s.status = 'claimed' and ack_signal.status in ('executing', 'rejected', 'closed')
            or s.status = 'executing' and ack_signal.status = 'closed') then
        raise exception 'ack_signal: signal % is %, it cannot become %', signal_id, s.status, ack_signal.status
            using errcode = 'invalid_parameter_value';
    end if;

    update signals
       set status = ack_signal.status,
           lease_until = null,
           executing_at = case when ack_signal.status = 'executing' then now() else executing_at end,
           finished_at = case when ack_signal.status in ('rejected', 'closed') then now() else finished_at end,
           reject_reason = case when ack_signal.status = 'rejected' then reason else reject_reason end
     where id = ack_signal.signal_id
    returning * into s;
    return s;
end
$$;

create or replace function report_order_event(event jsonb)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
declare
    fn constant text := 'report_order_event';
    kind text;
    sid uuid;
    coid text;
    ts timestamptz;
    new_status text;
    o orders%rowtype;
begin
    perform queue_unknown_keys(fn, event, array[
        'type', 'signal_id', 'consumer', 'ts', 'client_order_id', 'exchange', 'symbol', 'side', 'purpose',
        'order_type', 'price', 'amount', 'exchange_order_id', 'exchange_trade_id', 'fee_quote', 'fee_asset',
        'fee_amount', 'reason', 'entry_price', 'exit_price', 'fees_quote', 'pnl_quote', 'pnl_pct', 'exit_reason',
        'opened_at', 'closed_at', 'dust_amount', 'peak']);
    kind := queue_text(fn, event, 'type', true);
    if kind not in ('order_created', 'order_filled', 'order_cancelled', 'order_failed', 'order_completed',
                    'order_expired', 'position_closed', 'position_stuck', 'position_peak') then
        perform queue_error(fn, '"type" must be one of order_created, order_filled, order_cancelled, '
                                'order_failed, order_completed, order_expired, position_closed, position_stuck, '
                                'position_peak, got "%s"', kind);
    end if;
    begin
        sid := queue_text(fn, event, 'signal_id', true)::uuid;
    exception when invalid_text_representation then
        perform queue_error(fn, '"signal_id" must be a uuid, got %s', (event -> 'signal_id')::text);
    end;
    if not exists (select 1 from signals where id = sid) then
        perform queue_error(fn, 'unknown signal %s', sid::text);
    end if;
    ts := queue_time(fn, event, 'ts', true);

    if kind = 'position_closed' then
        insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, fees_quote,
                            pnl_quote, pnl_pct, exit_reason, opened_at, closed_at, dust_amount)
        values (sid, queue_text(fn, event, 'exchange', true), queue_text(fn, event, 'symbol', true),
                queue_text(fn, event, 'side', true), queue_number(fn, event, 'amount', true),
                queue_number(fn, event, 'entry_price', true), queue_number(fn, event, 'exit_price', true),
                coalesce(queue_number(fn, event, 'fees_quote', false), 0), queue_number(fn, event, 'pnl_quote', true),
                queue_number(fn, event, 'pnl_pct', true), queue_text(fn, event, 'exit_reason', true),
                queue_time(fn, event, 'opened_at', true), coalesce(queue_time(fn, event, 'closed_at', false), ts),
                coalesce(queue_number(fn, event, 'dust_amount', false), 0))
        on conflict (signal_id) do nothing;
        update signals set status = 'closed', finished_at = coalesce(finished_at, now()), lease_until = null
         where id = sid and status in ('claimed', 'executing');
        return jsonb_build_object('signal_id', sid, 'trade', 'recorded');
    end if;
    if kind = 'position_stuck' then
        -- the first reason stays: a repeated report (outbox replay) changes nothing
        update signals set stuck_reason = coalesce(stuck_reason, queue_text(fn, event, 'reason', true))
         where id = sid;
        return jsonb_build_object('signal_id', sid, 'stuck', true);
    end if;
    if kind = 'position_peak' then
        -- only ever raised, so replays and late reports cannot lower it
        update signals set trailing_peak = greatest(coalesce(trailing_peak, 0), queue_number(fn, event, 'peak', true))
         where id = sid;
        return jsonb_build_object('signal_id', sid, 'peak', 'recorded');
    end if;

    coid := queue_text(fn, event, 'client_order_id', true);
    new_status := case kind
        when 'order_created' then 'created'
        when 'order_filled' then 'partially_filled'
        when 'order_cancelled' then 'cancelled'
        when 'order_failed' then 'failed'
        when 'order_completed' then 'filled'
        when 'order_expired' then 'expired'
    end;

    insert into orders as cur (client_order_id, signal_id, exchange, symbol, side, purpose, order_type, price,
                               amount, exchange_order_id, status, failure_reason, consumer, created_at, updated_at)
    values (coid, sid, queue_text(fn, event, 'exchange', true), queue_text(fn, event, 'symbol', true),
            queue_text(fn, event, 'side', true), queue_text(fn, event, 'purpose', true),
            queue_text(fn, event, 'order_type', false),
            case when kind = 'order_created' then queue_number(fn, event, 'price', false) end,
            case when kind = 'order_created' then queue_number(fn, event, 'amount', false) end,
            queue_text(fn, event, 'exchange_order_id', false), new_status,
            case when kind in ('order_failed', 'order_cancelled', 'order_expired')
                 then queue_text(fn, event, 'reason', false) end,
            queue_text(fn, event, 'consumer', false), ts, ts)
    on conflict (client_order_id) do update set
        order_type = coalesce(cur.order_type, excluded.order_type),
        price = coalesce(cur.price, excluded.price),
        amount = coalesce(cur.amount, excluded.amount),
        exchange_order_id = coalesce(cur.exchange_order_id, excluded.exchange_order_id),
        status = case when order_status_rank(excluded.status) > order_status_rank(cur.status)
                      then excluded.status else cur.status end,
        failure_reason = coalesce(cur.failure_reason, excluded.failure_reason),
        consumer = coalesce(cur.consumer, excluded.consumer),
        created_at = least(cur.created_at, excluded.created_at),
        updated_at = greatest(cur.updated_at, excluded.updated_at)
    returning * into o;
    if o.signal_id <> sid then
        perform queue_error(fn, 'order %s belongs to signal %s, not %s', coid, o.signal_id::text, sid::text);
    end if;

    if kind = 'order_filled' then
        insert into fills (client_order_id, exchange_trade_id, signal_id, price, amount, fee_quote, fee_asset,
                           fee_amount, ts)
        values (coid, queue_text(fn, event, 'exchange_trade_id', true), sid, queue_number(fn, event, 'price', true),
                queue_number(fn, event, 'amount', true), coalesce(queue_number(fn, event, 'fee_quote', false), 0),
                queue_text(fn, event, 'fee_asset', false), queue_number(fn, event, 'fee_amount', false), ts)
        on conflict (client_order_id, exchange_trade_id) do nothing;
        update orders set filled_amount = (select coalesce(sum(amount), 0) from fills f
                                            where f.client_order_id = coid)
         where client_order_id = coid
        returning * into o;
    end if;
    return jsonb_build_object('client_order_id', o.client_order_id, 'status', o.status,
                              'filled_amount', o.filled_amount);
end
$$;

drop function executor_positions(text);
create function executor_positions(consumer text)
returns table (signal jsonb, entry_amount numeric, entry_quote numeric, exit_amount numeric, exit_quote numeric,
               fees_quote numeric, opened_at timestamptz, open_orders jsonb, entry_fee_base numeric,
               base_fee_quote numeric, trailing_peak numeric, stuck_reason text, close_requested_by text)
language sql
stable
security definer
set search_path = pg_catalog, public
as $$
    select to_jsonb(s),
           coalesce(sum(f.amount) filter (where o.purpose = 'entry'), 0),
           coalesce(sum(f.amount * f.price) filter (where o.purpose = 'entry'), 0),
           coalesce(sum(f.amount) filter (where o.purpose = 'exit'), 0),
           coalesce(sum(f.amount * f.price) filter (where o.purpose = 'exit'), 0),
           coalesce(sum(f.fee_quote), 0),
           min(f.ts) filter (where o.purpose = 'entry'),
           coalesce((select jsonb_agg(jsonb_build_object('client_order_id', oo.client_order_id,
                                                         'purpose', oo.purpose, 'side', oo.side,
                                                         'order_type', oo.order_type,
                                                         'amount', oo.amount, 'price', oo.price,
                                                         'filled_amount', oo.filled_amount,
                                                         'created_at', oo.created_at) order by oo.created_at)
                       from orders oo
                      where oo.signal_id = s.id and oo.status in ('created', 'partially_filled')), '[]'),
           -- a buy's fee taken from the bought coin (Binance): the wallet holds that much less
           coalesce(sum(f.fee_amount) filter (where o.purpose = 'entry'
                                                and f.fee_asset = split_part(s.symbol, '-', 1)), 0),
           coalesce(sum(f.fee_quote) filter (where f.fee_asset = split_part(s.symbol, '-', 1)), 0),
           s.trailing_peak,
           s.stuck_reason,
           s.close_requested_by
      from signals s
      left join orders o on o.signal_id = s.id
      left join fills f on f.client_order_id = o.client_order_id
     where s.status = 'executing' and s.claimed_by = executor_positions.consumer
     group by s.id
     order by s.executing_at
$$;

-- apply_access_policy (0008) grants the replaced functions to the executor again.
select apply_access_policy();
