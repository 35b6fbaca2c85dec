-- Latency (issue 10): a new signal wakes the executors at once instead of at their next claim poll.
-- Each insert of a claimable signal sends NOTIFY on channel `signals_new` with the payload
-- `<exchange>:<symbol>`, so a bot wakes only for the markets it trades. The notification is delivered when
-- the emitting transaction commits (never for a rolled-back emit). LISTEN needs no privilege, so the
-- executor role listens on its direct-Postgres connection; PostgREST cannot listen and keeps polling.
create function notify_signal_new()
returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    perform pg_notify('signals_new', new.exchange || ':' || new.symbol);
    return null;
end
$$;

create trigger signals_notify_new
    after insert on signals
    for each row when (new.status = 'new')
    execute function notify_signal_new();

select apply_access_policy();
