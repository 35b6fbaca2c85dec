"""The one place that computes p-values, intervals, corrections and sample sizes.

`ml` (the promotion gate), `shadow` (variation comparisons, rollback) and the phase checks of `controller.ops`
import from here, so a figure that decides is computed one way and its false-positive rate can be measured
once. Pure functions of arrays: no I/O, and nothing here imports the rest of the project.

- `stats.pvalues`: a p-value with its resolution (a resampled p is never below 1 / (B + 1)).
- `stats.auc`: ROC AUC with DeLong's standard error, interval and one-sided test against 0.5.
- `stats.resample`: i.i.d., circular-block, stationary and cluster bootstrap indices; a bootstrap of a
  statistic; paired differences.
- `stats.multiple`: Holm and Benjamini-Hochberg adjustments (statsmodels).
- `stats.power`: trades needed, minimum detectable effect and power for win rates and mean P&L.
- `stats.rates`: an observed rate with its Wilson interval.
- `stats.scores`: Brier score and Brier skill.
"""
