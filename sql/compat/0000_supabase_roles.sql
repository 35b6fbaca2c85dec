-- Compatibility bootstrap for plain Postgres (tests, the embedded default, self-hosting):
-- creates what Supabase already has, so the migrations run unchanged on both.
-- Applied by `python -m controller migrate` only where these objects are missing, never on Supabase.
-- Idempotent: every statement checks before it creates.
--
-- Roles as in supabase/postgres' init scripts: anon and authenticated cannot log in and do not
-- inherit; service_role bypasses row-level security; authenticator (the role PostgREST logs in
-- as) may switch to each of them per request.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
end
$$;

grant anon, authenticated, service_role to authenticator;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

-- PostgREST sets request.jwt.claims (a JSON text) per transaction; these read it as Supabase's do.
create or replace function auth.jwt() returns jsonb
language sql stable
as $$
    select coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;

create or replace function auth.uid() returns uuid
language sql stable
as $$
    select nullif(auth.jwt() ->> 'sub', '')::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
    select nullif(auth.jwt() ->> 'role', '')
$$;
