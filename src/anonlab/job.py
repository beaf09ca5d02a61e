"""A job's scalar options, read and checked once from the composed configuration (the hashes that name its rows and
shards are computed from them in :mod:`anonlab.engine`). A bad value is a :class:`~anonlab.build.BenchError`
naming the key (exit 2, no work done).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from anonlab._checks import usable_device
from anonlab.build import BenchError
from anonlab.io.images import DEFAULT_MAX_PIXELS
from anonlab.types import PRECISIONS


def int_option(cfg: DictConfig, key: str, default: int, minimum: int) -> int:
    """``cfg.<key>`` (dotted) as an int >= ``minimum`` (``default`` when absent); :class:`BenchError` otherwise."""
    v = OmegaConf.select(cfg, key, default=default)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise BenchError(f"{key} must be an integer >= {minimum}, got {v!r}")
    return v


def number_option(cfg: DictConfig, key: str, expected: str, ok: Callable[[float], bool],
                  allow_null: bool = False) -> float | None:
    """``cfg.<key>`` as a float, checked by ``ok``; :class:`BenchError` naming the key and ``expected`` otherwise."""
    v = OmegaConf.select(cfg, key, default=None)
    if v is None and allow_null:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(float(v)):
        raise BenchError(f"{key} must be a number {expected}, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class JobOptions:
    """The scalar options of ``conf/bench.yaml`` a job runs with (see that file for each key's meaning)."""

    device: torch.device
    iou: float
    face_px: float | None
    seed: int
    limit: int | None
    batch_size: int
    workers: int
    pad_to: int
    shard_images: int
    split_index: int
    split_count: int
    decode: str
    precision: str
    max_pixels: int

    @property
    def decode_device(self) -> torch.device | None:
        """Where JPEGs are decoded: the job's CUDA device with ``loader.decode=device``, else None (the CPU)."""
        return self.device if self.decode == "device" else None


def read_options(cfg: DictConfig) -> JobOptions:
    """Every scalar option of ``cfg``, type- and range-checked before anything is built."""
    try:
        device = usable_device(cfg.device)
    except ValueError as e:
        raise BenchError(str(e)) from None
    decode = OmegaConf.select(cfg, "loader.decode", default="cpu")
    if decode not in ("cpu", "device"):
        raise BenchError(f"loader.decode must be cpu or device, got {decode!r}")
    if decode == "device" and device.type != "cuda":
        raise BenchError(f"loader.decode=device decodes on the CUDA device, but device={cfg.device}; "
                         "use loader.decode=cpu or device=cuda")
    precision = OmegaConf.select(cfg, "precision", default="fp32")
    if precision not in PRECISIONS:
        raise BenchError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    progress = OmegaConf.select(cfg, "progress", default=True)
    if not isinstance(progress, bool):  # found by the breaker: progress=maybe was taken as true
        raise BenchError(f"progress must be true or false, got {progress!r}")
    return JobOptions(
        device=device,
        iou=number_option(cfg, "match_iou", "in (0, 1]", lambda v: 0.0 < v <= 1.0),
        face_px=number_option(cfg, "scene.face_px", "> 0 pixels or null", lambda v: v > 0, allow_null=True),
        seed=int_option(cfg, "seed", 0, 0),
        limit=None if OmegaConf.select(cfg, "limit", default=None) is None else int_option(cfg, "limit", 1, 1),
        batch_size=int_option(cfg, "batch_size", 1, 1),
        workers=int_option(cfg, "loader.workers", 1, 0),
        pad_to=int_option(cfg, "loader.pad_to", 0, 0),
        shard_images=int_option(cfg, "store.shard_images", 64, 1),
        split_index=int_option(cfg, "split.index", 0, 0),
        split_count=int_option(cfg, "split.count", 1, 1),
        decode=decode,
        precision=precision,
        max_pixels=int_option(cfg, "loader.max_pixels", DEFAULT_MAX_PIXELS, 1),
    )
