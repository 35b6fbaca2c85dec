"""Tests that may be looked at after every trade without multiplying false alarms.

A rollback monitor evaluates after every closed trade (and the evaluator every few hours). A fixed-sample
test repeated at each look fires far more often than its nominal level; the tests here keep their stated
false-alarm rate over any number of looks:

- `mixture_sprt`: the mixture sequential probability ratio test (Robbins 1970; the always-valid p-value of
  Johari, Pekelis & Walsh 2017) for a drop of a mean below a reference. With a normal mixture of scale tau
  over the alternative means, the likelihood ratio of n observations with sum of deviations S is
  sqrt(s2 / (s2 + n tau2)) * exp(tau2 S^2 / (2 s2 (s2 + n tau2))); by Ville's inequality it exceeds 1 / alpha
  with probability at most alpha ever, under the reference mean. Only drops count (one-sided), which keeps the
  bound. The variance is the reference's (estimated beforehand), so the bound is approximate for heavy tails
  and short references: `bench/shadow_stats.py` measures the real rate on resampled trades.
- `run_probability` / `run_threshold`: the chance of a run of k losses somewhere in n independent trades with
  loss rate q (exact, by dynamic programming over the current run length), and the shortest run whose chance
  stays below a stated rate: a consecutive-loss alarm whose false-alarm rate is known, not a fixed 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sequential:
    """The state of a one-sided mixture SPRT after the observations seen so far."""

    n: int
    mean: float  # of the observations
    reference: float
    log_ratio: float  # log of the mixture likelihood ratio (0 when the mean is not below the reference)
    alpha: float

    @property
    def rejects(self) -> bool:
        """True once the evidence of a drop below the reference exceeds 1 / alpha."""
        return self.log_ratio >= math.log(1 / self.alpha)

    @property
    def p_value(self) -> float:
        """The always-valid p-value: min(1, 1 / ratio)."""
        return float(min(1.0, math.exp(-self.log_ratio)))


def mixture_sprt(values: np.ndarray, reference: float, sd: float, *, alpha: float, tau: float) -> Sequential:
    """Is the mean of `values` below `reference`? `sd`: the per-observation standard deviation under the
    reference (from data seen before); `tau`: the mixture's scale, the size of drop the test is most
    sensitive to, in the units of the values."""
    if not (0 < alpha < 1):
        raise ValueError(f"alpha lies in (0, 1), got {alpha}")
    if not (sd > 0 and tau > 0):
        raise ValueError(f"need sd > 0 and tau > 0, got sd={sd}, tau={tau}")
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return Sequential(0, math.nan, reference, 0.0, alpha)
    s = float((x - reference).sum())
    s2, t2 = sd * sd, tau * tau
    log_ratio = 0.5 * math.log(s2 / (s2 + n * t2)) + t2 * s * s / (2 * s2 * (s2 + n * t2))
    if s >= 0:  # a mean at or above the reference is no evidence of a drop
        log_ratio = 0.0
    return Sequential(n, float(x.mean()), reference, max(0.0, log_ratio), alpha)


def run_probability(loss_rate: float, trades: int, run: int) -> float:
    """The chance that `trades` independent trades, each a loss with probability `loss_rate`, contain at
    least `run` losses in a row."""
    if not (0 <= loss_rate <= 1) or trades < 0 or run < 1:
        raise ValueError(f"need 0 <= loss_rate <= 1, trades >= 0, run >= 1; got {loss_rate}, {trades}, {run}")
    if run > trades:
        return 0.0
    state = np.zeros(run)  # probability of a current run of i losses and no run of `run` yet
    state[0] = 1.0
    hit = 0.0
    for _ in range(trades):
        nxt = np.zeros(run)
        nxt[0] = state.sum() * (1 - loss_rate)
        nxt[1:] = state[:-1] * loss_rate
        hit += state[-1] * loss_rate
        state = nxt
    return float(min(1.0, hit))


def run_threshold(loss_rate: float, trades: int, alpha: float) -> int:
    """The shortest run of losses whose chance in `trades` trades at `loss_rate` is at most `alpha`."""
    if not (0 < alpha < 1):
        raise ValueError(f"alpha lies in (0, 1), got {alpha}")
    for run in range(1, trades + 2):
        if run_probability(loss_rate, trades, run) <= alpha:
            return run
    return trades + 1
