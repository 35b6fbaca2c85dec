"""The vectorised exit rule lives in `bridge.exit_replay` (the ML labels use it too, and `ml` may not import
`shadow`); shadow's modules and tests import it from here as before."""

from bridge.exit_replay import (
    NO_HIT,
    PENDING,
    REASON_CODES,
    BarrierGrid,
    Paths,
    Result,
    net_pnl_pct,
    replay,
)

__all__ = ["NO_HIT", "PENDING", "REASON_CODES", "BarrierGrid", "Paths", "Result", "net_pnl_pct", "replay"]
