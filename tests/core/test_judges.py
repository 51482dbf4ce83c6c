"""The learned benchmark's judges (benchmarks/judges.py) on real digits: no ComfyUI.

Bounds measured on the 2-core dev machine (classifier trained in ~3 s): held-out accuracy 0.97,
Frechet distance held-out vs itself ~0, vs the train split 0.34, vs uniform noise 24.0; nearest-neighbour
distance train -> held-out 1.19, noise 3.58.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import judges  # noqa: E402


@pytest.fixture(scope="module")
def digits() -> judges.Digits:
    return judges.load_digits()


def test_split_is_fixed_and_disjoint(digits):
    assert digits.train_x.shape == (1297, 8, 8) and digits.test_x.shape == (500, 8, 8)
    assert digits.train_x.min() == 0.0 and digits.train_x.max() == 1.0
    train = {x.tobytes() for x in digits.train_x}
    assert sum(x.tobytes() in train for x in digits.test_x) < 5  # sklearn's set has a few duplicate images
    assert set(np.unique(digits.test_y)) == set(range(10))


def test_classifier_generalises(digits):
    assert judges.prompt_accuracy(digits.test_x, digits.test_y) >= 0.94
    shares = judges.class_shares(digits.test_x)
    assert (
        shares.sum() == pytest.approx(1.0) and np.abs(shares - np.bincount(digits.test_y) / 500).max() < 0.02
    )


def test_classifier_is_deterministic(digits):
    first = judges.features(digits.test_x[:20])
    judges.classifier.cache_clear()
    assert np.array_equal(first, judges.features(digits.test_x[:20]))


def test_distances_rank_real_above_noise(digits):
    noise = np.random.RandomState(0).rand(500, 8, 8)
    assert abs(judges.frechet_distance(digits.test_x)) < 1e-6
    real = judges.frechet_distance(digits.train_x)
    assert real < 1.0 < 10 * real < judges.frechet_distance(noise)
    assert judges.nearest_neighbour_distance(digits.train_x) * 2 < judges.nearest_neighbour_distance(noise)
    # A quality loss the classifier-based distance must see: the same digits blurred with noise.
    noisy = np.clip(digits.train_x + 0.3 * np.random.RandomState(1).randn(*digits.train_x.shape), 0, 1)
    assert judges.frechet_distance(noisy) > 3 * real


def test_image_round_trip_and_out_of_range(digits):
    image = judges.digit_to_image(digits.test_x[:4])
    assert image.shape == (4, 64, 64, 3)
    assert np.array_equal(judges.image_to_digit(image), digits.test_x[:4])
    assert judges.out_of_range_share(np.array([-0.2, 0.0, 0.5, 1.04, 1.2])) == pytest.approx(0.4)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"digits: shape \(3, 64\)"):
        judges.predict(np.zeros((3, 64)))
    with pytest.raises(ValueError, match="image: shape"):
        judges.image_to_digit(np.zeros((1, 60, 64, 3)))
    with pytest.raises(ValueError, match="labels: 2 for 3"):
        judges.prompt_accuracy(np.zeros((3, 8, 8)), [1, 2])
