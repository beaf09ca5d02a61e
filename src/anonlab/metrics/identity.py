"""Identity metrics: verification (accuracy at an operating threshold, ROC AUC, TAR at fixed FAR), closed-set
identification (rank-1 / rank-5) and their 95 % bootstrap intervals **over identities** (numpy only).

Conventions. A pair or a probe is scored by a *distance* (smaller = more alike, the recognizer's metric). A face the
attacker could not embed (not found, too small) has distance ``+inf``: it is never accepted as a match and never
identified, so it counts against the attacker, and the evaluation reports how many there were beside the metrics.
``same`` (bool) says which pairs are genuine (same person); the others are impostors.

- accuracy: ``mean((d < threshold) == same)``, the recognizer's published threshold (dlib: 0.6 euclidean).
- ROC AUC: the probability that a genuine pair is closer than an impostor pair, ties counting one half
  (Mann-Whitney U / (n_gen * n_imp); Hanley & McNeil 1982), exact, from one sort.
- TAR@FAR f: accept ``d < t`` with ``t`` the ``(floor(f * n_imp) + 1)``-th smallest impostor distance (the loosest
  threshold whose false accept rate is <= f); NaN when ``n_imp < 1 / f`` (too few impostors to measure that FAR: a
  FAR of 1e-3 needs >= 1,000 impostor pairs), see :func:`far_note`.
- rank-k (closed set): for each probe, every gallery identity's distance is its *nearest* gallery image (images
  the caller excludes, e.g. the probe itself, left out); rank = 1 + the number of other identities at a distance
  <= the true one's (ties count against the attacker); rank-k = ``mean(rank <= k)``.
- intervals: percentile bootstrap (1000 resamples by default) that resamples **identities** with replacement and
  weights each pair / probe by how often its identity was drawn (a cluster bootstrap: the images of one person are
  not independent). A pair belongs to the identity of its probe side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the false accept rates TAR is reported at
FARS: tuple[float, ...] = (1e-1, 1e-2, 1e-3)


def _as_arrays(dist, same) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(dist, dtype=np.float64)
    s = np.asarray(same, dtype=bool)
    if d.ndim != 1 or d.shape != s.shape:
        raise ValueError(f"dist and same must be 1-D of one length, got {d.shape} and {s.shape}")
    if np.isnan(d).any():
        raise ValueError("dist has NaN; a face that was not embedded has distance +inf")
    return d, s


def verification_accuracy(dist, same, threshold: float, weights=None) -> float:
    """Fraction of pairs decided right at ``threshold`` (``d < threshold`` = same person); NaN for no pairs."""
    d, s = _as_arrays(dist, same)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.sum() == 0:
        return math.nan
    return float(((d < threshold) == s).astype(np.float64) @ w / w.sum())


class RocAuc:
    """Exact ROC AUC of distances, sorted once, re-weighted cheaply (for the bootstrap): ``RocAuc(dist, same)(w)``
    with per-pair weights ``w`` (default 1). Ties (equal distances, e.g. two ``inf``) count one half."""

    def __init__(self, dist, same) -> None:
        d, s = _as_arrays(dist, same)
        self.same = s
        order = np.argsort(d, kind="stable")
        self.order = order
        sorted_d = d[order]
        # start index of each block of equal distances in sorted order
        self.starts = np.flatnonzero(np.r_[True, sorted_d[1:] != sorted_d[:-1]]) if len(d) else np.empty(0, int)

    def __call__(self, weights=None) -> float:
        n = len(self.same)
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        gen_w = np.where(self.same, w, 0.0)[self.order]
        imp_w = np.where(self.same, 0.0, w)[self.order]
        wg, wi = gen_w.sum(), imp_w.sum()
        if wg == 0 or wi == 0:
            return math.nan
        g_block = np.add.reduceat(gen_w, self.starts)
        i_block = np.add.reduceat(imp_w, self.starts)
        # impostors strictly farther than each block of genuine pairs, plus half the tied ones
        imp_farther = wi - np.cumsum(i_block)
        return float((g_block * (imp_farther + 0.5 * i_block)).sum() / (wg * wi))


def roc_auc(dist, same) -> float:
    """ROC AUC of genuine-vs-impostor distances (see the module docstring); NaN without both kinds."""
    return RocAuc(dist, same)()


def tar_at_far(dist, same, far: float) -> float:
    """True accept rate at false accept rate ``far`` (module docstring); NaN when there are fewer than
    ``1 / far`` impostor pairs or no genuine pair."""
    d, s = _as_arrays(dist, same)
    imp = np.sort(d[~s])
    gen = d[s]
    if len(gen) == 0 or len(imp) < round(1 / far):
        return math.nan
    k = int(math.floor(far * len(imp) + 1e-9))
    t = imp[k] if k < len(imp) else math.inf
    return float((gen < t).mean())


def far_note(n_impostor: int) -> str:
    """One line saying which FARs the impostor count supports ("" when all of :data:`FARS` are measured)."""
    missing = [f for f in FARS if n_impostor < round(1 / f)]
    if not missing:
        return ""
    return (f"TAR@FAR {', '.join(f'{f:g}' for f in missing)} not measured: {n_impostor} impostor pairs "
            f"(needs >= {round(1 / min(missing))})")


def identification_ranks(dist, probe_labels, gallery_labels, exclude=None) -> np.ndarray:
    """Closed-set rank of the true identity for each probe: ``dist (Q, G)`` probe x gallery distances,
    ``probe_labels (Q,)`` and ``gallery_labels (G,)`` int identities, ``exclude (Q, G)`` bool (True: that gallery
    image is not used for that probe, e.g. the probe itself). Returns float ``(Q,)`` ranks >= 1, ``inf`` where the
    true identity has no finite distance (probe not embedded, or no usable gallery image of that person).
    Ties count against the attacker (see the module docstring)."""
    d = np.asarray(dist, dtype=np.float64)
    pl, gl = np.asarray(probe_labels), np.asarray(gallery_labels)
    if d.ndim != 2 or d.shape != (len(pl), len(gl)):
        raise ValueError(f"dist must be (Q, G) = ({len(pl)}, {len(gl)}), got {d.shape}")
    if exclude is not None:
        d = np.where(np.asarray(exclude, dtype=bool), np.inf, d)
    ids = np.unique(gl)
    # (Q, I): each identity's nearest gallery image
    per_id = np.stack([d[:, gl == i].min(axis=1) for i in ids], axis=1) if len(ids) else np.full((len(pl), 0), np.inf)
    col = np.searchsorted(ids, pl)
    known = (col < len(ids)) & (ids[np.minimum(col, len(ids) - 1)] == pl) if len(ids) else np.zeros(len(pl), bool)
    true_d = np.where(known, per_id[np.arange(len(pl)), np.minimum(col, max(len(ids) - 1, 0))], np.inf) \
        if len(ids) else np.full(len(pl), np.inf)
    others = (per_id <= true_d[:, None]).sum(axis=1) - known.astype(int)
    return np.where(np.isfinite(true_d), 1.0 + others, np.inf)


def rank_k(ranks, k: int, weights=None) -> float:
    """Fraction of probes whose true identity is among the ``k`` nearest (NaN for no probes)."""
    r = np.asarray(ranks, dtype=np.float64)
    w = np.ones_like(r) if weights is None else np.asarray(weights, dtype=np.float64)
    return float((r <= k).astype(np.float64) @ w / w.sum()) if w.sum() else math.nan


def identity_weights(groups: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, N)`` weights: each item's identity's draw count in ``n_boot`` resamples of the identities
    (with replacement, as many draws as distinct identities). Deterministic for ``seed``."""
    groups = np.asarray(groups)
    ids, inv = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    counts = np.zeros((n_boot, len(ids)))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts[:, inv]


