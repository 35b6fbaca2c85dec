-- Retention: keeps storage bounded, without DELETE-and-VACUUM churn on the biggest table (candles).
--
-- Candle tiers (hot in `candles` / archived in `candles_archive` / then deleted). The first three are
-- the issue's numbers; 5m, 4h and 1d are ours:
--   1m   30 days   / 30-90 days    / after 90 days
--   5m   90 days   / 90-180 days   / after 180 days  (a fifth of 1m's rows kept three times as long,
--                                                     about 60% of 1m's footprint; replay can rebuild 5m
--                                                     from 1m only while 1m exists, so 5m outlives it)
--   15m  6 months  / 6-12 months   / after 1 year
--   1h   1 year    / 1-2 years     / after 2 years
--   4h   2 years   / 2-4 years     / after 4 years   (a quarter of 1h's rows: 4 years of 4h cost what
--                                                     one year of 1h does)
--   1d   2 years   / 2-5 years     / after 5 years   (tiny; 5 years spans several market cycles for
--                                                     regime studies, and exchanges serve daily history
--                                                     for free if more is ever needed; a finite horizon
--                                                     lets old months be dropped at all)
-- Other data:
--   scans           30 days raw (whole UTC days), then daily aggregates in `scans_daily`, kept 90 days
--   ml_predictions  3 months (the ML feature rows; regenerated from candles when needed)
--   signals, orders, fills, trades, shadow outcomes: never deleted (trading history)
-- Never deleted either, whatever their age:
--   - a scan that emitted a signal (scans.signal_id set): one per signal, kept with it, which covers the
--     scans of open positions (signal new/claimed/executing);
--   - a scan that a pending shadow outcome refers to;
--   - an ML prediction linked to a signal.
-- An evaluated shadow outcome does not keep its scan: when the scan goes, the outcome's scan_id is set to
-- null (reported as "unlinked"); its own columns (variation, pair, candle time, result) stay.
--
-- How candles move. `candles` is partitioned by month with every timeframe mixed in one partition, so
-- retention works a month at a time: a timeframe's rows leave a partition once the partition's whole month
-- is past that timeframe's hot horizon (so "kept 30 days" means 30 to 61 days), and archived rows go once
-- their month is past the delete horizon (so "deleted after 90 days" means after 90 to 121 days).
-- Nothing is ever DELETEd from either table:
--   - a partition with no timeframe left hot (its month is past every hot horizon) is DROPPED after its
--     still-archivable rows are copied out; a month past every delete horizon is simply dropped;
--   - a partition with some timeframes leaving is REWRITTEN: the leaving rows are copied to the archive (or
--     counted as deleted when already past their delete horizon), the staying rows (the coarse timeframes,
--     a small fraction) are copied into a fresh table, and that table replaces the partition. Copying the
--     small part and dropping the big one frees the space at once, where DELETE would leave 80-90% of the
--     partition as dead tuples until a VACUUM FULL (which locks the table for its whole run).
--   - `candles_archive` is partitioned by timeframe, then by month, so every archive deletion is a DROP of
--     one (timeframe, month) table. A mixed-timeframe candle partition therefore cannot be attached to the
--     archive as it is (the "detach and attach" shortcut); copying its leaving rows costs one sequential read.
-- The copies run under a SHARE lock on the one partition being processed (writers to other months go on);
-- the swaps and drops, which need an ACCESS EXCLUSIVE lock on `candles`, all happen at the very end of the
-- run, so that lock is held only for them and the commit. scans and ml_predictions are not partitioned:
-- their old rows are DELETEd (by day), and autovacuum makes the space reusable by the table's new rows.
--
-- Scheduling: one pg_cron job (daily 03:41 UTC, statement_timeout 9 min, inside Supabase's 10-minute
-- limit); a run stops starting new work after `time_budget` (5 min) and the next run carries on. A run is
-- one transaction, so each partition's copy and swap (and everything else) commit together or not at all;
-- two real runs never overlap (an advisory lock; the second one reports "skipped"). Without pg_cron:
-- `python -m controller retention run`.

