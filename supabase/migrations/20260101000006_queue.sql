-- The signal contract and the queue: emit, claim with a lease (FOR UPDATE SKIP LOCKED), acknowledge,
-- report order events idempotently, heartbeat. Errors name the offending key; PostgREST turns the
-- invalid_parameter_value (22023) ones into HTTP 400.
--
-- claim_signals, ack_signal, report_order_event and heartbeat are SECURITY DEFINER: the executor role
-- may call them and nothing else, with no privilege on any table.

create function queue_error(fn text, message text, variadic args text[] default '{}')
returns void
language plpgsql
set search_path = pg_catalog
as $$
begin
    raise exception '%: %', fn, format(message, variadic args) using errcode = 'invalid_parameter_value';
end
$$;

-- A JSON number that is finite, or an error naming the key.
create function queue_number(fn text, payload jsonb, key text, required boolean)
returns numeric
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    v jsonb := payload -> key;
begin
    if v is null or jsonb_typeof(v) = 'null' then
        if required then
            perform queue_error(fn, 'missing key "%s"', key);
        end if;
        return null;
    end if;
    if jsonb_typeof(v) <> 'number' then
        perform queue_error(fn, '"%s" must be a finite number, got %s', key, v::text);
    end if;
    return (v #>> '{}')::numeric;
end
$$;

create function queue_text(fn text, payload jsonb, key text, required boolean)
returns text
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    v jsonb := payload -> key;
begin
    if v is null or jsonb_typeof(v) = 'null' then
        if required then
            perform queue_error(fn, 'missing key "%s"', key);
        end if;
        return null;
    end if;
    if jsonb_typeof(v) <> 'string' or length(v #>> '{}') = 0 then
        perform queue_error(fn, '"%s" must be a non-empty string, got %s', key, v::text);
    end if;
    return v #>> '{}';
end
$$;

create function queue_time(fn text, payload jsonb, key text, required boolean)
returns timestamptz
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    t text := queue_text(fn, payload, key, required);
begin
    if t is null then
        return null;
    end if;
    begin
        return t::timestamptz;
    exception when others then
        perform queue_error(fn, '"%s" must be an ISO 8601 time, got "%s"', key, t);
    end;
end
$$;

create function queue_unknown_keys(fn text, payload jsonb, allowed text[])
returns void
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    k text;
begin
    if payload is null or jsonb_typeof(payload) <> 'object' then
        perform queue_error(fn, 'expected a JSON object, got %s', coalesce(jsonb_typeof(payload), 'null'));
    end if;
    for k in select jsonb_object_keys(payload) order by 1 loop
        if not k = any(allowed) then
            perform queue_error(fn, 'unknown key "%s"', k);
        end if;
    end loop;
end
$$;

-- emit_signal: validate one signal and insert it; returns its id. --------------------------------
create function emit_signal(signal jsonb)
returns uuid
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    fn constant text := 'emit_signal';
    s signals%rowtype;
    time_limit numeric;
    existing uuid;
begin
    perform queue_unknown_keys(fn, signal, array[
        'strategy', 'exchange', 'symbol', 'side', 'price', 'quote_amount', 'take_profit_pct', 'stop_loss_pct',
        'time_limit_s', 'trailing_activation_pct', 'trailing_delta_pct', 'expires_at', 'confidence',
        'ml_confidence', 'model_version', 'params_hash', 'features']);

    s.strategy := queue_text(fn, signal, 'strategy', true);
    s.exchange := queue_text(fn, signal, 'exchange', true);
    s.symbol := queue_text(fn, signal, 'symbol', true);
    if s.symbol !~ '^[A-Z0-9]+-[A-Z0-9]+$' then
        perform queue_error(fn, '"symbol" must be BASE-QUOTE in capitals, e.g. BTC-USDT, got "%s"', s.symbol);
    end if;
    s.side := queue_text(fn, signal, 'side', true);
    if s.side not in ('buy', 'sell') then
        perform queue_error(fn, '"side" must be "buy" or "sell", got "%s"', s.side);
    end if;
    s.price := queue_number(fn, signal, 'price', true);
    s.quote_amount := queue_number(fn, signal, 'quote_amount', true);
    s.take_profit_pct := queue_number(fn, signal, 'take_profit_pct', true);
    s.stop_loss_pct := queue_number(fn, signal, 'stop_loss_pct', false);
    time_limit := queue_number(fn, signal, 'time_limit_s', false);
    if time_limit <= 0 or time_limit <> trunc(time_limit) or time_limit > 2147483647 then
        perform queue_error(fn, '"time_limit_s" must be a positive whole number of seconds, got %s', time_limit::text);
    end if;
    s.time_limit_s := time_limit;
    s.trailing_activation_pct := queue_number(fn, signal, 'trailing_activation_pct', false);
    s.trailing_delta_pct := queue_number(fn, signal, 'trailing_delta_pct', false);
    s.confidence := queue_number(fn, signal, 'confidence', true);
    s.ml_confidence := queue_number(fn, signal, 'ml_confidence', false);
    s.model_version := queue_text(fn, signal, 'model_version', false);
    s.params_hash := queue_text(fn, signal, 'params_hash', false);
    s.expires_at := queue_time(fn, signal, 'expires_at', true);
    s.features := coalesce(nullif(signal -> 'features', 'null'::jsonb), '{}');

    if s.price <= 0 then
        perform queue_error(fn, '"price" must be positive, got %s', s.price::text);
    end if;
    if s.quote_amount <= 0 then
        perform queue_error(fn, '"quote_amount" must be positive, got %s', s.quote_amount::text);
    end if;
    if s.take_profit_pct <= 0 then
        perform queue_error(fn, '"take_profit_pct" must be positive, got %s', s.take_profit_pct::text);
    end if;
    if s.stop_loss_pct <= 0 then
        perform queue_error(fn, '"stop_loss_pct" must be positive, got %s', s.stop_loss_pct::text);
    end if;
    if s.trailing_activation_pct <= 0 or s.trailing_delta_pct <= 0 then
        perform queue_error(fn, '"trailing_activation_pct" and "trailing_delta_pct" must be positive');
    end if;
    if (s.trailing_activation_pct is null) <> (s.trailing_delta_pct is null) then
        perform queue_error(fn, '"trailing_activation_pct" and "trailing_delta_pct" go together: give both or neither');
    end if;
    if s.confidence not between 0 and 1 then
        perform queue_error(fn, '"confidence" must be between 0 and 1, got %s', s.confidence::text);
    end if;
    if s.ml_confidence not between 0 and 1 then
        perform queue_error(fn, '"ml_confidence" must be between 0 and 1, got %s', s.ml_confidence::text);
    end if;
    if jsonb_typeof(s.features) <> 'object' then
        perform queue_error(fn, '"features" must be a JSON object');
    end if;
    if s.expires_at <= now() then
        perform queue_error(fn, '"expires_at" %s is already past', s.expires_at::text);
    end if;

    -- An open signal that expired unclaimed no longer blocks a new one.
    update signals set status = 'expired', finished_at = now(), lease_until = null
     where strategy = s.strategy and exchange = s.exchange and symbol = s.symbol
       and expires_at <= now()
       and (status = 'new' or (status = 'claimed' and lease_until < now()));

    begin
        insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount, take_profit_pct,
                             stop_loss_pct, time_limit_s, trailing_activation_pct, trailing_delta_pct,
                             confidence, ml_confidence, model_version, params_hash, features)
        values (s.expires_at, s.strategy, s.exchange, s.symbol, s.side, s.price, s.quote_amount,
                s.take_profit_pct, s.stop_loss_pct, s.time_limit_s, s.trailing_activation_pct,
                s.trailing_delta_pct, s.confidence, s.ml_confidence, s.model_version, s.params_hash, s.features)
        returning id into s.id;
    exception when unique_violation then
        select id into existing from signals
         where strategy = s.strategy and exchange = s.exchange and symbol = s.symbol
           and status in ('new', 'claimed', 'executing');
        raise exception 'emit_signal: duplicate: signal % is still open for %/%/%', existing, s.strategy,
            s.exchange, s.symbol using errcode = 'unique_violation';
    end;
    return s.id;
end
$$;

-- claim_signals: hand out up to max_count claimable signals, oldest first, each to one consumer. ----
-- markets, when given: [{"exchange": "binance", "symbols": ["BTC-USDT", ...]}, ...]; without "symbols"
-- (or with null), every pair of that exchange.
create function claim_signals(consumer text, max_count integer, lease_seconds integer, markets jsonb default null)
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
    if max_count is null or max_count not between 1 and 1000 then
        perform queue_error(fn, 'max_count must be between 1 and 1000, got %s', coalesce(max_count::text, 'null'));
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

    return query
    with picked as (
        select s.id from signals s
         where (s.status = 'new' or (s.status = 'claimed' and s.lease_until < now()))
           and s.expires_at > now()
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
          from picked
         where s.id = picked.id
        returning s.*
    )
    select * from claimed order by created_at, id;
end
$$;

-- ack_signal: the consumer holding the claim moves it on; a repeated ack changes nothing. ------------
create function ack_signal(signal_id uuid, consumer text, status text, reason text default null)
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
            consumer using errcode = 'insufficient_privilege';
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

-- report_order_event: idempotent upserts; the same event twice, or events in any order, give the same rows.
-- Order status only moves up this order: created < partially_filled < expired < failed < cancelled < filled,
-- so whichever order the events arrive in, the final status is the same.
create function order_status_rank(status text)
returns integer
language sql immutable
set search_path = pg_catalog
as $$
    select array_position(array['created', 'partially_filled', 'expired', 'failed', 'cancelled', 'filled'], status)
$$;

create function report_order_event(event jsonb)
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
        'opened_at', 'closed_at']);
    kind := queue_text(fn, event, 'type', true);
    if kind not in ('order_created', 'order_filled', 'order_cancelled', 'order_failed', 'order_completed',
                    'order_expired', 'position_closed') then
        perform queue_error(fn, '"type" must be one of order_created, order_filled, order_cancelled, '
                                'order_failed, order_completed, order_expired, position_closed, got "%s"', kind);
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
                            pnl_quote, pnl_pct, exit_reason, opened_at, closed_at)
        values (sid, queue_text(fn, event, 'exchange', true), queue_text(fn, event, 'symbol', true),
                queue_text(fn, event, 'side', true), queue_number(fn, event, 'amount', true),
                queue_number(fn, event, 'entry_price', true), queue_number(fn, event, 'exit_price', true),
                coalesce(queue_number(fn, event, 'fees_quote', false), 0), queue_number(fn, event, 'pnl_quote', true),
                queue_number(fn, event, 'pnl_pct', true), queue_text(fn, event, 'exit_reason', true),
                queue_time(fn, event, 'opened_at', true), coalesce(queue_time(fn, event, 'closed_at', false), ts))
        on conflict (signal_id) do nothing;
        update signals set status = 'closed', finished_at = coalesce(finished_at, now()), lease_until = null
         where id = sid and status in ('claimed', 'executing');
        return jsonb_build_object('signal_id', sid, 'trade', 'recorded');
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

-- heartbeat: a component says it is alive and how far it got; progress that stops changing is visible.
create function heartbeat(component text, progress jsonb default '{}')
returns void
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
begin
    if component is null or length(component) = 0 then
        perform queue_error('heartbeat', 'component is required');
    end if;
    if progress is null or jsonb_typeof(progress) <> 'object' then
        perform queue_error('heartbeat', 'progress must be a JSON object');
    end if;
    insert into heartbeats as h (component, progress) values (component, progress)
    on conflict on constraint heartbeats_pkey do update set
        progress = excluded.progress,
        last_seen = now(),
        last_progress_at = case when h.progress is distinct from excluded.progress then now()
                                else h.last_progress_at end;
end
$$;
