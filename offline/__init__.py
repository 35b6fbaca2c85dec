"""Offline runs on Hummingbot's real classes: the paper harness (Clock + MockPaperExchange) and the phase-1 demo."""
