"""Identity metrics on hand-checkable cases; AUC cross-checked against scipy's Mann-Whitney U (an independent,
well-kept implementation); the bootstrap resamples identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from anonlab.metrics.identity import (
    far_note,
    identification_ranks,
    identify,
    identity_weights,
    rank_k,
    roc_auc,
    tar_at_far,
    verification_accuracy,
    verify,
)


def test_accuracy_and_auc_by_hand() -> None:
    dist = [0.1, 0.4, 0.3, 0.5]
    same = [True, True, False, False]
    # at 0.35: 0.1 accepted (right), 0.4 rejected (wrong), 0.3 accepted (wrong), 0.5 rejected (right)
    assert verification_accuracy(dist, same, 0.35) == 0.5
    # genuine closer than impostor in 3 of the 4 (genuine, impostor) combinations: 0.4 > 0.3 is the one
    assert roc_auc(dist, same) == 0.75
    assert roc_auc([0.3, 0.3], [True, False]) == 0.5  # a tie counts one half
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))  # no impostor


def test_not_embedded_inf_is_never_a_match() -> None:
    inf = math.inf
    # the genuine pair's probe was not embedded: rejected (wrong); the impostor's too: rejected (right)
    assert verification_accuracy([inf, inf], [True, False], 0.6) == 0.5
    assert roc_auc([inf, inf], [True, False]) == 0.5
    assert roc_auc([inf, 0.2], [True, False]) == 0.0


def test_tar_at_far_by_hand() -> None:
    imp = np.arange(1.0, 11.0)  # 10 impostor distances 1 ... 10
    gen = np.array([0.5, 1.5, 2.5])
    d = np.r_[gen, imp]
    s = np.r_[np.ones(3, bool), np.zeros(10, bool)]
    # FAR 0.1 of 10 impostors: one may be accepted -> accept d < 2 -> genuine 0.5 and 1.5
    assert tar_at_far(d, s, 0.1) == pytest.approx(2 / 3)
    assert math.isnan(tar_at_far(d, s, 0.01))  # 10 impostors cannot measure a FAR of 1 %
    assert "0.01, 0.001 not measured: 10 impostor pairs (needs >= 1000)" in far_note(10)
    assert far_note(1000) == ""


def test_identification_ranks_by_hand() -> None:
    # gallery: identities 0, 0, 1, 2; probes of identities 0, 1, 2 and 3 (3 is unknown to the gallery)
    gl = [0, 0, 1, 2]
    d = np.array([
        [0.9, 0.2, 0.3, 0.8],  # id 0: nearest image 0.2 -> rank 1
        [0.1, 0.5, 0.4, 0.2],  # id 1 at 0.4, ids 0 (0.1) and 2 (0.2) nearer -> rank 3
        [0.5, 0.6, 0.4, 0.4],  # id 2 at 0.4 tied with id 1 -> ties count against: rank 2
        [0.1, 0.1, 0.1, 0.1],  # id 3 has no gallery image -> inf
    ])
    r = identification_ranks(d, [0, 1, 2, 3], gl)
    assert r.tolist() == [1.0, 3.0, 2.0, math.inf]
    assert rank_k(r, 1) == 0.25 and rank_k(r, 5) == 0.75
    # excluding the nearest image of identity 0 for probe 0 leaves its 0.9: ids 1 (0.3), 2 (0.8) nearer -> rank 3
    ex = np.zeros_like(d, bool)
    ex[0, 1] = True
    assert identification_ranks(d, [0, 1, 2, 3], gl, exclude=ex)[0] == 3.0
    # a probe that was not embedded (all inf) is not identified
    assert identification_ranks(np.full((1, 4), math.inf), [0], gl).tolist() == [math.inf]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=60))
def test_auc_equals_mann_whitney_u(items) -> None:
    d = np.array([float(v) for v, _ in items])  # small integers: many ties
    s = np.array([b for _, b in items])
    if s.all() or not s.any():
        assert math.isnan(roc_auc(d, s))
        return
    u = mannwhitneyu(-d[s], -d[~s]).statistic  # genuine "score" above impostor, ties one half
    assert roc_auc(d, s) == pytest.approx(u / (s.sum() * (~s).sum()))


def test_bootstrap_resamples_identities() -> None:
    w = identity_weights(np.array([7, 7, 7, 9]), n_boot=50, seed=0)
    assert w.shape == (50, 4)
    assert (w[:, 0] == w[:, 2]).all()  # items of one identity move together
    assert (w[:, [0, 3]].sum(1) == 2).all()  # two identities drawn twice in all
    # one identity only: every resample is the data itself, so the interval is the point
    r = verify([0.1, 0.9, 0.2], [True, False, True], 0.5, pair_groups=[1, 1, 1], n_boot=20)
    assert r.accuracy == 1.0 and r.accuracy_ci == (1.0, 1.0) and r.auc_ci == (1.0, 1.0)
    ident = identify([1.0, 2.0, 1.0, math.inf], [0, 0, 1, 1], n_boot=200)
    assert ident.rank1 == 0.5 and ident.rank5 == 0.75
    assert ident.rank1_ci[0] <= 0.5 <= ident.rank1_ci[1] and ident.rank5_ci[0] <= 0.75 <= ident.rank5_ci[1]
