-- Who may do what.
--   anon          nothing
--   authenticated reads the dashboard views, nothing else
--   executor      (the Hummingbot script) executes claim_signals, ack_signal, report_order_event,
--                 heartbeat, and nothing else: no table, no other function
--   service_role  (the controller) everything
-- Row-level security is on for every table with no policy for anon/authenticated, so even a grant
-- added by mistake (Supabase grants public-schema tables to anon and authenticated by default) shows
-- them no row. service_role bypasses RLS; the table owner is not subject to it.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'executor') then
        create role executor nologin noinherit;
    end if;
end
$$;
-- PostgREST (as authenticator) switches to executor for requests whose JWT says role=executor.
grant executor to authenticator;
grant usage on schema public to anon, authenticated, service_role, executor;

-- apply_access_policy() applies all of this to whatever the public schema holds now; every migration
-- that adds a table, view or function ends by calling it, so nothing new starts open.
create function apply_access_policy()
returns void
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    r record;
begin
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
    loop
        execute format('alter table %I enable row level security', r.relname);
        execute format('revoke all on table %I from public, anon, authenticated, executor', r.relname);
        execute format('grant select, insert, update, delete on table %I to service_role', r.relname);
    end loop;
    -- partitions are reached through their parent only
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relispartition and c.relkind in ('r', 'p')
    loop
        execute format('revoke all on table %I from public, anon, authenticated, executor', r.relname);
    end loop;
    execute 'grant usage, select on all sequences in schema public to service_role';

    -- Postgres lets PUBLIC execute every new function: take that back everywhere, then grant.
    for r in select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
              where n.nspname = 'public' and p.prokind = 'f'
                and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
    loop
        execute format('revoke all on function %s from public, anon, authenticated, executor', r.sig);
        execute format('grant execute on function %s to service_role', r.sig);
    end loop;
    -- the executor's functions, as later migrations create them
    for r in select to_regprocedure(f) as sig from unnest(array[
                 'claim_signals(text, integer, integer, jsonb)', 'ack_signal(uuid, text, text, text)',
                 'report_order_event(jsonb)', 'heartbeat(text, jsonb)', 'executor_positions(text)']) as f
              where to_regprocedure(f) is not null
    loop
        execute format('grant execute on function %s to executor', r.sig);
    end loop;

    -- the dashboard
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relkind in ('v', 'm')
    loop
        execute format('revoke all on %I from public, anon, executor', r.relname);
        execute format('grant select on %I to authenticated, service_role', r.relname);
    end loop;
end
$$;

select apply_access_policy();
