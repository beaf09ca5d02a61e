"""Counter-based random numbers: a value depends only on (key, position), so CPU and CUDA, any batch size and
any order give the same numbers. The one generator behind the camera's sensor noise, the noise defense and the
patch defense's pose draws.

A *stream* is a 32-bit ``key`` (int64 tensor holding a uint32 value, broadcast against the positions); position
``i`` of stream ``key`` hashes ``i ^ key`` (a bijection of the positions, so a stream never repeats a value).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
#: 2**32 * (golden ratio - 1): Fibonacci hashing's multiplier, spreads consecutive seeds over the 32 bits
GOLDEN32 = 0x9E3779B1


def hash32(x: Tensor) -> Tensor:
    """lowbias32 integer hash (Chris Wellons' hash-prospector) on int64 tensors holding uint32 values; identical
    on CPU and CUDA."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def seed_key(seed: int, device: torch.device | str = "cpu") -> Tensor:
    """0-d int64 stream key of a non-negative integer ``seed``: ``seed * GOLDEN32 mod 2**32`` (seed 0 -> key 0)."""
    return torch.tensor((seed * GOLDEN32) & _M32, dtype=torch.int64, device=device)


def counter_uniform(index: Tensor, key: Tensor) -> Tensor:
    """float64 uniforms in (0, 1), ``(hash32(index ^ key) + 0.5) / 2**32``, at integer positions ``index`` (int64)
    of stream ``key`` (int64, broadcasts against ``index``)."""
    return (hash32(index ^ key).double() + 0.5) / 4294967296.0


def counter_normal(index: Tensor, key: Tensor) -> Tensor:
    """Standard-normal float32 values at integer positions ``index`` of stream ``key`` (int64, broadcasts):
    Box-Muller on the uniforms at positions ``2 index`` and ``2 index + 1``, the same numbers on every device."""
    u1 = counter_uniform(2 * index, key)
    u2 = counter_uniform(2 * index + 1, key)
    return (torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).float()
