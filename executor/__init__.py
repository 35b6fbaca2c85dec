"""The signal executor's parts, mounted beside Hummingbot's scripts as `bridge/` is.

`hummingbot_scripts/signal_executor.py` is the thin StrategyV2Base script over them. Imports run one way:
the script, then `intake`/`health`, then `positions`, then `market`, `reporting`, `worker`, `outbox`,
`models`, `pricing`, `config`, then `bridge`. Only what Hummingbot's official image ships is imported.
"""
