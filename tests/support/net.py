"""Ports for tests that must find nothing listening."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses every connection for as long as the block runs.

    The socket is bound but never listens: connecting gets a refusal, and no other process (a parallel
    test worker's Postgres, say) can take the port meanwhile, as it could a port picked and released.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
