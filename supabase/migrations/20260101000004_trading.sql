-- The trading data model: strategy parameters, scans, signals (the queue), orders, fills, closed
-- trades and heartbeats. Money is numeric here (exact, as Hummingbot's Decimal); candle analytics use
-- double precision.

create table strategy_params (
    id          bigint generated always as identity primary key,
    strategy    text not null,
    version     integer not null check (version > 0),
    params      jsonb not null,
    params_hash text not null,
    created_at  timestamptz not null default now(),
    created_by  text not null default current_user,
    unique (strategy, version),
    unique (strategy, params_hash)  -- a parameter set is registered once; signals and shadows refer to its hash
);

create table signals (
    id                      uuid primary key default gen_random_uuid(),
    created_at              timestamptz not null default now(),
    expires_at              timestamptz not null,
    strategy                text not null,
    exchange                text not null,
    symbol                  text not null check (symbol ~ '^[A-Z0-9]+-[A-Z0-9]+$'),
    side                    text not null check (side in ('buy', 'sell')),
    price                   numeric not null check (price > 0),          -- reference price
    quote_amount            numeric not null check (quote_amount > 0),
    take_profit_pct         numeric not null check (take_profit_pct > 0),
    stop_loss_pct           numeric check (stop_loss_pct > 0),
    time_limit_s            integer check (time_limit_s > 0),
    trailing_activation_pct numeric check (trailing_activation_pct > 0),
    trailing_delta_pct      numeric check (trailing_delta_pct > 0),
    confidence              double precision not null check (confidence between 0 and 1),
    ml_confidence           double precision check (ml_confidence between 0 and 1),
    model_version           text,
    params_hash             text,
    features                jsonb not null default '{}',
    status                  text not null default 'new'
                            check (status in ('new', 'claimed', 'executing', 'closed', 'rejected', 'expired')),
    claimed_by              text,
    claimed_at              timestamptz,  -- first claim
    lease_until             timestamptz,
    claim_count             integer not null default 0,
    executing_at            timestamptz,
    finished_at             timestamptz,  -- closed, rejected or expired
    reject_reason           text,
    check (status <> 'rejected' or reject_reason is not null),
    check (status not in ('claimed', 'executing') or claimed_by is not null)
);
-- claim_signals scans the claimable signals oldest first
create index signals_claimable_idx on signals (created_at, id) where status in ('new', 'claimed');
-- one open signal per strategy, exchange and pair: a second is a duplicate
create unique index signals_one_open_idx on signals (strategy, exchange, symbol)
    where status in ('new', 'claimed', 'executing');
-- the funnel and verify read signals by day
create index signals_created_at_idx on signals (created_at);

create table scans (
    id          bigint generated always as identity primary key,
    candle_ts   timestamptz not null,  -- close of the candle the decision was taken on
    scanned_at  timestamptz not null default now(),
    strategy    text not null,
    exchange    text not null,
    symbol      text not null,
    timeframe   text not null,
    decision    text not null check (decision in ('enter', 'skip', 'blocked', 'error')),
    reason      text not null,
    features    jsonb not null default '{}',
    thresholds  jsonb not null default '{}',
    params_hash text,
    signal_id   uuid references signals (id)
);
-- retention and the dashboard read scans by time
create index scans_scanned_at_idx on scans (scanned_at);
-- a signal's scan is looked up when explaining it
create index scans_signal_id_idx on scans (signal_id) where signal_id is not null;

create table orders (
    client_order_id   text primary key,
    signal_id         uuid not null references signals (id),
    exchange          text not null,
    symbol            text not null,
    side              text not null check (side in ('buy', 'sell')),
    purpose           text not null check (purpose in ('entry', 'exit')),
    order_type        text check (order_type in ('market', 'limit', 'limit_maker')),
    price             numeric,
    amount            numeric check (amount > 0),
    exchange_order_id text,
    status            text not null check (status in ('created', 'partially_filled', 'filled', 'cancelled',
                                                      'failed', 'expired')),
    filled_amount     numeric not null default 0,  -- sum of this order's fills
    failure_reason    text,
    consumer          text,
    created_at        timestamptz not null,         -- earliest event time seen
    updated_at        timestamptz not null          -- latest event time seen
);
-- orders of a signal (funnel, open positions, restart reload)
create index orders_signal_id_idx on orders (signal_id);

create table fills (
    client_order_id   text not null references orders (client_order_id),
    exchange_trade_id text not null,
    signal_id         uuid not null references signals (id),
    price             numeric not null check (price > 0),
    amount            numeric not null check (amount > 0),
    fee_quote         numeric not null default 0,   -- the fee valued in the quote asset
    fee_asset         text,
    fee_amount        numeric,
    ts                timestamptz not null,
    primary key (client_order_id, exchange_trade_id)  -- the idempotency key of a fill report
);
-- fills of a signal (funnel, positions)
create index fills_signal_id_idx on fills (signal_id);

create table trades (
    signal_id   uuid primary key references signals (id),  -- one position per signal
    exchange    text not null,
    symbol      text not null,
    side        text not null check (side in ('buy', 'sell')),
    amount      numeric not null check (amount > 0),
    entry_price numeric not null check (entry_price > 0),
    exit_price  numeric not null check (exit_price > 0),
    fees_quote  numeric not null default 0,
    pnl_quote   numeric not null,  -- after fees
    pnl_pct     numeric not null,
    exit_reason text not null check (exit_reason in ('take_profit', 'stop_loss', 'time_limit', 'trailing_stop',
                                                     'order_health', 'manual')),
    opened_at   timestamptz not null,
    closed_at   timestamptz not null
);
-- performance views aggregate trades by close time
create index trades_closed_at_idx on trades (closed_at);

create table heartbeats (
    component        text primary key,
    progress         jsonb not null default '{}',
    first_seen       timestamptz not null default now(),
    last_seen        timestamptz not null default now(),
    last_progress_at timestamptz not null default now()  -- last time progress changed: alive is not enough
);
