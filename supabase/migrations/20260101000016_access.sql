-- Access (issue 15): the dashboard for allow-listed people only, executor tokens bound to their consumer.
--
-- On Supabase `authenticated` is anyone who signs up with the project's public anon key, so that role
-- alone must not open the dashboard: every view now shows rows to `authenticated` only when the JWT's
-- subject is in dashboard_members (zero rows otherwise, not an error). Other roles that may read a
-- view (service_role, the table owner on a direct connection) are not gated.
--
-- An executor JWT carrying a `consumer` claim may claim, acknowledge, report and heartbeat only as that
-- consumer; a different consumer argument is refused by name with 42501 (PostgREST: 403) and nothing is
-- written. Without a claim (the direct-Postgres transport, older tokens) the consumer is taken as given.
--
-- Both wrap what earlier migrations defined rather than copy it (apply_access_policy is renamed, the
-- queue functions move to the schema queue_core), so what other migrations made of them is kept.

create table dashboard_members (
    user_id  uuid primary key,            -- auth.uid(): the `sub` of the person's JWT
    email    text,                        -- as known when added (Supabase's auth.users), for `access list`
    added_by text not null,
    added_at timestamptz not null default now()
);

-- SECURITY DEFINER: authenticated has no privilege on dashboard_members (RLS closes it too).
-- plpgsql so that auth.uid() is looked up when called, not when created (Supabase's own auth.uid()).
create function is_dashboard_member()
returns boolean
language plpgsql
stable
security definer
set search_path = pg_catalog, public
as $$
begin
    return exists (select 1 from dashboard_members where user_id = auth.uid());
end
$$;

-- gate_views: every plain view of the public schema that does not call is_dashboard_member() yet is
-- replaced by itself filtered on membership. `current_user` inside a view is the reader (only
-- privilege checks use the view's owner), and the filter uses no column, so for a non-member the
-- planner skips the view's query altogether. A view a later migration (re)creates is gated by the
-- apply_access_policy() call that ends that migration.
create function gate_views()
returns void
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    r record;
begin
    for r in select c.oid, c.relname, c.reloptions from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relkind = 'v'
                and not exists (select 1 from pg_rewrite w
                                  join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = w.oid
                                 where w.ev_class = c.oid
                                   and d.refclassid = 'pg_proc'::regclass
                                   and d.refobjid = 'public.is_dashboard_member()'::regprocedure)
    loop
        -- the view's options (security_barrier, security_invoker) are kept
        execute format('create or replace view public.%I %s as select * from (%s) ungated'
                       ' where current_user not in (''anon'', ''authenticated'') or public.is_dashboard_member()',
                       r.relname, coalesce('with (' || array_to_string(r.reloptions, ', ') || ')', ''),
                       rtrim(pg_get_viewdef(r.oid), E'; \n'));
    end loop;
end
$$;

-- apply_access_policy() as earlier migrations left it becomes apply_base_access_policy(); the new one
-- gates the views first, then applies it, then adds what the dashboard gate needs.
alter function apply_access_policy() rename to apply_base_access_policy;

create function apply_access_policy()
returns void
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    r record;
begin
    perform gate_views();
    perform apply_base_access_policy();
    -- the gated views call it as the reader
    grant execute on function is_dashboard_member() to authenticated;
    -- a materialized view cannot ask who reads it: the controller only
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relkind = 'm'
    loop
        execute format('revoke all on %I from authenticated', r.relname);
    end loop;
end
$$;

-- The executor's consumer ----------------------------------------------------------------------------

-- The consumer a queue call acts as: the JWT's `consumer` claim when there is one (a `given` name that
-- differs is refused by name), else `given` (direct Postgres has no JWT).
create function queue_consumer(fn text, given text)
returns text
language plpgsql
stable
set search_path = pg_catalog, public
as $$
declare
    bound text := nullif(auth.jwt() ->> 'consumer', '');
begin
    if bound is null then
        return given;
    end if;
    if given is not null and given is distinct from bound then
        raise exception '%: this token is bound to consumer "%", not "%"', fn, bound, given
            using errcode = 'insufficient_privilege';
    end if;
    return bound;
end
$$;

-- The queue functions as earlier migrations left them move, unchanged, to the schema queue_core, which
-- no API role may use; the public ones below bind the consumer, then call them. (A rename would break
-- their bodies, which qualify parameters by the function's name, e.g. ack_signal.status.)
create schema queue_core;
revoke all on schema queue_core from public;
alter function claim_signals(text, integer, integer, jsonb) set schema queue_core;
alter function ack_signal(uuid, text, text, text) set schema queue_core;
alter function report_order_event(jsonb) set schema queue_core;
alter function heartbeat(text, jsonb) set schema queue_core;
alter function executor_positions(text) set schema queue_core;
do $$
declare
    r record;
begin
    for r in select p.oid::regprocedure as sig from pg_proc p where p.pronamespace = 'queue_core'::regnamespace loop
        execute format('revoke all on function %s from public, anon, authenticated, executor, service_role', r.sig);
    end loop;
end
$$;

create function claim_signals(consumer text, max_count integer, lease_seconds integer, markets jsonb default null)
returns setof signals
language plpgsql
volatile
security definer
set search_path = pg_catalog, public
as $$
begin
    return query select * from queue_core.claim_signals(queue_consumer('claim_signals', consumer), max_count,
                                                     lease_seconds, markets);
end
$$;

create function ack_signal(signal_id uuid, consumer text, status text, reason text default null)
returns signals
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
begin
    return queue_core.ack_signal(signal_id, queue_consumer('ack_signal', consumer), status, reason);
end
$$;

-- With a bound token an event may only be about a signal that consumer holds, and its "consumer" key
-- (filled in when missing) must be that consumer.
create function report_order_event(event jsonb)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
declare
    bound text := queue_consumer('report_order_event', null);
    holder text;
    sid uuid;
begin
    if bound is null or event is null or jsonb_typeof(event) <> 'object' then
        return queue_core.report_order_event(event);  -- which also says what is wrong with the event
    end if;
    if jsonb_typeof(event -> 'consumer') = 'string' then
        perform queue_consumer('report_order_event', event ->> 'consumer');
    end if;
    begin
        sid := (event ->> 'signal_id')::uuid;
    exception when invalid_text_representation then
        return queue_core.report_order_event(event);
    end;
    select claimed_by into holder from signals where id = sid;
    if found and holder is distinct from bound then
        raise exception 'report_order_event: signal % is claimed by %, not "%"', sid,
            coalesce('"' || holder || '"', 'nobody'), bound using errcode = 'insufficient_privilege';
    end if;
    return queue_core.report_order_event(
        case when coalesce(jsonb_typeof(event -> 'consumer'), 'null') = 'null'
             then event || jsonb_build_object('consumer', bound) else event end);
end
$$;

-- With a bound token the component names that consumer: "bot-a" or "<kind>:bot-a".
create function heartbeat(component text, progress jsonb default '{}')
returns void
language plpgsql
security definer
set search_path = pg_catalog, public
as $$
declare
    bound text := queue_consumer('heartbeat', null);
begin
    if bound is not null and component is distinct from bound
       and right(component, length(bound) + 1) is distinct from ':' || bound then
        raise exception 'heartbeat: this token is bound to consumer "%", not component "%"', bound, component
            using errcode = 'insufficient_privilege';
    end if;
    perform queue_core.heartbeat(component, progress);
end
$$;

-- Its result columns are read from the original, whatever an earlier migration made them.
do $$
begin
    execute format($f$
        create function executor_positions(consumer text)
        returns %s
        language sql
        stable
        security definer
        set search_path = pg_catalog, public
        as 'select * from queue_core.executor_positions(queue_consumer(''executor_positions'', consumer))'
        $f$, pg_get_function_result('queue_core.executor_positions(text)'::regprocedure));
end
$$;

select apply_access_policy();
