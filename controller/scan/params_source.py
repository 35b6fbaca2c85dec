"""The hook through which a scan reads each strategy's active parameters (those shadow testing applied).

Without one the scan uses conf/strategies.yml. A source may also name a canary rollout (`canary`): the
control parameters and the share of decisions on the active ones. The wiring injects `shadow.apply.ActiveParams`, which
returns the `strategy_params` version an applied recommendation (or its rollback) made active, so the
very next scan decides with it. Scan code never imports shadow: the lookup comes in from above.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from controller.scan.strategy_params import StrategyConfig

logger = logging.getLogger(__name__)


class ParamsSource(Protocol):
    def __call__(self, strategy: str, section: StrategyConfig[Any]) -> StrategyConfig[Any]:
        """The section to scan `strategy` with (`section` is the conf file's)."""
        ...


def active_or_conf(source: ParamsSource | None, strategy: str, section: StrategyConfig[Any]) -> StrategyConfig[Any]:
    """`source`'s answer, or the conf section when there is no source or it fails (the scan goes on)."""
    if source is None:
        return section
    try:
        return source(strategy, section)
    except Exception as exc:  # the store is down or a stored version is invalid: trade the conf values
        logger.warning("active parameters unreadable, using the conf file's",
                       extra={"strategy": strategy, "error": str(exc)})
        return section


def canary_of(source: ParamsSource | None, strategy: str,
              section: StrategyConfig[Any]) -> tuple[StrategyConfig[Any], float] | None:
    """(the control section, the share of decisions on the active one) while a canary rollout runs, else
    None: also when the source has no canaries or fails (then every decision uses the active section)."""
    canary = getattr(source, "canary", None)
    if canary is None:
        return None
    try:
        return canary(strategy, section)
    except Exception as exc:  # as above: a failed lookup scans with the active section alone
        logger.warning("canary unreadable, scanning with the active parameters alone",
                       extra={"strategy": strategy, "error": str(exc)})
        return None
