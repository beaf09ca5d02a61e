"""Linear image filters shared by the camera (optics), the defenses (blurs) and the attacks (EOT blur).

Pure batched functions on float ``(B, C, H, W)`` tensors (any float dtype, any device), same size out, built from
differentiable torch ops; plus :class:`GaussianBlur2d`, a module twin that only calls :func:`gaussian_blur2d`
(kornia's layout: ``kornia/filters/gaussian.py``). Nothing modifies its input.

Borders (``border``): ``"reflect"`` is OpenCV's default ``BORDER_REFLECT_101`` (``…2 1 | 0 1 2 … n-1 | n-2 …``,
torch's ``F.pad(mode="reflect")``); ``"replicate"`` is ``BORDER_REPLICATE`` (``…0 0 | 0 1 … n-1 | n-1 …``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anonlab._checks import check_choice, check_positive

#: border modes: name -> torch ``F.pad`` mode
BORDERS = {"reflect": "reflect", "replicate": "replicate"}
#: how :func:`separable_filter` applies each axis: ``auto`` (convolution, or a band-matrix product for long
#: kernels) or ``shift`` (a sum of shifted copies: for short kernels ~3x faster on CPU than a depthwise
#: convolution, forward and backward, measured for the EOT blur of the patch trainer)
METHODS = ("auto", "shift")
#: kernels longer than this are applied as a dense (n x n) band matrix product instead of a convolution:
#: cost then no longer grows with the kernel (a face-sized sigma has kernels of hundreds of taps)
MATMUL_KERNEL_MIN = 48


def check_border(border: str) -> None:
    """Raise ``ValueError`` naming the valid border modes unless ``border`` is one of them."""
    check_choice("border mode", border, BORDERS)


def gaussian_radius(sigma: float) -> int:
    """Kernel radius ``ceil(3 sigma)`` pixels: the kernel spans +-3 sigma (99.7 % of the mass)."""
    return math.ceil(3 * sigma)


def gaussian_kernel1d(sigma: float, radius: int, device: torch.device | str = "cpu") -> Tensor:
    """``(2 radius + 1,)`` float32 Gaussian taps ``exp(-x^2 / (2 sigma^2))`` for x in [-radius, radius], summing
    to 1 (computed in float64, then rounded once). ``sigma`` in pixels, > 0."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).float()


def border_index(i: Tensor, n: int, border: str = "reflect") -> Tensor:
    """Map any integer index tensor to [0, n) the way OpenCV's ``BORDER_REFLECT_101`` (``"reflect"``) or
    ``BORDER_REPLICATE`` (``"replicate"``) does."""
    check_border(border)
    if border == "replicate":
        return i.clamp(0, n - 1)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def reflect101_index(i: Tensor, n: int) -> Tensor:
    """:func:`border_index` with ``border="reflect"`` (…2 1 | 0 1 2 … n-1 | n-2 …)."""
    return border_index(i, n, "reflect")


def filter_matrix(kernel: Tensor, anchor: int, n: int, border: str = "reflect") -> Tensor:
    """(n, n) matrix M with ``out = x @ M`` equal to correlating x (length n) with ``kernel`` anchored at
    ``anchor`` under the given border mode."""
    k = kernel.numel()
    j = torch.arange(n, device=kernel.device)
    src = border_index(j[None, :] - anchor + torch.arange(k, device=kernel.device)[:, None], n, border)  # (k, n)
    m = torch.zeros(n, n, dtype=kernel.dtype, device=kernel.device)
    m.index_put_((src.reshape(-1), j.expand(k, n).reshape(-1)), kernel[:, None].expand(k, n).reshape(-1),
                 accumulate=True)
    return m


