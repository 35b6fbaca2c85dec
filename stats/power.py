"""How many trades a question needs, and what a number of trades can detect (normal approximation, from
statsmodels' `NormalIndPower`).

Win rates use Cohen's h (the arcsine transform), so the answer does not depend on which arm is called first;
mean P&L uses the standardised difference d = delta / sd. Two-sided at `alpha`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize


@dataclass(frozen=True)
class SampleSize:
    control: int
    treatment: int

    @property
    def total(self) -> int:
        return self.control + self.treatment


def _check(power: float, alpha: float) -> None:
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power lie in (0, 1), got alpha={alpha}, power={power}")


def trades_needed_rates(p_control: float, p_treatment: float, *, treatment_share: float = 0.5, power: float = 0.8,
                        alpha: float = 0.05) -> SampleSize:
    """Trades per arm to detect win rate `p_control` -> `p_treatment` with `treatment_share` of trades treated."""
    _check(power, alpha)
    if not (0 < treatment_share < 1):
        raise ValueError("treatment_share lies in (0, 1)")
    h = abs(proportion_effectsize(p_treatment, p_control))
    if h == 0:
        raise ValueError("no difference between the win rates: no number of trades detects it")
    ratio = treatment_share / (1 - treatment_share)
    n1 = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=ratio)
    return SampleSize(math.ceil(n1), math.ceil(n1 * ratio))


def rate_power(p_control: float, p_treatment: float, n_control: int, n_treatment: int, *,
               alpha: float = 0.05) -> float:
    """The chance that `n_control` and `n_treatment` trades show the difference at `alpha`."""
    if n_control < 1 or n_treatment < 1:
        return 0.0
    h = abs(proportion_effectsize(p_treatment, p_control))
    return float(NormalIndPower().power(effect_size=h, nobs1=n_control, alpha=alpha, ratio=n_treatment / n_control))


def detectable_rate(p_control: float, n_control: int, n_treatment: int, *, power: float = 0.8,
                    alpha: float = 0.05) -> float:
    """The smallest win rate above `p_control` these trades detect with `power` (the minimum detectable effect
    is this minus `p_control`)."""
    _check(power, alpha)
    if n_control < 2 or n_treatment < 2:
        return 1.0
    h = NormalIndPower().solve_power(nobs1=n_control, alpha=alpha, power=power, ratio=n_treatment / n_control)
    angle = math.asin(math.sqrt(p_control)) + h / 2
    return 1.0 if angle >= math.pi / 2 else math.sin(angle) ** 2


def trades_needed_mean(sd: float, delta: float, *, power: float = 0.8, alpha: float = 0.05) -> int:
    """Paired (or one-sample) trades to detect a mean difference `delta` given its per-trade sd."""
    _check(power, alpha)
    if sd <= 0 or delta == 0:
        raise ValueError("need sd > 0 and delta != 0")
    return math.ceil(NormalIndPower().solve_power(effect_size=abs(delta) / sd, alpha=alpha, power=power, ratio=0))


def detectable_mean(sd: float, n: int, *, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest mean difference `n` paired trades detect with `power`, in the units of `sd`."""
    _check(power, alpha)
    if n < 2:
        return math.inf
    return float(NormalIndPower().solve_power(nobs1=n, alpha=alpha, power=power, ratio=0)) * sd


def detectable_from_interval(low: float, high: float, *, confidence: float = 0.95, power: float = 0.8,
                             alpha: float = 0.05) -> float:
    """The minimum detectable effect of a comparison whose (bootstrap) interval is [low, high]: the
    standard error read from the interval's width, times z(1 - alpha/2) + z(power). It inherits the
    interval's handling of dependence (a cluster bootstrap widens both)."""
    _check(power, alpha)
    if not (0 < confidence < 1):
        raise ValueError(f"confidence lies in (0, 1), got {confidence}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return math.inf
    z = NormalDist().inv_cdf
    se = (high - low) / (2 * z(0.5 + confidence / 2))
    return float((z(1 - alpha / 2) + z(power)) * se)