def percentile_interval(values, level: float = 0.95) -> tuple[float, float]:
    """``(lo, hi)`` percentile interval of bootstrap ``values`` (NaNs dropped; NaN, NaN when none are left)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return math.nan, math.nan
    a = (1 - level) / 2 * 100
    lo, hi = np.percentile(v, [a, 100 - a])
    return float(lo), float(hi)


@dataclass
class VerificationResult:
    """Verification metrics of one pair set with their intervals (NaN where not measurable)."""

    n_pairs: int
    n_genuine: int
    n_impostor: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    auc: float
    auc_ci: tuple[float, float]
    tar: dict[float, float]
    note: str


def verify(dist, same, threshold: float | None, pair_groups, n_boot: int = 1000, seed: int = 0,
           level: float = 0.95) -> VerificationResult:
    """Every verification metric of pairs ``(dist, same)``; ``pair_groups`` the identity each pair belongs to
    (its probe side) for the bootstrap; ``threshold`` None (no published operating point): accuracy is NaN."""
    d, s = _as_arrays(dist, same)
    auc = RocAuc(d, s)
    acc = verification_accuracy(d, s, threshold) if threshold is not None else math.nan
    acc_b, auc_b = [], []
    if n_boot > 0 and len(d):
        for w in identity_weights(pair_groups, n_boot, seed):
            auc_b.append(auc(w))
            if threshold is not None:
                acc_b.append(verification_accuracy(d, s, threshold, w))
    n_imp = int((~s).sum())
    return VerificationResult(
        n_pairs=len(d), n_genuine=int(s.sum()), n_impostor=n_imp, accuracy=acc,
        accuracy_ci=percentile_interval(acc_b, level) if acc_b else (math.nan, math.nan),
        auc=auc(), auc_ci=percentile_interval(auc_b, level) if auc_b else (math.nan, math.nan),
        tar={f: tar_at_far(d, s, f) for f in FARS}, note=far_note(n_imp))


@dataclass
class IdentificationResult:
    """Closed-set identification of ``n_probes`` probes with intervals."""

    n_probes: int
    rank1: float
    rank1_ci: tuple[float, float]
    rank5: float
    rank5_ci: tuple[float, float]


def identify(ranks, probe_labels, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> IdentificationResult:
    """rank-1 / rank-5 of per-probe ``ranks`` (:func:`identification_ranks`), intervals over identities."""
    r = np.asarray(ranks, dtype=np.float64)
    r1 = [rank_k(r, 1, w) for w in identity_weights(probe_labels, n_boot, seed)] if n_boot and len(r) else []
    r5 = [rank_k(r, 5, w) for w in identity_weights(probe_labels, n_boot, seed)] if n_boot and len(r) else []
    nan2 = (math.nan, math.nan)
    return IdentificationResult(len(r), rank_k(r, 1) if len(r) else math.nan,
                                percentile_interval(r1, level) if r1 else nan2,
                                rank_k(r, 5) if len(r) else math.nan, percentile_interval(r5, level) if r5 else nan2)
