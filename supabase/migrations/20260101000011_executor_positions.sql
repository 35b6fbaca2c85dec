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

-- apply_access_policy (0008) grants it to the executor now that it exists.
select apply_access_policy();
