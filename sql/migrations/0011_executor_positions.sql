-- Restart safety for the Hummingbot script: what it holds. A restarted executor asks for the signals it
-- is executing, with what filled on entry and exit and which of its orders are still open, and manages
-- them on; the queue never hands those signals out again, so nothing is executed twice.
create function executor_positions(consumer text)
returns table (signal jsonb, entry_amount numeric, entry_quote numeric, exit_amount numeric, exit_quote numeric,
               fees_quote numeric, opened_at timestamptz, open_orders jsonb)
language sql
stable
security definer
set search_path = pg_catalog, public
as $$
    select to_jsonb(s),
           coalesce(sum(f.amount) filter (where o.purpose = 'entry'), 0),
           coalesce(sum(f.amount * f.price) filter (where o.purpose = 'entry'), 0),
           coalesce(sum(f.amount) filter (where o.purpose = 'exit'), 0),
           coalesce(sum(f.amount * f.price) filter (where o.purpose = 'exit'), 0),
           coalesce(sum(f.fee_quote), 0),
           min(f.ts) filter (where o.purpose = 'entry'),
           coalesce((select jsonb_agg(jsonb_build_object('client_order_id', oo.client_order_id,
                                                         'purpose', oo.purpose, 'side', oo.side,
                                                         'amount', oo.amount, 'price', oo.price,
                                                         'filled_amount', oo.filled_amount,
                                                         'created_at', oo.created_at) order by oo.created_at)
                       from orders oo
                      where oo.signal_id = s.id and oo.status in ('created', 'partially_filled')), '[]')
      from signals s
      left join orders o on o.signal_id = s.id
      left join fills f on f.client_order_id = o.client_order_id
     where s.status = 'executing' and s.claimed_by = executor_positions.consumer
     group by s.id
     order by s.executing_at
$$;

-- The executor may call this one too: same policy as 0008, one more function.
create or replace function apply_access_policy()
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
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relispartition and c.relkind in ('r', 'p')
    loop
        execute format('revoke all on table %I from public, anon, authenticated, executor', r.relname);
    end loop;
    execute 'grant usage, select on all sequences in schema public to service_role';
    for r in select p.oid::regprocedure as sig from pg_proc p join pg_namespace n on n.oid = p.pronamespace
              where n.nspname = 'public' and p.prokind = 'f'
                and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
    loop
        execute format('revoke all on function %s from public, anon, authenticated, executor', r.sig);
        execute format('grant execute on function %s to service_role', r.sig);
    end loop;
    execute 'grant execute on function claim_signals(text, integer, integer, jsonb) to executor';
    execute 'grant execute on function ack_signal(uuid, text, text, text) to executor';
    execute 'grant execute on function report_order_event(jsonb) to executor';
    execute 'grant execute on function heartbeat(text, jsonb) to executor';
    execute 'grant execute on function executor_positions(text) to executor';
    for r in select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = 'public' and c.relkind in ('v', 'm')
    loop
        execute format('revoke all on %I from public, anon, executor', r.relname);
        execute format('grant select on %I to authenticated, service_role', r.relname);
    end loop;
end
$$;

select apply_access_policy();
