"""The dissimilarity index (`ml.novelty`): FreqAI's formula, computed independently; a combination the training
set never held; a missing input; and how often a point of the training distribution is called novel."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist

from ml.novelty import Novelty

RNG = np.random.default_rng(0)


def _training(n: int = 1500, features: int = 6) -> np.ndarray:
    return RNG.normal(size=(n, features)) * np.arange(1, features + 1) + 10.0


def test_the_index_is_the_nearest_distances_over_the_mean_pairwise_distance_on_standardised_features() -> None:
    train = _training(800)
    points = _training(50)
    for k in (1, 5):
        novelty = Novelty.of(train, k=k, size=5000, seed=0)
        z_train = (train - train.mean(axis=0)) / train.std(axis=0)
        z_points = (points - train.mean(axis=0)) / train.std(axis=0)
        nearest = np.sort(cdist(z_points, z_train), axis=1)[:, :k].mean(axis=1)
        np.testing.assert_allclose(novelty.index(points), nearest / pdist(z_train).mean(), rtol=1e-9)


def test_a_combination_never_seen_together_is_novel_though_every_feature_is_in_range() -> None:
    x = RNG.normal(size=3000)
    train = np.column_stack([x, x + RNG.normal(scale=0.05, size=3000)])  # two features that move together
    novelty = Novelty.of(train, k=5, size=2000, seed=0)
    together, apart = np.array([[1.5, 1.5]]), np.array([[1.5, -1.5]])  # each value well inside its range
    assert novelty.index(together)[0] < 0.1
    assert novelty.index(apart)[0] > 1.0


def test_a_missing_input_the_training_set_always_had_is_infinitely_novel_one_it_lacked_is_not() -> None:
    train = _training(600, 3)
    train[::4, 2] = np.nan  # sometimes missing in training: the trees learnt a branch for it
    novelty = Novelty.of(train, k=5, size=2000, seed=0)
    point = train[1:2].copy()
    assert np.isfinite(novelty.index(point)[0])
    assert np.isfinite(novelty.index(np.array([[point[0, 0], point[0, 1], np.nan]]))[0])
    assert novelty.index(np.array([[np.nan, point[0, 1], point[0, 2]]]))[0] == np.inf


def test_points_of_the_training_distribution_are_rarely_called_novel_and_a_shift_mostly_is() -> None:
    novelty = Novelty.of(_training(5000, 20), k=5, size=2000, seed=0)
    same = novelty.index(_training(2000, 20))
    assert (same > 1.0).mean() < 0.01  # median 0.59, largest 0.88 here: 0 of 2,000
    shifted = _training(2000, 20)
    shifted[:, :5] += 4 * np.arange(1, 6)  # four standard deviations on a quarter of the features
    assert (novelty.index(shifted) > 1.0).mean() > 0.9  # 98 % here (at three deviations: 55 %)


def test_the_reference_is_a_seeded_sample_of_at_most_its_size() -> None:
    train = _training(3000)
    a, b = Novelty.of(train, k=5, size=500, seed=1), Novelty.of(train, k=5, size=500, seed=1)
    assert a.reference.shape == (6, 500)
    np.testing.assert_array_equal(a.reference, b.reference)
