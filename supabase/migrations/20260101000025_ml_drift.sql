-- ML novelty and drift: the dissimilarity index is a distance ratio (about 0.5 among training points, 1 as
-- far as two training points are apart on average, unbounded beyond and infinite when an input the training
-- set always had is missing), no longer a share between 0 and 1; and a model whose live scores drifted from
-- its training set is demoted with the reason, by the scorer or a user, recorded on its row.

alter table ml_predictions drop constraint ml_predictions_dissimilarity_check;
alter table ml_predictions add constraint ml_predictions_dissimilarity_check check (dissimilarity >= 0);

alter table ml_models
    add column demoted_at    timestamptz,
    add column demoted_by    text,            -- 'drift' or the user (cli:<user>)
    add column demotion_note text,            -- why: the PSI figures that decided
    add column drift         jsonb;           -- the last drift reading of the model while active

select apply_access_policy();
