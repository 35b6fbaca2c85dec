-- Controller shards: several controllers share one universe, each scanning the symbols of the shards it
-- holds a lease on, and no decision candle is ever queued twice.
--   * signals carry the candle their decision was taken on (`timeframe_s`, `candle_ts`, optional): a unique
--     key on it makes a second emission for the same strategy, exchange, symbol, timeframe and candle a
--     no-op (emit_signal_at returns null), whichever controller tries it. Rows without a candle (older
--     callers) are not constrained.
--   * shard_leases: one row per shard of an n-way split, held by one controller until `expires_at`. The
--     holder renews it well inside its lease; a holder that dies stops renewing, its lease lapses and
--     another controller takes the shard at its next cycle.

alter table signals
    add column timeframe_s integer check (timeframe_s > 0),
    add column candle_ts timestamptz,
    add check ((timeframe_s is null) = (candle_ts is null));

create unique index signals_decision_candle_idx on signals (strategy, exchange, symbol, timeframe_s, candle_ts, kind)
    where candle_ts is not null;

create table shard_leases (
    n           integer not null check (n between 1 and 1024),
    shard       integer not null check (shard >= 0 and shard < n),
    holder      text,                 -- null: free (never held, or released by a clean stop)
    expires_at  timestamptz,
    acquired_at timestamptz,          -- when the current holder took it (a takeover shows here)
    renewed_at  timestamptz,
    primary key (n, shard),
    check ((holder is null) = (expires_at is null))
);

-- acquire_shard: take or renew shard `shard` of `n` for `holder` for `lease_s` seconds. True when the holder
-- holds it afterwards: it was free, lapsed, or the holder's already. Leases of a different split that are
-- still live refuse it: two splits of one universe would overlap.
create function acquire_shard(n integer, shard integer, holder text, lease_s double precision)
returns boolean
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    fn constant text := 'acquire_shard';
    got text;
begin
    if holder is null or holder = '' then
        perform queue_error(fn, '"holder" is required');
    end if;
    if lease_s is null or lease_s <= 0 then
        perform queue_error(fn, '"lease_s" must be positive');
    end if;
    if n is null or n < 1 or shard is null or shard < 0 or shard >= n then
        perform queue_error(fn, 'shard %s/%s: the shard must be 0 .. n-1', coalesce(shard::text, 'null'),
                            coalesce(n::text, 'null'));
    end if;
    if exists (select 1 from shard_leases l where l.n <> acquire_shard.n and l.expires_at > clock_timestamp()) then
        perform queue_error(fn, 'shard %s/%s: controllers of another split hold live leases (n = %s)', shard::text,
                            n::text,
                            (select string_agg(distinct l.n::text, ', ') from shard_leases l
                              where l.n <> acquire_shard.n and l.expires_at > clock_timestamp()));
    end if;
    insert into shard_leases as l (n, shard, holder, expires_at, acquired_at, renewed_at)
    values (n, shard, holder, clock_timestamp() + make_interval(secs => lease_s), clock_timestamp(),
            clock_timestamp())
    on conflict on constraint shard_leases_pkey do update
       set holder = excluded.holder, expires_at = excluded.expires_at, renewed_at = excluded.renewed_at,
           acquired_at = case when l.holder = excluded.holder then l.acquired_at else excluded.acquired_at end
     where l.holder = excluded.holder or l.holder is null or l.expires_at <= clock_timestamp()
    returning l.holder into got;
    return got is not null;
end
$$;

-- acquire_free_shard: for a controller that holds no shard of `n`: take the lowest free or lapsed one, or
-- none (null) when every shard is held. Skip locked, so controllers starting together take different shards.
create function acquire_free_shard(n integer, holder text, lease_s double precision)
returns integer
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    fn constant text := 'acquire_free_shard';
    picked integer;
