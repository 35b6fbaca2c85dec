"""Every section of conf/controller.yml refuses values outside its bounds, naming the file and the key,
and accepts the values at the edge of its bounds (so a bound cannot silently move by one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import load_config
from controller.config_base import ConfigError

# (section yaml, the key the error must name, what the message must say)
INVALID: list[tuple[str, str, str]] = [
    # database
    ("database:\n  name: Trading-DB\n", "database.name", "should match pattern"),
    ("database:\n  connect_timeout_s: 0\n", "database.connect_timeout_s", "greater than or equal to 1"),
    ("database:\n  connect_timeout_s: 301\n", "database.connect_timeout_s", "less than or equal to 300"),
    # log, flags, storage
    ("log:\n  level: TRACE\n", "log.level", "Input should be"),
    ("flags:\n  refresh_s: 0.5\n", "flags.refresh_s", "greater than or equal to 1"),
    ("flags:\n  refresh_s: 3601\n", "flags.refresh_s", "less than or equal to 3600"),
    ("storage:\n  warn_table_gb: 0\n", "storage.warn_table_gb", "greater than 0"),
    # universe, loop
    ("universe:\n  symbols: []\n", "universe.symbols", "at least 1 item"),
    ("universe:\n  symbols: [btc-usdt]\n", "universe.symbols", "BASE-QUOTE"),
    ("loop:\n  strategy_timeout_s: 0\n", "loop.strategy_timeout_s", "greater than 0"),
    ("loop:\n  strategy_timeout_s: 301\n", "loop.strategy_timeout_s", "less than or equal to 300"),
    ("loop:\n  lookback_candles: 59\n", "loop.lookback_candles", "greater than or equal to 60"),
    ("loop:\n  lookback_candles: 5001\n", "loop.lookback_candles", "less than or equal to 5000"),
    # regime: thresholds on the right side of zero, consistent, multipliers within [0, 1] for every regime
    ("regime:\n  markets: {binance: btc/usdt}\n", "regime.markets.binance", "should match pattern"),
    ("regime:\n  candidates: [BTC_USDT]\n", "regime.candidates.0", "should match pattern"),
    ("regime:\n  candidates: []\n", "regime.candidates", "at least 1 item"),
    ("regime:\n  max_age_s: 0\n", "regime.max_age_s", "greater than 0"),
    ("regime:\n  panic_peak_decline_24h_pct: 0\n", "regime.panic_peak_decline_24h_pct", "greater than 0"),
    ("regime:\n  panic_peak_decline_48h_pct: 101\n", "regime.panic_peak_decline_48h_pct",
     "less than or equal to 100"),
    ("regime:\n  panic_1h_pct: 3\n", "regime.panic_1h_pct", "less than 0"),
    ("regime:\n  panic_24h_pct: -101\n", "regime.panic_24h_pct", "greater than or equal to -100"),
    ("regime:\n  caution_4h_pct: 0\n", "regime.caution_4h_pct", "less than 0"),
    ("regime:\n  panic_volatility_pct: 0\n", "regime.panic_volatility_pct", "greater than 0"),
    ("regime:\n  euphoria_1h_pct: -1\n", "regime.euphoria_1h_pct", "greater than 0"),
    ("regime:\n  euphoria_24h_pct: 0\n", "regime.euphoria_24h_pct", "greater than 0"),
    ("regime:\n  panic_1h_pct: -1.5\n", "regime", "panic_*_pct must be at or below the matching caution_*_pct"),
    ("regime:\n  panic_volatility_pct: 7\n", "regime", "panic_volatility_pct must be at or above"),
    ("regime:\n  size_multiplier: {PANIC: 0, CAUTION: 0.5, NORMAL: 1.5, EUPHORIA: 0.7, UNKNOWN: 0}\n",
     "regime.size_multiplier.NORMAL", "less than or equal to 1"),
    ("regime:\n  size_multiplier: {PANIC: -0.1, CAUTION: 0.5, NORMAL: 1, EUPHORIA: 0.7, UNKNOWN: 0}\n",
     "regime.size_multiplier.PANIC", "greater than or equal to 0"),
    ("regime:\n  size_multiplier: {PANIC: 0, CAUTION: 0.5}\n", "regime", "missing: NORMAL, EUPHORIA, UNKNOWN"),
    ("regime:\n  size_multiplier: {PANIC: 0, CAUTION: 0.5, NORMAL: 1, EUPHORIA: 0.7}\n", "regime",
     "missing: UNKNOWN"),
    ("regime:\n  size_multiplier: {PANIK: 0, CAUTION: 0.5, NORMAL: 1, EUPHORIA: 0.7, UNKNOWN: 0}\n",
     "regime.size_multiplier.PANIK.[key]", "Input should be 'PANIC'"),
    ("regime:\n  on_missing: CALM\n", "regime.on_missing", "Input should be"),
    # protection (a single cooldown number applies to every tier, so the error names a tier)
    ("protection:\n  cooldown_after_stop_h: -1\n", "protection.cooldown_after_stop_h.large",
     "greater than or equal to 0"),
    ("protection:\n  cooldown_after_stop_h: {meme: 721}\n", "protection.cooldown_after_stop_h.meme",
     "less than or equal to 720"),
    ("protection:\n  ban_after_consecutive_stops: 0\n", "protection.ban_after_consecutive_stops",
     "greater than or equal to 1"),
    ("protection:\n  ban_h: -0.5\n", "protection.ban_h", "greater than or equal to 0"),
    ("protection:\n  ban_h: 721\n", "protection.ban_h", "less than or equal to 720"),
    # sizing
    ("sizing:\n  quotes: {USDT: {amount: 0, balance: 100}}\n", "sizing.quotes.USDT.amount", "greater than 0"),
    ("sizing:\n  quotes: {USDT: {amount: 1, balance: 0}}\n", "sizing.quotes.USDT.balance", "greater than 0"),
    ("sizing:\n  quote_amount: 50\n", "sizing", "quote_amount and balance are now per quote currency"),
    ("sizing:\n  max_balance_share: 0\n", "sizing.max_balance_share", "greater than 0"),
    ("sizing:\n  max_balance_share: 1.01\n", "sizing.max_balance_share", "less than or equal to 1"),
    ("sizing:\n  max_open_total: 0\n", "sizing.max_open_total", "greater than or equal to 1"),
    ("sizing:\n  max_open_per_strategy: 0\n", "sizing.max_open_per_strategy", "greater than or equal to 1"),
    ("sizing:\n  max_open_per_symbol: 0\n", "sizing.max_open_per_symbol", "greater than or equal to 1"),
    ("sizing:\n  expiry_candles: 0\n", "sizing.expiry_candles", "greater than or equal to 1"),
    ("sizing:\n  quotes: {USDT: {amount: 60, balance: 100}}\n  max_balance_share: 0.5\n", "sizing",
     "quotes.USDT.amount (60) is above what the exposure cap allows (balance x max_balance_share = 50)"),
    ("sizing:\n  quotes: {USDT: {amount: 50, balance: 10000}, BTC: {amount: 0.06, balance: 0.1}}\n", "sizing",
     "quotes.BTC.amount (0.06) is above what the exposure cap allows (balance x max_balance_share = 0.05)"),
    # health
    ("health:\n  controller: {interval_s: 0}\n", "health.controller.interval_s", "greater than 0"),
    ("health:\n  hummingbot: {interval_s: 30, progress_s: 0}\n", "health.hummingbot.progress_s", "greater than 0"),
    ("health:\n  grace_s: -1\n", "health.grace_s", "greater than or equal to 0"),
    ("health:\n  down_after: 0.5\n", "health.down_after", "greater than or equal to 1"),
    ("health:\n  stale_candles: 0.9\n", "health.stale_candles", "greater than or equal to 1"),
    ("health:\n  min_calls: 0\n", "health.min_calls", "greater than or equal to 1"),
    ("health:\n  min_success_rate: 1.2\n", "health.min_success_rate", "less than or equal to 1"),
    ("health:\n  min_success_rate: -0.1\n", "health.min_success_rate", "greater than or equal to 0"),
    # alerts, metrics
    ("alerts:\n  name: ''\n", "alerts.name", "at least 1 character"),
    ("alerts:\n  max_per_component: 0\n", "alerts.max_per_component", "greater than or equal to 1"),
    ("alerts:\n  max_per_component: 101\n", "alerts.max_per_component", "less than or equal to 100"),
    ("alerts:\n  window_s: 59\n", "alerts.window_s", "greater than or equal to 60"),
    ("alerts:\n  timeout_s: 0\n", "alerts.timeout_s", "greater than 0"),
    ("alerts:\n  timeout_s: 31\n", "alerts.timeout_s", "less than or equal to 30"),
    ("metrics:\n  port: 65536\n", "metrics.port", "less than or equal to 65535"),
    ("metrics:\n  port: -1\n", "metrics.port", "greater than or equal to 0"),
    # supervisor
    ("supervisor:\n  failures_before_restart: 0\n", "supervisor.failures_before_restart",
     "greater than or equal to 1"),
    ("supervisor:\n  failures_before_restart: 1001\n", "supervisor.failures_before_restart",
     "less than or equal to 1000"),
    ("supervisor:\n  backoff_base_s: -1\n", "supervisor.backoff_base_s", "greater than or equal to 0"),
    ("supervisor:\n  backoff_base_s: 60\n  backoff_cap_s: 30\n", "supervisor",
     "backoff_cap_s must be >= backoff_base_s"),
    ("supervisor:\n  max_restarts: 0\n", "supervisor.max_restarts", "greater than or equal to 1"),
]

# Values exactly at a bound: accepted (a `le` turned into `lt` fails here).
AT_THE_EDGE = [
    "database:\n  connect_timeout_s: 1\n", "database:\n  connect_timeout_s: 300\n",
    "flags:\n  refresh_s: 1\n", "flags:\n  refresh_s: 3600\n",
    "loop:\n  strategy_timeout_s: 300\n  lookback_candles: 60\n", "loop:\n  lookback_candles: 5000\n",
    "regime:\n  size_multiplier: {PANIC: 0, CAUTION: 0, NORMAL: 1, EUPHORIA: 1, UNKNOWN: 1}\n",
    "regime:\n  panic_peak_decline_24h_pct: 100\n  panic_peak_decline_48h_pct: 100\n",
    "regime:\n  markets: {kraken: XBT-USD}\n  candidates: [BTC-PERP]\n",
    "regime:\n  panic_1h_pct: -2\n  caution_1h_pct: -2\n  panic_volatility_pct: 8\n",
    "regime:\n  panic_24h_pct: -100\n  caution_24h_pct: -100\n",
    "protection:\n  cooldown_after_stop_h: 0\n  ban_h: 0\n  ban_after_consecutive_stops: 1\n",
    "protection:\n  cooldown_after_stop_h: {large: 720, meme: 720}\n  ban_h: 720\n  ban_after_consecutive_stops: 100\n",
    "sizing:\n  max_balance_share: 1\n  quotes: {USDT: {amount: 100, balance: 100}}\n",
    "sizing:\n  quotes: {USDT: {amount: 50, balance: 100}, BTC: {amount: 0.05, balance: 0.1}}\n"
    "  max_balance_share: 0.5\n",
    "sizing:\n  max_open_total: 1\n  max_open_per_strategy: 1\n  max_open_per_symbol: 1\n  expiry_candles: 1\n",
    "health:\n  grace_s: 0\n  down_after: 1\n  stale_candles: 1\n  min_calls: 1\n  min_success_rate: 1\n",
    "health:\n  min_success_rate: 0\n",
    "alerts:\n  max_per_component: 100\n  window_s: 60\n  timeout_s: 30\n",
    "alerts:\n  max_per_component: 1\n",
    "metrics:\n  port: 0\n", "metrics:\n  port: 65535\n",
    "supervisor:\n  failures_before_restart: 1000\n  backoff_base_s: 0\n  backoff_cap_s: 0\n  max_restarts: 1\n",
    "supervisor:\n  failures_before_restart: 1\n  backoff_base_s: 30\n  backoff_cap_s: 30\n",
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "controller.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "key", "says"), INVALID, ids=[f"{k}:{t.split(':', 2)[-1].strip()}"
                                                                  for t, k, _ in INVALID])
def test_a_value_out_of_bounds_is_refused_naming_file_and_key(tmp_path: Path, text: str, key: str,
                                                              says: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert f"{path}: {key}: " in message, message
    assert says in message, message


@pytest.mark.parametrize("text", AT_THE_EDGE)
def test_a_value_at_the_edge_of_its_bounds_is_accepted(tmp_path: Path, text: str) -> None:
    load_config(write(tmp_path, text))


def test_the_edge_values_are_the_values_loaded(tmp_path: Path) -> None:
    text = ("sizing:\n  max_balance_share: 1\n  quotes: {USDT: {amount: 100, balance: 100}}\n"
            "regime:\n  size_multiplier: {PANIC: 0, CAUTION: 0, NORMAL: 1, EUPHORIA: 1, UNKNOWN: 1}\n"
            "protection:\n  cooldown_after_stop_h: 0\n")
    config = load_config(write(tmp_path, text))
    assert config.sizing.max_balance_share == 1 and config.sizing.quotes["USDT"].amount == 100
    assert set(config.sizing.quotes) == {"USDT"}
    assert [config.regime.size_multiplier[r] for r in ("PANIC", "CAUTION", "NORMAL", "EUPHORIA", "UNKNOWN")] == [
        0, 0, 1, 1, 1]
    assert config.protection.cooldown_after_stop_h == {"large": 0, "mid": 0, "small": 0, "meme": 0}
