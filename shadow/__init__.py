"""Shadow testing: parameter variations replayed on the candles real trades saw, and compared with them (flag
shadow.enabled)."""
