"""A p-value together with the smallest value its method can resolve.

A resampling test with B resamples cannot tell p = 0.0001 from p = 1 / (B + 1): it reports (1 + k) / (1 + B)
for k resamples at least as extreme as the observation, so its smallest value is 1 / (B + 1). Printing that
floor as if it were measured ("p = 0.0005") overstates the evidence; `PValue.display` prints "< 0.001" (the
resolution rounded up to a readable bound) instead. An analytic p-value (DeLong, a z-test) has no floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PValue:
    value: float
    resolution: float = 0.0  # the smallest value the method can report (0: analytic)
    method: str = ""

    def __post_init__(self) -> None:
        if not (0.0 <= self.value <= 1.0) or math.isnan(self.value):
            raise ValueError(f"a p-value lies in [0, 1], got {self.value!r}")

    @property
    def at_floor(self) -> bool:
        """True when the method could not resolve a smaller value than the one reported."""
        return self.resolution > 0 and self.value <= self.resolution * (1 + 1e-9)

    def display(self, digits: int = 3) -> str:
        """"p = 0.042", or "< 0.001" when the value is below what `digits` show or at the method's floor."""
        smallest = 10.0 ** -digits
        if self.at_floor:
            bound = max(smallest, 10.0 ** math.ceil(math.log10(self.resolution)))
            return f"< {bound:.{digits}f}" if bound < 1 else f"<= {self.resolution:.{digits}f}"
        if self.value < smallest:
            return f"< {smallest:.{digits}f}"
        return f"{self.value:.{digits}f}"

    def as_dict(self) -> dict[str, float | str]:
        return {"p": self.value, "resolution": self.resolution, "method": self.method, "shown": self.display()}


def from_resamples(extreme: int, resamples: int, method: str = "resampling") -> PValue:
    """(1 + extreme) / (1 + resamples): the observation counts as one of the draws, so p is never 0."""
    if resamples < 1 or not (0 <= extreme <= resamples):
        raise ValueError(f"need 0 <= extreme ({extreme}) <= resamples ({resamples}), resamples >= 1")
    return PValue((1 + extreme) / (1 + resamples), 1 / (1 + resamples), method)
