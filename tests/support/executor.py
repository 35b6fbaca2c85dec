"""Helpers of the executor tests that read what a run left: database rows and the paper wallet."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from offline.harness import Harness

FEE = Decimal("0.001")  # Binance's 0.1 %, the fee schema the fee-charging tests run with


def rows(url: str, query: str, *params: Any) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def wallet(harness: Harness) -> tuple[Decimal, Decimal]:
    return (Decimal(str(harness.exchange.get_balance("USDT"))), Decimal(str(harness.exchange.get_balance("BTC"))))
