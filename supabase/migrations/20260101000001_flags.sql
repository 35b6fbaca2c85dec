-- Feature flags: live values, editable from the Supabase dashboard; defaults and the phase
-- presets live in conf/flags.yml and are synced here by the controller. Every change of a value
-- is written to flag_changes by a trigger, whoever makes it (CLI, dashboard, SQL).

create table flags (
    name          text primary key check (name ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$'),
    kind          text not null check (kind in ('bool', 'int', 'float', 'text')),
    value         jsonb not null,
    default_value jsonb not null,
    min_value     numeric,
    max_value     numeric,
    choices       jsonb check (choices is null or jsonb_typeof(choices) = 'array'),
    description   text not null default '',
    updated_at    timestamptz not null default now(),
    updated_by    text not null default current_user
);

create table flag_changes (
    id         bigint generated always as identity primary key,
    name       text not null,
    old_value  jsonb,
    new_value  jsonb not null,
    changed_by text not null,
    changed_at timestamptz not null default now()
);
-- the dashboard lists the latest changes of one flag
create index flag_changes_name_changed_at_idx on flag_changes (name, changed_at desc);

-- Why a value is not allowed for a flag, or null when it is.
create function flag_value_error(kind text, value jsonb, min_value numeric, max_value numeric, choices jsonb)
returns text
language plpgsql immutable
set search_path = pg_catalog, public
as $$
declare
    n numeric;
begin
    if value is null or jsonb_typeof(value) = 'null' then
        return 'a value is required';
    end if;
    case kind
        when 'bool' then
            if jsonb_typeof(value) <> 'boolean' then
                return format('expected true or false, got %s', value);
            end if;
            return null;
        when 'text' then
            if jsonb_typeof(value) <> 'string' then
                return format('expected a string, got %s', value);
            end if;
            if choices is not null and not choices @> jsonb_build_array(value) then
                return format('expected one of %s, got %s', choices, value);
            end if;
            return null;
        when 'int', 'float' then
            if jsonb_typeof(value) <> 'number' then
                return format('expected a number, got %s', value);
            end if;
            n := (value #>> '{}')::numeric;
            if kind = 'int' and n <> trunc(n) then
                return format('expected a whole number, got %s', value);
            end if;
            if min_value is not null and n < min_value then
                return format('must be >= %s, got %s', min_value, value);
            end if;
            if max_value is not null and n > max_value then
                return format('must be <= %s, got %s', max_value, value);
            end if;
            return null;
        else
            return format('unknown kind %s', kind);
    end case;
end
$$;

create function flags_validate() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    problem text;
begin
    problem := flag_value_error(new.kind, new.value, new.min_value, new.max_value, new.choices);
    if problem is not null then
        raise exception 'flag %: value %', new.name, problem using errcode = 'check_violation';
    end if;
    problem := flag_value_error(new.kind, new.default_value, new.min_value, new.max_value, new.choices);
    if problem is not null then
        raise exception 'flag %: default %', new.name, problem using errcode = 'check_violation';
    end if;
    if tg_op = 'UPDATE' and new.value is distinct from old.value then
        new.updated_at := now();
    end if;
    return new;
end
$$;

create trigger flags_validate before insert or update on flags
for each row execute function flags_validate();

create function flags_audit() returns trigger
language plpgsql
set search_path = pg_catalog, public
as $$
begin
    if tg_op = 'INSERT' or new.value is distinct from old.value then
        insert into flag_changes (name, old_value, new_value, changed_by)
        values (new.name, case when tg_op = 'UPDATE' then old.value end, new.value, new.updated_by);
    end if;
    return null;
end
$$;

create trigger flags_audit after insert or update on flags
for each row execute function flags_audit();

-- Nobody but the controller (service_role, or the owner) touches flags. On Supabase the public
-- schema grants everything to anon and authenticated by default, hence the explicit revokes.
alter table flags enable row level security;
alter table flag_changes enable row level security;
revoke all on flags, flag_changes from public, anon, authenticated;
grant select, insert, update, delete on flags, flag_changes to service_role;
