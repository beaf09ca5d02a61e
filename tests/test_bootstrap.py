"""Bootstrap intervals: degenerate, reproducible, covering, narrowing with more images."""

from __future__ import annotations

import numpy as np
import pytest

from anonlab.metrics.bootstrap import bootstrap_ratio


def test_all_found_gives_a_point_interval():
    assert bootstrap_ratio(np.array([2, 1, 3]), np.array([2, 1, 3])) == (1.0, 1.0)


def test_interval_contains_the_estimate_is_seeded_and_narrows():
    rng = np.random.default_rng(1)
    den = rng.integers(1, 5, 20)
    num = rng.binomial(den, 0.6)
    lo, hi = bootstrap_ratio(num, den, seed=3)
    assert lo <= num.sum() / den.sum() <= hi
    assert (lo, hi) == bootstrap_ratio(num, den, seed=3)
    lo4, hi4 = bootstrap_ratio(np.tile(num, 16), np.tile(den, 16), seed=3)
    assert hi4 - lo4 < (hi - lo) / 2  # 16x the images: about a quarter of the width


def test_no_ground_truth_and_bad_input():
    assert bootstrap_ratio(np.zeros(3), np.zeros(3)) == (None, None)
    with pytest.raises(ValueError, match="one length"):
        bootstrap_ratio(np.zeros(3), np.zeros(4))
