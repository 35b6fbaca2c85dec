-- What a stored comparison needs to be read without recomputing it: the smallest p its resampling can
-- report, the smallest difference its candidates detect, and what was compared (equal size, or per unit at
-- risk for a variation that changes only its size). mean_diff_pct now holds the difference of per-unit net
-- P&L (size left out), and q_value is Benjamini-Hochberg over every comparison of the pass.
alter table shadow_performance
    add column p_resolution double precision,
    add column mde_pct      double precision,
    add column basis        text check (basis in ('equal size', 'per unit at risk', 'no-op'));