-- The candle tiers above. Changing them is a new migration that replaces this function.
create function candle_retention_tiers()
returns table (timeframe text, keep interval, delete_after interval)
language sql immutable
set search_path = pg_catalog
as $$
    values ('1m', interval '30 days', interval '90 days'),
           ('5m', interval '90 days', interval '180 days'),
           ('15m', interval '6 months', interval '1 year'),
           ('1h', interval '1 year', interval '2 years'),
           ('4h', interval '2 years', interval '4 years'),
           ('1d', interval '2 years', interval '5 years')
$$;

-- Archived candles: same columns as `candles`; list-partitioned by timeframe, each range-partitioned by
-- month (the month tables are created by run_retention as rows arrive).
create table candles_archive (
    like candles including defaults including constraints,
    -- moves are idempotent (on conflict) and reads go per symbol and time range, as in `candles`
    primary key (exchange, symbol, timeframe, ts)
) partition by list (timeframe);

do $$
declare
    tf text;
begin
    for tf in select t.timeframe from candle_retention_tiers() t loop
        execute format('create table public.%I partition of public.candles_archive for values in (%L)'
                       ' partition by range (ts)', 'candles_archive_' || tf, tf);
        execute format('alter table public.%I enable row level security', 'candles_archive_' || tf);
    end loop;
end
$$;

-- Daily aggregates of deleted scans. A scan is counted once, when it is deleted; scans kept because they
-- are referenced stay in `scans` and are not counted here until they go.
create table scans_daily (
    day              date not null,  -- UTC
    strategy         text not null,
    exchange         text not null,
    symbol           text not null,
    decision         text not null,
    scans            bigint not null check (scans > 0),
    first_scanned_at timestamptz not null,
    last_scanned_at  timestamptz not null,
    first_reason     text not null,
    last_reason      text not null,
    top_reasons      jsonb not null default '{}',  -- up to 5 reasons with numbers masked as #, -> count
    aggregated_at    timestamptz not null default now(),
    -- the upsert key of the aggregation; its leading day also serves the retention delete by day
    primary key (day, strategy, exchange, symbol, decision)
);
-- one pair's history across days ("why does this symbol never enter?")
create index scans_daily_symbol_idx on scans_daily (symbol, strategy, day);

-- The [lo, hi) bounds of a range partition (null for a default partition).
create function partition_bounds(part regclass, out lo timestamptz, out hi timestamptz)
language sql stable
set search_path = pg_catalog
as $$
    -- the bound is rendered with its UTC offset, so reading it back is exact in any time zone
    select m[1]::timestamptz, m[2]::timestamptz
      from (select regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                '^FOR VALUES FROM \(''([^'']+)''\) TO \(''([^'']+)''\)$') as m
              from pg_class c where c.oid = part) b
$$;

-- Bytes on disk of a table and all its partitions, indexes and TOAST included.
create function tree_bytes(rel regclass)
returns bigint
language sql stable
set search_path = pg_catalog
as $$
    select coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint
      from (select rel as relid union select relid from pg_partition_tree(rel)) t
$$;

-- Whether a candle partition holds any row of these timeframes. A loose index scan over the primary key
-- (one probe per distinct exchange/symbol), so asking costs milliseconds even when the answer is no.
create function candle_partition_has(part regclass, timeframes text[])
returns boolean
language plpgsql stable
set search_path = pg_catalog, public
as $$
declare
    found boolean;
begin
    execute format($q$
        with recursive pairs(exchange, symbol) as (
            (select exchange, symbol from %1$s order by exchange, symbol limit 1)
            union all
            select nxt.exchange, nxt.symbol
              from pairs p
              cross join lateral (select c.exchange, c.symbol from %1$s c
                                   where (c.exchange, c.symbol) > (p.exchange, p.symbol)
                                   order by c.exchange, c.symbol limit 1) nxt
        )
        select exists (select 1 from pairs p
                        where exists (select 1 from %1$s c where c.exchange = p.exchange and c.symbol = p.symbol
                                                             and c.timeframe = any($1)))$q$, part)
    into found using timeframes;
    return found;
end
$$;

