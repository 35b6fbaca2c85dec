-- ML models and predictions (phase 3), shadow variations, their outcomes and performance, and the
-- recommendations drawn from them (phase 4). Decisions are immutable rows: a correction is a new row.

create table ml_models (
    version         text primary key,
    strategy        text,             -- null: one model for every strategy
    features        jsonb not null,   -- ordered feature names the model expects
    metrics         jsonb not null default '{}',
    training_start  timestamptz not null,
    training_end    timestamptz not null check (training_end > training_start),
    artefact_path   text not null,
    artefact_sha256 text not null,
    active          boolean not null default false,
    created_at      timestamptz not null default now()
);
-- at most one active model per strategy (and one global)
create unique index ml_models_one_active_idx on ml_models (coalesce(strategy, '')) where active;

create table ml_predictions (
    id            bigint generated always as identity primary key,
    model_version text not null references ml_models (version),
    signal_id     uuid references signals (id),
    strategy      text not null,
    exchange      text not null,
    symbol        text not null,
    candle_ts     timestamptz not null,
    confidence    double precision not null check (confidence between 0 and 1),
    features      jsonb not null default '{}',
    created_at    timestamptz not null default now()
);
-- a signal's prediction (ML vs no-ML view)
create index ml_predictions_signal_id_idx on ml_predictions (signal_id) where signal_id is not null;
-- retention keeps three months of feature rows
create index ml_predictions_created_at_idx on ml_predictions (created_at);

create table shadow_variations (
    id               bigint generated always as identity primary key,
    name             text not null,
    strategy         text not null,
    params           jsonb not null,
    params_hash      text not null,
    base_params_hash text not null,  -- the champion parameters it varies
    active           boolean not null default true,
    created_at       timestamptz not null default now(),
    unique (strategy, name, params_hash)
);

create table shadow_outcomes (
    id            bigint generated always as identity primary key,
    variation_id  bigint not null references shadow_variations (id),
    signal_id     uuid references signals (id),  -- the real signal it shadows, when there is one
    scan_id       bigint references scans (id),
    exchange      text not null,
    symbol        text not null,
    candle_ts     timestamptz not null,
    would_enter   boolean not null,
    status        text not null default 'pending' check (status in ('pending', 'evaluated')),
    entry_price   numeric,
    exit_price    numeric,
    exit_reason   text,
    pnl_pct       numeric,
    evaluated_at  timestamptz,
    created_at    timestamptz not null default now(),
    unique (variation_id, exchange, symbol, candle_ts),
    check (status = 'pending' or evaluated_at is not null)
);
-- the evaluator picks pending outcomes; retention keeps what a pending outcome refers to
create index shadow_outcomes_pending_idx on shadow_outcomes (variation_id, candle_ts) where status = 'pending';
create index shadow_outcomes_signal_id_idx on shadow_outcomes (signal_id) where signal_id is not null;
create index shadow_outcomes_scan_id_idx on shadow_outcomes (scan_id) where scan_id is not null;

create table shadow_performance (
    variation_id  bigint not null references shadow_variations (id),
    window_start  timestamptz not null,
    window_end    timestamptz not null check (window_end > window_start),
    trades        integer not null check (trades >= 0),
    wins          integer not null check (wins between 0 and trades),
    avg_pnl_pct   numeric,
    total_pnl_pct numeric,
    max_drawdown_pct numeric,
    computed_at   timestamptz not null default now(),
    primary key (variation_id, window_start, window_end)
);

create table recommendations (
    id               bigint generated always as identity primary key,
    strategy         text not null,
    from_params_hash text not null,
    to_params_hash   text not null,
    params           jsonb not null,
    evidence         jsonb not null,  -- variation performance vs the champion, sample sizes, gates passed
    status           text not null default 'proposed'
                     check (status in ('proposed', 'applied', 'rejected', 'rolled_back')),
    created_at       timestamptz not null default now(),
    decided_at       timestamptz,
    rollback_of      bigint references recommendations (id),  -- a rollback is a new row pointing at what it undoes
    check (from_params_hash <> to_params_hash)
);
-- the dashboard lists recommendations per strategy, newest first
create index recommendations_strategy_idx on recommendations (strategy, created_at desc);
