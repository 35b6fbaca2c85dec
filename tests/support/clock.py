"""A clock for tests: seconds that move only when told to or when something sleeps."""

from __future__ import annotations


class FakeClock:
    """Call it for the time; `advance` moves it; `sleep` moves it too and is recorded in `sleeps`."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.t += seconds
