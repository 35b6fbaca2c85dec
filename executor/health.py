"""Order health, checked every health_check_interval_s: stale, partially filled and lost orders, and cancels
that were never confirmed. A replacement is placed only once the cancel of the order it replaces is confirmed
(`Positions.after_cancel`), so no purpose ever has two live orders."""

from __future__ import annotations

from executor.models import Position, TrackedOrder
from executor.positions import Positions


def check_orders(positions: Positions, now: float) -> None:
    config, health, reporter = positions.config, positions.health, positions.reporter
    live = positions.market.live_order_ids()
    for position in list(positions.open.values()):
        for order in position.open_orders():
            if order.cancel_sent_at is not None:
                _chase_cancel(positions, position, order, live, now)
                continue
            if positions.is_take_profit_order(order) and order.order_id in live:
                continue  # a maker take profit rests until its price, or until another exit cancels it
            age = now - order.created_at
            if (order.price is None and order.order_id not in live and age >= config.market_order_timeout_s
                    and not positions.market.reconcile_on_exchange(position, order, now)):
                # a market order that never reached a final state: lost (the wallet cap keeps a repeat
                # exit from selling coins that a lost-but-filled exit already sold)
                health["lost_market_orders"] += 1
                reporter.report_order(position, order, "order_failed", now,
                                      reason=f"lost: no final event within {config.market_order_timeout_s:g} s")
                positions.finish_order(position, order, now)
                continue
            if order.price is not None and order.order_id not in live:
                # a resting order the connector no longer knows and no event told us about
                order.missing_since = order.missing_since or now
                if now - order.missing_since >= config.lost_order_grace_s:
                    health["lost_reconciled"] += 1
                    reporter.report_order(position, order, "order_failed", now, reason="lost by the connector")
                    positions.finish_order(position, order, now)
                continue
            if order.level is not None:
                continue  # a grid level rests until it fills or the exit cancels it: never stale, never chased
            if order.filled > 0:
                # a partial fill is governed by its own age alone (shorter than the stale age by config)
                if age >= config.partial_fill_max_age_s:
                    health["partial_fills_handled"] += 1
                    positions.cancel(position, order, now,
                                     "market" if config.partial_fill_action == "complete" else None)
            elif order.price is not None and age >= stale_after(positions, order):
                health["stale_cancelled"] += 1
                reprice = order.purpose == "exit" or (config.stale_entry_action == "reprice" and not order.repriced)
                positions.cancel(position, order, now, "reprice" if reprice else None)


def stale_after(positions: Positions, order: TrackedOrder) -> float:
    """A resting entry waits limit_timeout_s (if shorter than the stale threshold), anything else stale_order_s."""
    if order.purpose == "entry":
        return min(positions.config.limit_timeout_s, positions.config.stale_order_s)
    return positions.config.stale_order_s


def _chase_cancel(positions: Positions, position: Position, order: TrackedOrder, live: set[str],
                  now: float) -> None:
    """A cancel not confirmed within lost_order_grace_s: the order is gone (finish it, then replace) or the
    cancel is sent again. Never a replacement while the old order may still fill."""
    if order.cancel_sent_at is None or now - order.cancel_sent_at < positions.config.lost_order_grace_s:
        return
    if order.order_id not in live and order.price is not None:
        positions.health["cancel_unconfirmed_gone"] += 1
        positions.reporter.report_order(position, order, "order_cancelled", now,
                                        reason="cancel not confirmed; order gone")
        positions.after_cancel(position, order, now)
    else:
        positions.health["cancel_resent"] += 1
        positions.cancel(position, order, now, order.replace)