begin
    if n is null or n < 1 or n > 1024 then
        perform queue_error(fn, '"n" must be 1 .. 1024, got %s', coalesce(n::text, 'null'));
    end if;
    insert into shard_leases (n, shard) select acquire_free_shard.n, s from generate_series(0, n - 1) s
    on conflict do nothing;
    select l.shard into picked from shard_leases l
     where l.n = acquire_free_shard.n and (l.holder is null or l.expires_at <= clock_timestamp())
     order by l.shard
     for update skip locked
     limit 1;
    if picked is null then
        return null;
    end if;
    if acquire_shard(n, picked, holder, lease_s) then
        return picked;
    end if;
    return null;
end
$$;

-- lapsed_shards: the shards of `n` whose holder stopped renewing: what a surviving controller takes over.
create function lapsed_shards(n integer)
returns setof integer
language sql
set search_path = pg_catalog, public
as $$
    select l.shard from shard_leases l
     where l.n = lapsed_shards.n and l.holder is not null and l.expires_at <= clock_timestamp()
     order by l.shard
$$;

-- release_shard: a clean stop frees its shards at once, so nobody waits for the lease to lapse.
create function release_shard(n integer, shard integer, holder text)
returns boolean
language sql
set search_path = pg_catalog, public
as $$
    with freed as (
        update shard_leases l set holder = null, expires_at = null
         where l.n = release_shard.n and l.shard = release_shard.shard and l.holder = release_shard.holder
        returning 1)
    select exists (select 1 from freed)
$$;

-- emit_signal_at as migration 20260101000013 left it, plus the decision candle and its unique key.
create or replace function emit_signal_at(signal jsonb, as_of timestamptz)
returns uuid
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    fn constant text := 'emit_signal';
    s signals%rowtype;
    time_limit numeric;
    levels numeric;
    existing uuid;
    entry signals%rowtype;
    frame numeric;
