"""Percentile bootstrap over images for pooled ratios (recall = sum TP / sum ground truth)."""

from __future__ import annotations

import numpy as np


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                    seed: int = 0) -> tuple[float | None, float | None]:
    """(lo, hi) percentile interval of ``sum(num) / sum(den)`` when the images are resampled with replacement.

    ``num``/``den`` hold one value per image (e.g. TP and ground-truth count). Resamples whose denominator is 0
    are left out; None, None when every image has a zero denominator. Deterministic for a ``seed``.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    if num.shape != den.shape or num.ndim != 1:
        raise ValueError(f"num and den must be 1-D of one length, got {num.shape} and {den.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if den.sum() == 0:
        return None, None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))
    d = den[idx].sum(1)
    ok = d > 0
    ratios = num[idx].sum(1)[ok] / d[ok]
    a = (1 - level) / 2 * 100
    lo, hi = np.percentile(ratios, [a, 100 - a])
    return float(lo), float(hi)