-- The archive table of one timeframe and month, created when missing.
create function create_candle_archive_partition(timeframe text, lo timestamptz, hi timestamptz)
returns regclass
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    name text := format('candles_archive_%s_%s', timeframe, to_char(lo at time zone 'UTC', 'YYYY_MM'));
begin
    if to_regclass('public.' || name) is null then
        execute format('create table public.%I partition of public.%I for values from (%L) to (%L)',
                       name, 'candles_archive_' || timeframe, lo, hi);
        execute format('alter table public.%I enable row level security', name);
        execute format('revoke all on table public.%I from public, anon, authenticated, executor', name);
    end if;
    return ('public.' || name)::regclass;
end
$$;

-- A list of names for a report: all of them when few, else the first, the last and how many.
create function retention_names(names text[])
returns text
language sql immutable
set search_path = pg_catalog
as $$
    select case when cardinality(names) <= 3 then array_to_string(names, ', ')
                else format('%s ... %s (%s)', names[1], names[cardinality(names)], cardinality(names)) end
$$;

-- One retention run. Returns what it did (or, with dry_run, what it would do, changing nothing):
--   table_name, action, rows, bytes, detail
-- actions: moved (candles -> candles_archive), deleted, aggregated (scans -> scans_daily), unlinked
-- (shadow outcomes whose scan was deleted), partitions_dropped / partitions_rewritten (rows = how many
-- partitions, bytes = their size freed), bytes_freed (rows 0, bytes = total size before - after over the
-- table's partitions, indexes and TOAST; a row DELETE frees nothing until autovacuum makes the space
-- reusable). In a dry run the byte figures are estimates. A run right after a run reports zeros.
-- `now` is the reference time (tests pass any date); all horizons are computed in UTC.
create function run_retention(dry_run boolean default false, now timestamptz default now(),
                              time_budget interval default '5 minutes')
returns table (table_name text, action text, rows bigint, bytes bigint, detail text)
language plpgsql
volatile
security definer
set search_path = pg_catalog, public
set timezone = 'UTC'
set lock_timeout = '30s'  -- never queue for long in front of the controller's reads and writes
as $$
#variable_conflict use_column
declare
    scans_keep constant interval := '30 days';
    daily_keep constant interval := '90 days';
    ml_keep    constant interval := '3 months';

    started    constant timestamptz := clock_timestamp();
    all_tfs    constant integer := (select count(*) from candle_retention_tiers());
    stopped    boolean := false;  -- the time budget ran out before all work was done

    p          record;
    leaving    text[];
    staying    text[];
    archivable text[];
    deletable  text[];
    new_name   text;
    n          bigint;
    total      bigint;
    size_b     bigint;
    tf         text;
    d          timestamptz;
    scan_cut   timestamptz := date_trunc('day', now - scans_keep);
    daily_cut  date := (now - daily_keep)::date;
    daily_rows bigint;
    unlinked   bigint;

    drops      regclass[] := '{}';
    swaps      text[] := '{}';  -- pairs: partition name, replacement name
    swap_lo    timestamptz[] := '{}';
    swap_hi    timestamptz[] := '{}';

    c_before   bigint := tree_bytes('candles');
    a_before   bigint := tree_bytes('candles_archive');
    s_before   bigint := tree_bytes('scans');
    sd_before  bigint := tree_bytes('scans_daily');
    ml_before  bigint := tree_bytes('ml_predictions');

    c_moved    bigint := 0;
    c_deleted  bigint := 0;
    c_dropped  bigint := 0;
    c_drop_b   bigint := 0;
    c_rewrites bigint := 0;
    c_rw_b     bigint := 0;
    mv_tf      text[] := '{}';  -- per copy: timeframe, rows, partition (for the report)
    mv_n       bigint[] := '{}';
    mv_part    text[] := '{}';
    c_drop_d   text[] := '{}';
    c_rw_d     text[] := '{}';
    a_deleted  bigint := 0;
    a_dropped  bigint := 0;
    a_drop_b   bigint := 0;
    a_drop_d   text[] := '{}';
    s_agg      bigint := 0;
    s_daily    bigint := 0;
    s_deleted  bigint := 0;
    s_unlinked bigint := 0;
    sd_deleted bigint := 0;
    ml_deleted bigint := 0;
    i          integer;
