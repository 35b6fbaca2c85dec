-- pg_cron schedules the retention jobs where it is loaded (Supabase; Debian's postgresql-15-cron
-- preloaded by the embedded database). Where it is not, the jobs are skipped with a notice and
-- retention runs from `python -m controller retention run`.

do $$
begin
    if exists (select 1 from pg_extension where extname = 'pg_cron') then
        raise notice 'pg_cron: present, scheduled jobs enabled';
    elsif not exists (select 1 from pg_available_extensions where name = 'pg_cron') then
        raise notice 'pg_cron: not installed on this server, scheduled jobs skipped';
    else
        begin
            create extension pg_cron;
            raise notice 'pg_cron: created, scheduled jobs enabled';
        exception when others then
            raise notice 'pg_cron: not loadable in this database (%), scheduled jobs skipped', sqlerrm;
        end;
    end if;
end
$$;

-- Later migrations schedule jobs only where this is true.
create function cron_available() returns boolean
language sql stable
set search_path = pg_catalog
as $$
    select exists (select 1 from pg_extension where extname = 'pg_cron')
$$;
revoke all on function cron_available() from public, anon, authenticated;
