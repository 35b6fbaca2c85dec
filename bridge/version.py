"""The release version and the version of each interface others build on (docs/interfaces.md).

The one place they are written: pyproject.toml reads `VERSION` from here, the CLI prints it, and
tests/contract/test_interfaces.py fails when an interface changes while its version stays. Standard library
only, so the Hummingbot side can import it too.

An interface version is MAJOR.MINOR: MINOR for an addition a current user need not notice (a new optional
field, a new command), MAJOR for anything that can break one (a removed or renamed field, argument or
option, a changed type or return).
"""

from __future__ import annotations

VERSION = "0.3.0"

INTERFACES: dict[str, str] = {
    "signal_schema": "1.1",     # bridge/schemas.py: NewSignal, Signal, OrderEvent
    "queue_functions": "1.1",   # the executor role's SQL functions (claim_signals, ack_signal, ...)
    "executor_config": "1.1",   # executor/config.py: SignalExecutorConfig's fields
    "cli": "1.1",               # the controller's commands and options
}
