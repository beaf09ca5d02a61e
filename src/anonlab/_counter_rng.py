"""Counter-based random numbers: a value depends only on (key, position), so CPU and CUDA, any batch size and
any order give the same numbers. Shared by the camera's sensor noise and the noise defense."""

from __future__ import annotations

from torch import Tensor

_M32 = 0xFFFFFFFF


def hash32(x: Tensor) -> Tensor:
    """lowbias32 integer hash on int64 tensors holding uint32 values; identical on CPU and CUDA."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)
