-- A canary rollout: while an applied change is monitored, a random share of the scan's decisions use the
-- applied parameters and the rest the version before it (the control); each signal records its arm in
-- features.params_arm. An activation without a share is a full rollout.
alter table strategy_params_activations
    add column canary_share    double precision check (canary_share > 0 and canary_share < 1),
    add column control_version integer,
    add foreign key (strategy, control_version) references strategy_params (strategy, version),
    add check ((canary_share is null) = (control_version is null));

select apply_access_policy();
