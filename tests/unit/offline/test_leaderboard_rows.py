"""The demo prints the top of the shadow leaderboard, not its ~100 rows: which rows come first."""

from __future__ import annotations

from offline.phases import top_rows


def row(strategy: str, name: str, window_h: int, trades: int, p: float | None) -> tuple:
    # (strategy, name, window_h, trades, win %, avg %, total %, paired n, diff %, q, windows h, q shown), as
    # leaderboard() reads them
    return (strategy, name, window_h, trades, 50.0, 0.1, 1.0, trades, None if p is None else 0.2, p, [window_h],
            None if p is None else f"{p:.3f}")


def test_each_champion_on_its_longest_window_then_the_most_significant_variations() -> None:
    rows = [row("dca", "CHAMPION", 24, 10, None), row("dca", "CHAMPION", 72, 30, None),
            row("channel", "CHAMPION", 72, 12, None)]
    rows += [row("dca", f"V{i}", 72, 30 - i, 0.5 + i / 100) for i in range(20)]
    rows += [row("channel", "TIGHT", 72, 12, 0.001), row("dca", "NOISY", 24, 40, None)]
    shown = top_rows(rows)
    assert len(shown) == 10
    assert shown[:2] == [row("dca", "CHAMPION", 72, 30, None), row("channel", "CHAMPION", 72, 12, None)]
    assert shown[2] == row("channel", "TIGHT", 72, 12, 0.001)  # the clearest difference from its CHAMPION
    assert [r[9] for r in shown[3:]] == sorted(r[9] for r in shown[3:])  # then by q
    assert row("dca", "NOISY", 24, 40, None) not in shown  # no q: after every tested one
    assert top_rows(rows[:3]) == [rows[1], rows[2], rows[0]]  # fewer than the limit: all, champions first
