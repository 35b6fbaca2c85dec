-- Register a parameter set once and give it the next version of its strategy; the same set again
-- returns the version it already has. Both store adapters call this, so versioning lives in one place.
create function register_strategy_params(strategy text, params jsonb, params_hash text)
returns integer
language plpgsql
set search_path = pg_catalog, public
as $$
declare
    v integer;
begin
    if params is null or jsonb_typeof(params) <> 'object' then
        raise exception 'register_strategy_params: params must be a JSON object' using errcode = 'invalid_parameter_value';
    end if;
    -- serialise registrations of one strategy, so two controllers cannot take the same version
    perform pg_advisory_xact_lock(hashtext('strategy_params:' || register_strategy_params.strategy));
    select sp.version into v from strategy_params sp
     where sp.strategy = register_strategy_params.strategy and sp.params_hash = register_strategy_params.params_hash;
    if v is null then
        select coalesce(max(sp.version), 0) + 1 into v from strategy_params sp
         where sp.strategy = register_strategy_params.strategy;
        insert into strategy_params (strategy, version, params, params_hash)
        values (register_strategy_params.strategy, v, register_strategy_params.params,
                register_strategy_params.params_hash);
    end if;
    return v;
end
$$;

select apply_access_policy();