begin
    if as_of is null then
        perform queue_error(fn, 'as_of is required');
    end if;
    perform queue_unknown_keys(fn, signal, array[
        'strategy', 'exchange', 'symbol', 'side', 'price', 'quote_amount', 'take_profit_pct', 'stop_loss_pct',
        'time_limit_s', 'trailing_activation_pct', 'trailing_delta_pct', 'expires_at', 'confidence',
        'ml_confidence', 'model_version', 'params_hash', 'features',
        'kind', 'entry_signal_id', 'grid_levels', 'grid_spacing_pct', 'grid_level_quote',
        'timeframe_s', 'candle_ts']);

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
    s.kind := coalesce(queue_text(fn, signal, 'kind', false), 'entry');
    s.entry_signal_id := queue_text(fn, signal, 'entry_signal_id', false)::uuid;
    levels := queue_number(fn, signal, 'grid_levels', false);
    s.grid_spacing_pct := queue_number(fn, signal, 'grid_spacing_pct', false);
    s.grid_level_quote := queue_number(fn, signal, 'grid_level_quote', false);
    frame := queue_number(fn, signal, 'timeframe_s', false);
    s.candle_ts := queue_time(fn, signal, 'candle_ts', false);
    if frame <= 0 or frame <> trunc(frame) or frame > 2147483647 then
        perform queue_error(fn, '"timeframe_s" must be a positive whole number of seconds, got %s', frame::text);
    end if;
    if (frame is null) <> (s.candle_ts is null) then
        perform queue_error(fn, '"timeframe_s" and "candle_ts" go together: give both or neither');
    end if;
    s.timeframe_s := frame;

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
    if s.expires_at <= as_of then
        perform queue_error(fn, '"expires_at" %s is already past', s.expires_at::text);
    end if;

    -- the grid: three keys together, on a buy entry only
    if (levels is null) <> (s.grid_spacing_pct is null) or (levels is null) <> (s.grid_level_quote is null) then
        perform queue_error(fn, '"grid_levels", "grid_spacing_pct" and "grid_level_quote" go together: give all or none');
    end if;
    if levels is not null then
        if levels <> trunc(levels) or levels not between 1 and 20 then
            perform queue_error(fn, '"grid_levels" must be a whole number from 1 to 20, got %s', levels::text);
        end if;
        if s.grid_spacing_pct <= 0 or s.grid_level_quote <= 0 then
            perform queue_error(fn, '"grid_spacing_pct" and "grid_level_quote" must be positive');
        end if;
        if s.kind <> 'entry' or s.side <> 'buy' then
            perform queue_error(fn, 'a grid belongs to a buy entry, not a %s %s', s.side, s.kind);
        end if;
        s.grid_levels := levels;
    end if;

    -- kinds
    if s.kind not in ('entry', 'exit') then
        perform queue_error(fn, '"kind" must be "entry" or "exit", got "%s"', s.kind);
    end if;
    if s.kind = 'entry' and s.entry_signal_id is not null then
        perform queue_error(fn, '"entry_signal_id" belongs to an exit signal');
    end if;
    if s.kind = 'exit' then
        if s.entry_signal_id is null then
            perform queue_error(fn, 'an exit signal needs "entry_signal_id"');
        end if;
        if s.side <> 'sell' then
            perform queue_error(fn, 'an exit signal sells what its entry bought: "side" must be "sell"');
        end if;
        select * into entry from signals where id = s.entry_signal_id;
        if not found or entry.kind <> 'entry' then
            perform queue_error(fn, 'exit for %s: no such entry signal', s.entry_signal_id::text);
        end if;
        if (entry.strategy, entry.exchange, entry.symbol) <> (s.strategy, s.exchange, s.symbol) then
            perform queue_error(fn, 'exit for %s names %s/%s/%s, its entry is %s/%s/%s', s.entry_signal_id::text,
                                s.strategy, s.exchange, s.symbol, entry.strategy, entry.exchange, entry.symbol);
        end if;
        if entry.status not in ('claimed', 'executing') then
            perform queue_error(fn, 'exit for %s: the entry is %s, not an open position', s.entry_signal_id::text,
                                entry.status);
        end if;
    end if;

    -- An open signal that expired unclaimed no longer blocks a new one.
    update signals set status = 'expired', finished_at = as_of, lease_until = null
     where kind = s.kind
       and (case when s.kind = 'exit' then entry_signal_id = s.entry_signal_id
                 else strategy = s.strategy and exchange = s.exchange and symbol = s.symbol end)
       and expires_at <= as_of
       and (status = 'new' or (status = 'claimed' and lease_until < as_of));

    begin
        insert into signals (created_at, expires_at, strategy, exchange, symbol, side, price, quote_amount,
                             take_profit_pct, stop_loss_pct, time_limit_s, trailing_activation_pct,
                             trailing_delta_pct, confidence, ml_confidence, model_version, params_hash, features,
                             kind, entry_signal_id, grid_levels, grid_spacing_pct, grid_level_quote,
                             timeframe_s, candle_ts)
        values (as_of, s.expires_at, s.strategy, s.exchange, s.symbol, s.side, s.price, s.quote_amount,
                s.take_profit_pct, s.stop_loss_pct, s.time_limit_s, s.trailing_activation_pct,
                s.trailing_delta_pct, s.confidence, s.ml_confidence, s.model_version, s.params_hash, s.features,
                s.kind, s.entry_signal_id, s.grid_levels, s.grid_spacing_pct, s.grid_level_quote,
                s.timeframe_s, s.candle_ts)
        -- a decision candle emitted already (by another controller, or this one before a restart) is
        -- not emitted again: the caller gets null and queues nothing
        on conflict (strategy, exchange, symbol, timeframe_s, candle_ts, kind) where candle_ts is not null
        do nothing
        returning id into s.id;
    exception when unique_violation then
        select id into existing from signals
         where kind = s.kind and status in ('new', 'claimed', 'executing')
           and (case when s.kind = 'exit' then entry_signal_id = s.entry_signal_id
                     else strategy = s.strategy and exchange = s.exchange and symbol = s.symbol end);
        raise exception 'emit_signal: duplicate: % signal % is still open for %/%/%', s.kind, existing, s.strategy,
            s.exchange, s.symbol using errcode = 'unique_violation';
    end;
    return s.id;
end
$$;

select apply_access_policy();
