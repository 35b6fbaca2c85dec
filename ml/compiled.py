"""numba compilation shared by the scoring kernels (the tree walk, the nearest-neighbour distance)."""

from __future__ import annotations

from typing import Any

import numba


def cached_njit(function: Any) -> Any:
    """numba's compiled `function`, cached on disk (next to its module, or numba's user cache) so that only the
    first process after an install pays the compile (seconds); without a writable cache, compiled per process."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, cache=False)(function)
