-- Candles, range-partitioned by month on the candle time, so that retention drops whole partitions
-- (milliseconds, no bloat) instead of deleting rows. There is no default partition: a row whose month
-- has no partition is an error, and writers call create_candle_partitions for their range first.

create table candles (
    exchange  text not null,
    symbol    text not null check (symbol ~ '^[A-Z0-9]+-[A-Z0-9]+$'),
    timeframe text not null check (timeframe in ('1m', '5m', '15m', '1h', '4h', '1d')),
    ts        timestamptz not null,  -- candle open time
    open      double precision not null,
    high      double precision not null,
    low       double precision not null,
    close     double precision not null,
    volume    double precision not null check (volume >= 0),
    primary key (exchange, symbol, timeframe, ts)  -- upsert key; also serves range reads per symbol
) partition by range (ts);

-- Create the monthly partitions covering [from_ts, to_ts]; returns how many were new. Idempotent.
-- SECURITY DEFINER: only the owner of `candles` may attach partitions, and writers (service_role) are not it.
create function create_candle_partitions(from_ts timestamptz, to_ts timestamptz)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
declare
    month   timestamptz := date_trunc('month', from_ts at time zone 'UTC') at time zone 'UTC';
    name    text;
    created integer := 0;
begin
    if to_ts < from_ts or to_ts - from_ts > interval '20 years' then
        raise exception 'create_candle_partitions: bad range % to %', from_ts, to_ts
            using errcode = 'invalid_parameter_value';
    end if;
    while month <= to_ts loop
        name := format('candles_%s', to_char(month at time zone 'UTC', 'YYYY_MM'));
        if to_regclass('public.' || name) is null then
            execute format('create table public.%I partition of public.candles for values from (%L) to (%L)',
                           name, month, (month at time zone 'UTC' + interval '1 month') at time zone 'UTC');
            -- closed like every table: readable through the parent by service_role only
            execute format('alter table public.%I enable row level security', name);
            execute format('revoke all on table public.%I from public', name);
            created := created + 1;
        end if;
        month := (month at time zone 'UTC' + interval '1 month') at time zone 'UTC';
    end loop;
    return created;
end
$$;

-- This month and the next three exist from the start; pg_cron keeps them coming where it runs.
select create_candle_partitions(now() - interval '1 month', now() + interval '3 months');

do $$
begin
    if cron_available() then
        perform cron.schedule('candle-partitions', '17 3 * * *',
                              $job$select create_candle_partitions(now(), now() + interval '3 months')$job$);
    end if;
end
$$;
