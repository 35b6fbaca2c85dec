"""The control plane: market data -> indicators -> strategies -> regime guard -> signals in Postgres."""
