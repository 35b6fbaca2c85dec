"""Shadow testing: parameter variations replayed on the same candles and compared with real trades (phase 4)."""
