"""Which symbols a controller scans when several share one universe: a stable hash of the symbol, modulo n.

Pure: the leases that say which shards a controller holds live in `controller.data.shard_leases`. The hash
is SHA-256 of the symbol, not Python's `hash()`, which is salted per process: two controllers (or one
before and after a restart) must agree on every symbol's shard.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

_SPEC = re.compile(r"(?P<shard>\d+|auto)/(?P<n>\d+)")
MAX_SHARDS = 1024  # the database's check on shard_leases.n


@dataclass(frozen=True)
class ShardSpec:
    """`--shard i/n` (shard i of n, and no other) or `--shard auto/n` (`shard` None: any free or lapsed one)."""

    n: int
    shard: int | None

    @property
    def auto(self) -> bool:
        return self.shard is None

    def text(self) -> str:
        return f"{'auto' if self.shard is None else self.shard}/{self.n}"


def parse_spec(text: str) -> ShardSpec:
    """`i/n` or `auto/n`; ValueError naming what is wrong otherwise."""
    match = _SPEC.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"--shard {text!r}: expected i/n (e.g. 0/2) or auto/n (e.g. auto/2)")
    n = int(match["n"])
    if not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"--shard {text!r}: n must be 1 .. {MAX_SHARDS}")
    if match["shard"] == "auto":
        return ShardSpec(n, None)
    shard = int(match["shard"])
    if shard >= n:
        raise ValueError(f"--shard {text!r}: the shard must be 0 .. {n - 1}")
    return ShardSpec(n, shard)


def shard_of(symbol: str, n: int) -> int:
    """The shard of `symbol` among `n`: the same in every process and on every machine."""
    digest = hashlib.sha256(symbol.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def symbols_of(symbols: Iterable[str], shards: Iterable[int], n: int) -> tuple[str, ...]:
    """The symbols of `symbols` that fall in `shards`, in their order."""
    held = set(shards)
    return tuple(s for s in symbols if shard_of(s, n) in held)
