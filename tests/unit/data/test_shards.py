"""Shard specs and the stable symbol hash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from controller.config import PROJECT_ROOT
from controller.data.shards import ShardSpec, parse_spec, shard_of, symbols_of


def test_specs_parse_and_bad_ones_say_what_is_expected() -> None:
    assert parse_spec("1/3") == ShardSpec(3, 1) and not parse_spec("1/3").auto
    assert parse_spec("auto/2") == ShardSpec(2, None) and parse_spec("auto/2").text() == "auto/2"
    for bad, why in (("3/3", "0 .. 2"), ("0/0", "1 .. 1024"), ("a/2", "expected i/n"), ("1", "expected i/n")):
        with pytest.raises(ValueError, match=why):
            parse_spec(bad)


def test_every_symbol_falls_in_exactly_one_shard_and_the_shards_are_not_lopsided() -> None:
    symbols = [f"S{i:04d}-USDT" for i in range(1000)]
    parts = [symbols_of(symbols, [k], 4) for k in range(4)]
    assert sorted(s for part in parts for s in part) == sorted(symbols)
    assert all(200 <= len(part) <= 300 for part in parts)  # 250 each on average
    assert symbols_of(symbols, range(4), 4) == tuple(symbols)  # order kept


def test_the_shard_of_a_symbol_is_the_same_in_another_process_with_another_hash_seed() -> None:
    symbols = ["BTC-USDT", "ETH-USDT", "ADA-BTC", "XLM-BTC", "DOGE-USDT"]
    here = [shard_of(s, 7) for s in symbols]
    code = f"from controller.data.shards import shard_of; print([shard_of(s, 7) for s in {symbols!r}])"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
        assert out.strip() == str(here)
