-- `ml evaluate` without --model fits fresh walk-forward models on the candles it is given: those figures
-- describe that run, not any registered model, so they are kept here and never written into a model's
-- gate metrics (ml_models.metrics). A model scored on other data keeps its record in ml_models.evaluations.
create table ml_evaluations (
    id          bigint generated always as identity primary key,
    strategy    text not null,
    replay      text not null,            -- the folder of recorded candles, as given
    events      integer not null check (events >= 0),
    metrics     jsonb not null,           -- the walk-forward result, gate figures included
    created_by  text not null,
    created_at  timestamptz not null default now()
);
create index ml_evaluations_strategy_idx on ml_evaluations (strategy, created_at desc);

select apply_access_policy();
