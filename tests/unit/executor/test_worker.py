"""The slot counter the queue worker and the strategy share: claims never exceed the limit, releases never
go below zero, and restored positions may hold more (the threads and the Clock: tests/integration/executor)."""

from __future__ import annotations

from decimal import Decimal

from executor.worker import Slots

D = Decimal


def test_slots_hand_out_at_most_the_limit_and_never_go_below_zero() -> None:
    slots = Slots(3)
    assert slots.held == 0
    assert slots.reserve(2) == 2 and slots.held == 2
    assert slots.reserve(5) == 1 and slots.held == 3  # only what is left
    assert slots.reserve(1) == 0 and slots.held == 3  # full
    slots.release()
    assert slots.held == 2
    slots.release(2)
    assert slots.held == 0
    slots.release(4)  # a double release (a rejected and then closed signal) does not make room that is not there
    assert slots.held == 0 and slots.reserve(9) == 3


def test_slots_hold_beyond_the_limit_for_restored_positions() -> None:
    slots = Slots(2)
    slots.hold()
    assert slots.held == 1
    slots.hold(3)  # a restart brought back four open positions with a limit of two
    assert slots.held == 4
    assert slots.reserve(1) == 0 and slots.held == 4  # nothing free, and never a negative grant
    slots.release(3)
    assert slots.held == 1 and slots.reserve(0) == 0 and slots.held == 1
    assert slots.reserve(1) == 1 and slots.held == 2
