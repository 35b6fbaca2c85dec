"""The booster's arms: a stable hash-chosen control share, no effect when stale or out of distribution, a veto
only when asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from ml.scoring import arms, control_draw, signal_key

T0 = datetime(2024, 1, 1, tzinfo=UTC)
KEYS = [signal_key("dca", "binance", f"S{i}-USDT", T0 + timedelta(minutes=15 * i)) for i in range(4000)]


def _arms(p: float = 0.8, d: float = 0.0, **overrides: object) -> list[tuple[str, float, bool]]:
    options = {"stale": False, "control_share": 0.2, "ood_max": 0.25, "threshold": 0.6, "veto": False,
               "enabled": True, **overrides}
    return arms(np.full(len(KEYS), p), np.full(len(KEYS), d), KEYS, **options)  # type: ignore[arg-type]


def test_about_the_configured_share_is_control_and_a_signal_always_lands_in_the_same_arm() -> None:
    first = _arms()
    share = sum(a == "control" for a, _, _ in first) / len(first)
    assert 0.17 < share < 0.23
    assert _arms() == first
    assert control_draw(KEYS[0]) == control_draw(KEYS[0]) != control_draw(KEYS[1])
    assert all(a == "control" for a, _, _ in _arms(control_share=1.0))
    assert all(a == "boosted" for a, _, _ in _arms(control_share=0.0))


def test_only_the_boosted_arm_changes_size() -> None:
    for arm, mult, veto in _arms(p=0.85):
        assert not veto
        assert mult == (1.5 if arm == "boosted" else 1.0)


def test_stale_or_out_of_distribution_scores_have_no_effect() -> None:
    assert {(a, m, v) for a, m, v in _arms(p=0.95, stale=True)} == {("stale", 1.0, False)}
    assert {(a, m, v) for a, m, v in _arms(p=0.95, d=0.5)} == {("ood", 1.0, False)}
    assert {(a, m, v) for a, m, v in _arms(p=0.1, d=0.5, veto=True)} == {("ood", 1.0, False)}


def test_low_confidence_vetoes_only_with_the_veto_on() -> None:
    assert not any(v for _, _, v in _arms(p=0.3))
    vetoed = [(a, v) for a, _, v in _arms(p=0.3, veto=True)]
    assert all(v == (a == "boosted") for a, v in vetoed)
    assert not any(v for _, _, v in _arms(p=0.7, veto=True))


def test_nothing_acts_with_ml_off() -> None:
    assert {(a, m, v) for a, m, v in _arms(p=0.95, enabled=False)} == {("off", 1.0, False)}
