-- The controller's decisions (issue 11):
--   * exit signals: `kind` 'exit' refers to the entry signal whose open position it closes (`entry_signal_id`);
--     at most one open exit per entry, and entries stay one open per strategy, exchange and pair.
--   * the DCA grid carried on an entry: `grid_levels` resting limit buys, `grid_spacing_pct` apart below the
--     entry price, each for `grid_level_quote` of the quote currency.
--   * simulated time: emit_signal_at(signal, as_of) compares and stamps with `as_of` instead of now(), so a
--     replay expires and de-duplicates signals on the replayed clock. emit_signal(signal) = as_of now().

alter table signals
    add column kind text not null default 'entry' check (kind in ('entry', 'exit')),
    add column entry_signal_id uuid references signals (id) on delete set null,
    add column grid_levels integer check (grid_levels between 1 and 20),
    add column grid_spacing_pct numeric check (grid_spacing_pct > 0),
    add column grid_level_quote numeric check (grid_level_quote > 0),
    add check ((grid_levels is null) = (grid_spacing_pct is null) and (grid_levels is null) = (grid_level_quote is null));

-- a scan row may record an exit decision for an open position
alter table scans drop constraint scans_decision_check;
alter table scans add constraint scans_decision_check
    check (decision in ('enter', 'skip', 'blocked', 'error', 'exit'));

drop index signals_one_open_idx;
create unique index signals_one_open_idx on signals (strategy, exchange, symbol)
    where status in ('new', 'claimed', 'executing') and kind = 'entry';
create unique index signals_one_open_exit_idx on signals (entry_signal_id)
    where status in ('new', 'claimed', 'executing') and kind = 'exit';

create function emit_signal_at(signal jsonb, as_of timestamptz)
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
begin
    if as_of is null then
        perform queue_error(fn, 'as_of is required');
    end if;
    perform queue_unknown_keys(fn, signal, array[
        'strategy', 'exchange', 'symbol', 'side', 'price', 'quote_amount', 'take_profit_pct', 'stop_loss_pct',
        'time_limit_s', 'trailing_activation_pct', 'trailing_delta_pct', 'expires_at', 'confidence',
        'ml_confidence', 'model_version', 'params_hash', 'features',
        'kind', 'entry_signal_id', 'grid_levels', 'grid_spacing_pct', 'grid_level_quote']);

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
                             kind, entry_signal_id, grid_levels, grid_spacing_pct, grid_level_quote)
        values (as_of, s.expires_at, s.strategy, s.exchange, s.symbol, s.side, s.price, s.quote_amount,
                s.take_profit_pct, s.stop_loss_pct, s.time_limit_s, s.trailing_activation_pct,
                s.trailing_delta_pct, s.confidence, s.ml_confidence, s.model_version, s.params_hash, s.features,
                s.kind, s.entry_signal_id, s.grid_levels, s.grid_spacing_pct, s.grid_level_quote)
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

create or replace function emit_signal(signal jsonb)
returns uuid
language sql
set search_path = pg_catalog, public
as $$
    select emit_signal_at(signal, now())
$$;

select apply_access_policy();