begin
    if not dry_run and not pg_try_advisory_xact_lock(hashtext('run_retention')) then
        return query values ('*'::text, 'skipped'::text, 0::bigint, 0::bigint,
                             'another retention run is in progress'::text);
        return;
    end if;

    -- 1. Archive months past their timeframe's delete horizon: drop.
    for p in
        select c.oid::regclass as rel, c.relname, t.timeframe
          from candle_retention_tiers() t
          join pg_inherits l1 on l1.inhparent = 'public.candles_archive'::regclass
          join pg_class p1 on p1.oid = l1.inhrelid and p1.relname = 'candles_archive_' || t.timeframe
          join pg_inherits l2 on l2.inhparent = p1.oid
          join pg_class c on c.oid = l2.inhrelid
          cross join lateral partition_bounds(c.oid) b
         where b.hi <= now - t.delete_after
         order by b.lo, t.timeframe
    loop
        execute format('select count(*) from %s', p.rel) into n;
        size_b := pg_total_relation_size(p.rel);
        if not dry_run then
            execute format('drop table %s', p.rel);
        end if;
        a_deleted := a_deleted + n;
        a_dropped := a_dropped + 1;
        a_drop_b := a_drop_b + size_b;
        a_drop_d := a_drop_d || p.relname::text;
    end loop;

    -- 2. Candle partitions, oldest first: copy what leaves; the drops and swaps wait for step 6.
    for p in
        select c.oid::regclass as rel, c.relname, b.lo, b.hi
          from pg_inherits i join pg_class c on c.oid = i.inhrelid
          cross join lateral partition_bounds(c.oid) b
         where i.inhparent = 'public.candles'::regclass and b.hi is not null
         order by b.lo
    loop
        leaving := array(select t.timeframe from candle_retention_tiers() t where p.hi <= now - t.keep
                         order by t.keep);
        if cardinality(leaving) = 0 then
            continue;
        end if;
        archivable := array(select t.timeframe from candle_retention_tiers() t
                             where p.hi <= now - t.keep and p.hi > now - t.delete_after order by t.keep);
        deletable := array(select t.timeframe from candle_retention_tiers() t
                            where p.hi <= now - t.delete_after order by t.keep);
        staying := array(select t.timeframe from candle_retention_tiers() t where p.hi > now - t.keep
                          order by t.keep);
        -- a partition keeping some timeframes is rewritten only while it still holds leaving rows
        if cardinality(leaving) < all_tfs and not candle_partition_has(p.rel, leaving) then
            continue;
        end if;
        if clock_timestamp() - started > time_budget then
            stopped := true;
            exit;
        end if;

        if not dry_run then
            -- no writer may add rows to it between the copies and the swap
            execute format('lock table %s in share mode', p.rel);
        end if;
        -- each full scan below runs only where the (index-probe) check found rows for it
        foreach tf in array archivable loop
            if not candle_partition_has(p.rel, array[tf]) then
                continue;
            end if;
            if dry_run then
                execute format('select count(*) from %s where timeframe = $1', p.rel) into n using tf;
            else
                perform create_candle_archive_partition(tf, p.lo, p.hi);
                execute format($q$
                    insert into candles_archive select * from %s where timeframe = $1
                    on conflict (exchange, symbol, timeframe, ts) do update set
                        open = excluded.open, high = excluded.high, low = excluded.low,
                        close = excluded.close, volume = excluded.volume$q$, p.rel) using tf;
                get diagnostics n = row_count;
            end if;
            if n > 0 then
                c_moved := c_moved + n;
                mv_tf := mv_tf || tf;
                mv_n := mv_n || n;
                mv_part := mv_part || p.relname::text;
            end if;
        end loop;
        if cardinality(deletable) > 0 and candle_partition_has(p.rel, deletable) then
            execute format('select count(*) from %s where timeframe = any($1)', p.rel) into n using deletable;
            c_deleted := c_deleted + n;
        end if;

        size_b := pg_total_relation_size(p.rel);
        if cardinality(leaving) = all_tfs then
            drops := drops || p.rel;
            c_dropped := c_dropped + 1;
            c_drop_b := c_drop_b + size_b;
            c_drop_d := c_drop_d || p.relname::text;
        else
            c_rewrites := c_rewrites + 1;
            c_rw_d := c_rw_d || p.relname::text;
            if dry_run and not candle_partition_has(p.rel, staying) then
                c_rw_b := c_rw_b + size_b;
            elsif dry_run then
                execute format('select count(*), count(*) filter (where timeframe = any($1)) from %s', p.rel)
                   into total, n using leaving;
                c_rw_b := c_rw_b + (size_b * n / greatest(total, 1));
            else
                new_name := p.relname || '_new';
                -- the bound as a CHECK lets ATTACH skip its validation scan
                execute format('create table public.%I (like public.candles including defaults including constraints,'
                               ' constraint %I check (ts >= %L and ts < %L))',
                               new_name, new_name || '_bound', p.lo, p.hi);
                if candle_partition_has(p.rel, staying) then
                    execute format('insert into public.%I select * from %s where timeframe = any($1)'
                                   ' order by exchange, symbol, timeframe, ts', new_name, p.rel) using staying;
                end if;
                execute format('alter table public.%I add constraint %I primary key (exchange, symbol, timeframe, ts)',
                               new_name, new_name || '_pkey');
                swaps := swaps || array[p.relname::text, new_name];
                swap_lo := swap_lo || p.lo;
                swap_hi := swap_hi || p.hi;
            end if;
        end if;
    end loop;

    -- 3. ML feature rows: three months, except those linked to a signal.
    if not stopped then
        if dry_run then
            select count(*) into ml_deleted from ml_predictions m
             where m.created_at < now - ml_keep and m.signal_id is null;
        else
            delete from ml_predictions m where m.created_at < now - ml_keep and m.signal_id is null;
            get diagnostics ml_deleted = row_count;
        end if;
    end if;

    -- 4. Scans older than 30 days, one UTC day at a time: fold into scans_daily (days still within the
    --    aggregates' 90 days), unlink evaluated shadow outcomes, delete. Kept: scans that emitted a signal
    --    and scans a pending shadow outcome refers to.
    d := date_trunc('day', (select min(s.scanned_at) from scans s
                             where s.scanned_at < scan_cut and s.signal_id is null
                               and not exists (select 1 from shadow_outcomes o
                                                where o.scan_id = s.id and o.status = 'pending')));
    while d is not null and not stopped loop
        if clock_timestamp() - started > time_budget then
            stopped := true;
            exit;
        end if;
        if dry_run then
            select count(*), count(*) filter (where d::date >= daily_cut),
                   count(distinct (s.strategy, s.exchange, s.symbol, s.decision)) filter (where d::date >= daily_cut)
              into n, total, daily_rows
              from scans s
             where s.scanned_at >= d and s.scanned_at < d + interval '1 day' and s.signal_id is null
               and not exists (select 1 from shadow_outcomes o where o.scan_id = s.id and o.status = 'pending');
            select count(*) into unlinked
              from shadow_outcomes o join scans s on s.id = o.scan_id
             where o.status = 'evaluated'
               and s.scanned_at >= d and s.scanned_at < d + interval '1 day' and s.signal_id is null
               and not exists (select 1 from shadow_outcomes q where q.scan_id = s.id and q.status = 'pending');
        else
            update shadow_outcomes o set scan_id = null
              from scans s
             where o.scan_id = s.id and o.status = 'evaluated'
               and s.scanned_at >= d and s.scanned_at < d + interval '1 day' and s.signal_id is null
               and not exists (select 1 from shadow_outcomes q where q.scan_id = s.id and q.status = 'pending');
            get diagnostics unlinked = row_count;
            with gone as (
                delete from scans s
                 where s.scanned_at >= d and s.scanned_at < d + interval '1 day' and s.signal_id is null
                   and not exists (select 1 from shadow_outcomes o where o.scan_id = s.id and o.status = 'pending')
                returning s.*
            ), folded as (
                select g.strategy, g.exchange, g.symbol, g.decision, count(*) as scans,
                       min(g.scanned_at) as first_at, max(g.scanned_at) as last_at,
                       (array_agg(g.reason order by g.scanned_at, g.id))[1] as first_reason,
                       (array_agg(g.reason order by g.scanned_at desc, g.id desc))[1] as last_reason
                  from gone g
                 where d::date >= daily_cut
                 group by 1, 2, 3, 4
            ), patterns as (
                select g.strategy, g.exchange, g.symbol, g.decision,
                       regexp_replace(g.reason, '[-+]?\m[0-9]+([.][0-9]+)?', '#', 'g') as pattern, count(*) as n
                  from gone g
                 where d::date >= daily_cut
                 group by 1, 2, 3, 4, 5
            ), ranked as (
                select pt.*, row_number() over (partition by pt.strategy, pt.exchange, pt.symbol, pt.decision
                                                 order by pt.n desc, pt.pattern) as rank
                  from patterns pt
            ), upserted as (
                insert into scans_daily as cur (day, strategy, exchange, symbol, decision, scans, first_scanned_at,
                                                last_scanned_at, first_reason, last_reason, top_reasons)
                select d::date, f.strategy, f.exchange, f.symbol, f.decision, f.scans, f.first_at, f.last_at,
                       f.first_reason, f.last_reason,
                       (select coalesce(jsonb_object_agg(r.pattern, r.n), '{}') from ranked r
                         where r.rank <= 5 and r.strategy = f.strategy and r.exchange = f.exchange
                           and r.symbol = f.symbol and r.decision = f.decision)
                  from folded f
                on conflict (day, strategy, exchange, symbol, decision) do update set
                    scans = cur.scans + excluded.scans,
                    first_reason = case when excluded.first_scanned_at < cur.first_scanned_at
                                        then excluded.first_reason else cur.first_reason end,
                    last_reason = case when excluded.last_scanned_at > cur.last_scanned_at
                                       then excluded.last_reason else cur.last_reason end,
                    first_scanned_at = least(cur.first_scanned_at, excluded.first_scanned_at),
                    last_scanned_at = greatest(cur.last_scanned_at, excluded.last_scanned_at),
                    -- merging two top-5 lists is approximate; it happens only when a day's scans go in two runs
                    top_reasons = (select coalesce(jsonb_object_agg(k, v), '{}') from (
                                       select e.key as k, sum(e.value::bigint) as v
                                         from (select * from jsonb_each_text(cur.top_reasons)
                                               union all select * from jsonb_each_text(excluded.top_reasons)) e
                                        group by e.key order by v desc, k limit 5) m),
                    aggregated_at = now()
                returning 1
            )
            select (select count(*) from gone), (select coalesce(sum(f.scans), 0) from folded f),
                   (select count(*) from upserted)
              into n, total, daily_rows;
        end if;
        s_deleted := s_deleted + n;
        s_agg := s_agg + total;
        s_daily := s_daily + daily_rows;
        s_unlinked := s_unlinked + unlinked;

        d := date_trunc('day', (select min(s.scanned_at) from scans s
                                 where s.scanned_at >= d + interval '1 day' and s.scanned_at < scan_cut
                                   and s.signal_id is null
                                   and not exists (select 1 from shadow_outcomes o
                                                    where o.scan_id = s.id and o.status = 'pending')));
    end loop;

    -- 5. Daily aggregates past 90 days.
    if not stopped then
        if dry_run then
            select count(*) into sd_deleted from scans_daily sd where sd.day < daily_cut;
        else
            delete from scans_daily sd where sd.day < daily_cut;
            get diagnostics sd_deleted = row_count;
        end if;
    end if;

    -- 6. Candle drops and swaps, last: these take a brief ACCESS EXCLUSIVE lock on `candles`, held to commit.
    if not dry_run then
        for i in 1 .. cardinality(drops) loop
            execute format('drop table %s', drops[i]);
        end loop;
        for i in 1 .. cardinality(swap_lo) loop
            size_b := pg_total_relation_size(('public.' || swaps[2 * i - 1])::regclass);
            execute format('drop table public.%I', swaps[2 * i - 1]);
            execute format('alter table public.%I rename to %I', swaps[2 * i], swaps[2 * i - 1]);
            execute format('alter index public.%I rename to %I', swaps[2 * i] || '_pkey', swaps[2 * i - 1] || '_pkey');
            execute format('alter table public.candles attach partition public.%I for values from (%L) to (%L)',
                           swaps[2 * i - 1], swap_lo[i], swap_hi[i]);
            execute format('alter table public.%I drop constraint %I', swaps[2 * i - 1], swaps[2 * i] || '_bound');
            execute format('alter table public.%I enable row level security', swaps[2 * i - 1]);
            execute format('revoke all on table public.%I from public, anon, authenticated, executor', swaps[2 * i - 1]);
            c_rw_b := c_rw_b + size_b - pg_total_relation_size(('public.' || swaps[2 * i - 1])::regclass);
        end loop;
    end if;

    return query values
        ('candles'::text, 'moved'::text, c_moved, 0::bigint,
         'to candles_archive' || coalesce(': ' || (
             select string_agg(format('%s %s rows from %s', m.tf, m.total, m.parts), '; ' order by m.first)
               from (select u.tf, sum(u.n) as total, retention_names(array_agg(u.part order by u.ord)) as parts,
                            min(u.ord) as first
                       from unnest(mv_tf, mv_n, mv_part) with ordinality as u(tf, n, part, ord)
                      group by u.tf) m), '')),
        ('candles', 'deleted', c_deleted, 0::bigint, 'rows of months past their delete horizon'),
        ('candles', 'partitions_dropped', c_dropped, c_drop_b, retention_names(c_drop_d)),
        ('candles', 'partitions_rewritten', c_rewrites, c_rw_b, retention_names(c_rw_d)),
        ('candles', 'bytes_freed', 0::bigint,
         case when dry_run then c_drop_b + c_rw_b else c_before - tree_bytes('candles') end,
         case when dry_run then 'estimate' else format('%s -> %s', pg_size_pretty(c_before),
                                                       pg_size_pretty(tree_bytes('candles'))) end),
        ('candles_archive', 'deleted', a_deleted, 0::bigint, 'rows of dropped archive months'),
        ('candles_archive', 'partitions_dropped', a_dropped, a_drop_b, retention_names(a_drop_d)),
        ('candles_archive', 'bytes_freed', 0::bigint,
         case when dry_run then a_drop_b else a_before - tree_bytes('candles_archive') end,
         case when dry_run then 'estimate, before the archive grows by the moved rows'
              else format('%s -> %s (it grows by the rows moved in)', pg_size_pretty(a_before),
                          pg_size_pretty(tree_bytes('candles_archive'))) end),
        ('scans', 'aggregated', s_agg, 0::bigint, format('into %s scans_daily row(s)', s_daily)),
        ('scans', 'deleted', s_deleted, 0::bigint, 'older than 30 days, not referenced'),
        ('scans', 'bytes_freed', 0::bigint, case when dry_run then 0 else s_before - tree_bytes('scans') end,
         'deleted rows are reused after autovacuum'),
        ('scans_daily', 'deleted', sd_deleted, 0::bigint, 'days older than 90 days'),
        ('scans_daily', 'bytes_freed', 0::bigint,
         case when dry_run then 0 else sd_before - tree_bytes('scans_daily') end, 'grows by the days aggregated'),
        ('ml_predictions', 'deleted', ml_deleted, 0::bigint, 'older than 3 months, not linked to a signal'),
        ('ml_predictions', 'bytes_freed', 0::bigint,
         case when dry_run then 0 else ml_before - tree_bytes('ml_predictions') end,
         'deleted rows are reused after autovacuum'),
        ('shadow_outcomes', 'unlinked', s_unlinked, 0::bigint, 'evaluated outcomes whose scan was deleted');
    if stopped then
        return query values ('*'::text, 'incomplete'::text, 0::bigint, 0::bigint,
                             format('time budget of %s reached; the next run carries on', time_budget));
    end if;
end
$$;

do $$
begin
    if cron_available() then
        perform cron.schedule('retention', '41 3 * * *',
                              $job$set statement_timeout = '9min'; select * from run_retention()$job$);
    end if;
end
$$;

select apply_access_policy();