def _filter_axis(x: Tensor, kernel: Tensor, anchor: int, dim: int, border: str, method: str) -> Tensor:
    """Correlate float (B, C, H, W) along ``dim`` (-1 = W, -2 = H)."""
    n = x.shape[dim]
    k = kernel.numel()
    mode = BORDERS[border]
    if method == "shift":
        if dim == -1:
            y = F.pad(x, (anchor, k - 1 - anchor, 0, 0), mode=mode)
            return sum(kernel[i] * y[..., i:i + n] for i in range(k))
        y = F.pad(x, (0, 0, anchor, k - 1 - anchor), mode=mode)
        return sum(kernel[i] * y[..., i:i + n, :] for i in range(k))
    if k >= MATMUL_KERNEL_MIN or k > n:
        m = filter_matrix(kernel, anchor, n, border)
        return x @ m if dim == -1 else (x.transpose(-1, -2) @ m).transpose(-1, -2)
    c = x.shape[1]
    if dim == -1:
        x = F.pad(x, (anchor, k - 1 - anchor, 0, 0), mode=mode) if k > 1 else x
        return F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, anchor, k - 1 - anchor), mode=mode) if k > 1 else x
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def separable_filter(x: Tensor, kx: Tensor, ky: Tensor, anchor_x: int, anchor_y: int, border: str = "reflect",
                     method: str = "auto") -> Tensor:
    """Correlate float (B, C, H, W) with ``kx`` along W, then ``ky`` along H; same size out.

    ``anchor_*``: the tap that lands on the output pixel (OpenCV's anchor; the centre for odd symmetric kernels).
    ``border``: ``"reflect"`` (OpenCV's default, reflect-101) or ``"replicate"``. ``method``: ``"auto"`` handles
    kernels of any length, also longer than the image; ``"shift"`` needs ``len(kernel) <= side + 1`` for
    ``"reflect"`` (torch's padding limit) and suits short kernels under autograd. Raises ``ValueError`` for an
    unknown border or method.
    """
    check_border(border)
    check_choice("filter method", method, METHODS)
    return _filter_axis(_filter_axis(x, kx, anchor_x, -1, border, method), ky, anchor_y, -2, border, method)


def gaussian_blur2d(x: Tensor, sigma: float, border: str = "reflect", method: str = "auto") -> Tensor:
    """Gaussian blur of float (B, C, H, W): separable, radius ``ceil(3 sigma)`` (:func:`gaussian_radius`), taps from
    :func:`gaussian_kernel1d` cast to ``x.dtype``. ``sigma`` in pixels, > 0. Border and method as in
    :func:`separable_filter`. Same size, dtype and device out; differentiable w.r.t. ``x``."""
    r = gaussian_radius(sigma)
    k = gaussian_kernel1d(sigma, r, x.device).to(x.dtype)
    return separable_filter(x, k, k, r, r, border, method)


def filter2d(x: Tensor, kernel: Tensor, border: str = "replicate") -> Tensor:
    """Correlate each channel of float (B, C, H, W) with a (k, k) kernel (k odd, anchored at its centre);
    same size out. ``border``: ``"replicate"`` (default) or ``"reflect"``. An empty batch returns a copy."""
    check_border(border)
    if not x.is_floating_point() or x.ndim != 4:
        raise ValueError(f"x must be a float (B, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    k = kernel.shape[-1]
    if k == 1:
        return x * kernel.reshape(()).to(x)
    c = x.shape[1]
    r = k // 2
    if x.shape[0] == 0:
        return x.clone()
    xp = F.pad(x, (r, r, r, r), mode=BORDERS[border])
    return F.conv2d(xp, kernel.to(x).expand(c, 1, k, k), groups=c)


class GaussianBlur2d(nn.Module):
    """Module twin of :func:`gaussian_blur2d` (float (B, C, H, W) in and out); ``sigma`` > 0 pixels."""

    def __init__(self, sigma: float, border: str = "reflect", method: str = "auto") -> None:
        super().__init__()
        check_positive("sigma", sigma)
        check_border(border)
        check_choice("filter method", method, METHODS)
        self.sigma, self.border, self.method = float(sigma), border, method

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_blur2d(x, self.sigma, self.border, self.method)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, border={self.border!r}, method={self.method!r}"
