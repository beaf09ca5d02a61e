"""Pure batched region defenses: ``uint8 (B, 3, H, W)`` RGB in, a new ``uint8 (B, 3, H, W)`` out.

Every function takes the images and :class:`~anonlab.defenses.regions.Regions` (which pixels, owned by which
box), leaves the input untouched, and changes only pixels inside the regions. Filters see the whole image
around a region (a blurred face mixes in its surroundings, as a real redaction tool's full-frame blur
would), with OpenCV's default border (``BORDER_REFLECT_101``, torch's ``"reflect"``). CPU and CUDA run the
same float32 arithmetic; results agree within 1 grey level.

Strength can be absolute (pixels) or relative to each box (fraction of its height/width). Relative strengths
are quantized to quarter-octave buckets (at most 9 % off) so that one filter pass serves many boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anonlab._counter_rng import counter_normal, seed_key
from anonlab.defenses.regions import Regions
from anonlab.filters import (
    MATMUL_KERNEL_MIN,
    gaussian_blur2d,
    gaussian_radius,
    separable_filter,
)
from anonlab.types import check_images

#: relative strengths are rounded to 2**(k/4)
BUCKETS_PER_OCTAVE = 4


def quantize(values: Tensor) -> Tensor:
    """Round positive values to the nearest 2**(k/4) (relative error <= 9 %)."""
    return torch.exp2(torch.round(torch.log2(values.clamp(min=1e-6)) * BUCKETS_PER_OCTAVE) / BUCKETS_PER_OCTAVE)


def _to_uint8(x: Tensor) -> Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def _crop_window(rects: Tensor, pad_y: int, pad_x: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Bounding window of ``rects`` grown by the filter reach, clipped to the image (one host sync)."""
    h, w = size
    y1, x1 = int(rects[:, 1].min()), int(rects[:, 0].min())
    y2, x2 = int(rects[:, 3].max()), int(rects[:, 2].max())
    return max(0, y1 - pad_y), min(h, y2 + pad_y), max(0, x1 - pad_x), min(w, x2 + pad_x)


#: a separate filter call costs about this many multiply-adds (launch, crop and compositing overhead)
_CALL_COST = 256 * 256 * 32


def _filter_cost(n_images: int, h: int, w: int, taps_y: int, taps_x: int) -> int:
    """Multiply-adds of :func:`separable_filter` on ``n_images`` windows of h x w (an axis filtered by a band
    matrix costs its length per pixel, a convolution its taps)."""
    cx = w if taps_x >= MATMUL_KERNEL_MIN or taps_x > w else taps_x
    cy = h if taps_y >= MATMUL_KERNEL_MIN or taps_y > h else taps_y
    return n_images * h * w * (cx + cy)


def _window_groups(rects: list[list[int]], images: list[int], reach_y: int, reach_x: int, taps: tuple[int, int],
                   size: tuple[int, int]) -> list[tuple[list[int], list[int], tuple[int, int, int, int]]]:
    """Group boxes whose filter windows (box grown by the reach, clipped) are cheaper filtered together.

    Returns ``(box indices, image indices, window y1, y2, x1, x2)`` per group. A box joins a group when filtering
    the group's bounding window over the union of their images costs no more than filtering both apart plus
    one call's overhead (:func:`_filter_cost`), so far-apart faces (or faces in different frames of a batch) no
    longer make one window span the whole frame, while crowded faces still share one call.
    """
    h, w = size
    groups: list[list] = []  # [boxes, images set, y1, y2, x1, x2]

    def cost(imgs: set, y1, y2, x1, x2) -> int:
        return _filter_cost(len(imgs), y2 - y1, x2 - x1, *taps)

    order = sorted(range(len(rects)), key=lambda k: (rects[k][1], rects[k][0]))
    for k in order:
        x1, y1, x2, y2 = rects[k]
        win = (max(0, y1 - reach_y), min(h, y2 + reach_y), max(0, x1 - reach_x), min(w, x2 + reach_x))
        alone = cost({images[k]}, *win)
        best, best_delta = None, _CALL_COST
        for g in groups:
            imgs = g[1] | {images[k]}
            merged = (min(g[2], win[0]), max(g[3], win[1]), min(g[4], win[2]), max(g[5], win[3]))
            delta = cost(imgs, *merged) - cost(g[1], *g[2:]) - alone
            if delta <= best_delta:
                best, best_delta = (g, imgs, merged), delta
        if best is None:
            groups.append([[k], {images[k]}, *win])
        else:
            g, imgs, merged = best
            g[0].append(k)
            g[1] = imgs
            g[2:] = merged
    return [(g[0], sorted(g[1]), tuple(g[2:])) for g in groups]


def _filter_by_bucket(images: Tensor, regions: Regions, bucket_of_box: Tensor, filt) -> Tensor:
    """Apply ``filt(float_crop, key) -> float_crop`` per distinct bucket key, on windows around groups of its
    boxes (see :func:`_window_groups`); composite each result into the pixels of its group's boxes.

    ``bucket_of_box`` is ``(N, K)`` float per box (e.g. sigma, or kernel h and w). Each window is grown by the
    filter reach, so the result inside the boxes equals a full-image filter (up to float rounding: one grey level).
    """
    out = images.clone()
    n = regions.rects.shape[0]
    if n == 0:
        return out
    keys, inverse = torch.unique(bucket_of_box, dim=0, return_inverse=True)
    rects, batch_idx, bucket = regions.rects.tolist(), regions.batch_idx.tolist(), inverse.tolist()  # one sync
    size = images.shape[-2:]
    calls = []  # (key, image indices, window)
    group_of_box = [0] * n
    for i, key in enumerate(keys.tolist()):  # strength buckets, then groups of nearby boxes
        members = [k for k in range(n) if bucket[k] == i]
        reach_y, reach_x = filt.reach(key)
        for boxes, imgs, win in _window_groups([rects[k] for k in members], [batch_idx[k] for k in members],
                                               reach_y, reach_x, filt.taps(key), size):
            for k in boxes:
                group_of_box[members[k]] = len(calls)
            calls.append((key, imgs, win))
    group = torch.tensor(group_of_box, device=images.device)
    pixel_group = torch.where(regions.owner >= 0, group[regions.owner.clamp(min=0)], -1)  # (B, H, W)
    for g, (key, imgs, (y1, y2, x1, x2)) in enumerate(calls):
        if len(imgs) == images.shape[0]:
            idx: slice | Tensor = slice(None)
        else:
            idx = torch.tensor(imgs, device=images.device)
        crop = images[idx, :, y1:y2, x1:x2].float()
        filtered = _to_uint8(filt(crop, key))
        sel = (pixel_group[idx, None, y1:y2, x1:x2] == g).expand_as(filtered)
        window = out[idx, :, y1:y2, x1:x2]
        out[idx, :, y1:y2, x1:x2] = torch.where(sel, filtered, window)
    return out


class _Gauss:
    radius = staticmethod(gaussian_radius)

    def reach(self, key: list[float]) -> tuple[int, int]:
        r = self.radius(key[0])
        return r, r

    def taps(self, key: list[float]) -> tuple[int, int]:
        r = self.radius(key[0])
        return 2 * r + 1, 2 * r + 1

    def __call__(self, x: Tensor, key: list[float]) -> Tensor:
        return gaussian_blur2d(x, key[0])


class _Box:
    def reach(self, key: list[float]) -> tuple[int, int]:
        kh, kw = int(key[0]), int(key[1])
        return kh, kw

    def taps(self, key: list[float]) -> tuple[int, int]:
        return int(key[0]), int(key[1])

    def __call__(self, x: Tensor, key: list[float]) -> Tensor:
        kh, kw = int(key[0]), int(key[1])
        kx = torch.full((kw,), 1.0 / kw, device=x.device)
        ky = torch.full((kh,), 1.0 / kh, device=x.device)
        return separable_filter(x, kx, ky, kw // 2, kh // 2)  # OpenCV's default anchor: the kernel centre


def box_heights(regions: Regions) -> Tensor:
    return (regions.rects[:, 3] - regions.rects[:, 1]).float()


def box_widths(regions: Regions) -> Tensor:
    return (regions.rects[:, 2] - regions.rects[:, 0]).float()


def gaussian_blur(images: Tensor, regions: Regions, sigma: float | None = None, sigma_rel: float | None = None) -> Tensor:
    """Gaussian blur inside the regions; kernel spans +-ceil(3 sigma).

    Exactly one of ``sigma`` (pixels) or ``sigma_rel`` (fraction of each box's height, quantized) is given.
    """
    check_images(images)
    n = regions.rects.shape[0]
    if sigma is not None:
        per_box = torch.full((n, 1), float(sigma), device=images.device)
    else:
        per_box = quantize(box_heights(regions).clamp(min=1) * sigma_rel)[:, None]
    return _filter_by_bucket(images, regions, per_box, _Gauss())


def box_blur(images: Tensor, regions: Regions, kernel: int | None = None, kernel_rel: float | None = None) -> Tensor:
    """Normalized box filter (``cv2.blur``) inside the regions.

    ``kernel``: square kernel side in pixels; or ``kernel_rel``: kernel (h, w) as a fraction of each box's
    (height, width), quantized (deface uses 0.5: ``cv2.blur(roi, (w // 2, h // 2))``).
    """
    check_images(images)
    n = regions.rects.shape[0]
    if kernel is not None:
        per_box = torch.full((n, 2), float(kernel), device=images.device)
    else:
        hw = torch.stack([box_heights(regions), box_widths(regions)], dim=1).clamp(min=1)
        per_box = quantize(hw * kernel_rel).round().clamp(min=1)
    return _filter_by_bucket(images, regions, per_box, _Box())


def pixelate(images: Tensor, regions: Regions, blocks: int | None = None, block_px: int | None = None) -> Tensor:
    """Replace each block of each region by its mean colour (exact integer mean rounded half up, like
    OpenCV's INTER_AREA fast path).

    ``blocks``: an N x N grid over each region's rectangle; block (i, j) covers pixels with
    ``floor((y - y1) * N / h) == i`` and ``floor((x - x1) * N / w) == j``. ``block_px``: square blocks of that many
    pixels, anchored at the region's top-left corner. Only pixels inside the region shape contribute and change.
    """
    check_images(images)
    if regions.rects.shape[0] == 0:
        return images.clone()
    # work only on the window that holds the regions: pixelation cost then scales with the faces, not the frame
    y1, y2, x1, x2 = _crop_window(regions.rects, 0, 0, tuple(images.shape[-2:]))
    out = images.clone()
    shift = torch.tensor([x1, y1, x1, y1], device=images.device)
    out[:, :, y1:y2, x1:x2] = _pixelate_window(
        images[:, :, y1:y2, x1:x2], regions.owner[:, y1:y2, x1:x2], regions.rects - shift, blocks, block_px)
    return out


def _pixelate_window(images: Tensor, owner: Tensor, r: Tensor, blocks: int | None, block_px: int | None) -> Tensor:
    b, c, h, w = images.shape
    inside = owner >= 0
    o = owner.clamp(min=0)
    bh, bw = (r[:, 3] - r[:, 1]).clamp(min=1), (r[:, 2] - r[:, 0]).clamp(min=1)
    if blocks is not None:
        nby = torch.full_like(bh, blocks)
        nbx = torch.full_like(bw, blocks)
    else:
        nby, nbx = (bh + block_px - 1) // block_px, (bw + block_px - 1) // block_px
    offsets = torch.cumsum(nby * nbx, 0) - nby * nbx
    ys = torch.arange(h, device=images.device).view(1, h, 1)
    xs = torch.arange(w, device=images.device).view(1, 1, w)
    if blocks is not None:
        by = ((ys - r[o, 1]) * blocks) // bh[o]
        bx = ((xs - r[o, 0]) * blocks) // bw[o]
    else:
        by = (ys - r[o, 1]) // block_px
        bx = (xs - r[o, 0]) // block_px
    label = offsets[o] + by.clamp(min=0) * nbx[o] + bx.clamp(min=0)
    n_labels = int((offsets[-1] + nby[-1] * nbx[-1]).item()) if r.shape[0] else 0
    label = torch.where(inside, label, torch.full_like(label, n_labels))  # outside -> a dump bin
    flat = label.view(-1)
    pix = images.permute(0, 2, 3, 1).reshape(-1, c).long()
    sums = torch.zeros(n_labels + 1, c, dtype=torch.int64, device=images.device).index_add_(0, flat, pix)
    counts = torch.zeros(n_labels + 1, dtype=torch.int64, device=images.device).index_add_(0, flat, torch.ones_like(flat))
    counts = counts.clamp(min=1)[:, None]
    means = ((2 * sums + counts) // (2 * counts)).to(torch.uint8)  # exact integer mean, rounded half up
    blocked = means[flat].view(b, h, w, c).permute(0, 3, 1, 2)
    return torch.where(inside[:, None], blocked, images)


def solid_fill(images: Tensor, regions: Regions, color: tuple[int, int, int] = (0, 0, 0)) -> Tensor:
    """Paint the regions with one RGB colour."""
    check_images(images)
    fill = torch.tensor(color, dtype=torch.uint8, device=images.device).view(1, 3, 1, 1)
    return torch.where(regions.mask, fill, images)




def additive_noise(images: Tensor, regions: Regions, std: float, seed: int = 0) -> Tensor:
    """Add Gaussian noise of ``std`` grey levels inside the regions, then round and clip to [0, 255].

    The noise field is frozen (depends on ``seed`` and pixel position only), so CPU and CUDA agree and a
    frame's result does not depend on its batch.
    """
    check_images(images)
    out = images.clone()
    if regions.rects.shape[0] == 0:
        return out
    h, w = images.shape[-2:]
    y1, y2, x1, x2 = _crop_window(regions.rects, 0, 0, (h, w))
    dev = images.device
    c = torch.arange(3, device=dev).view(3, 1, 1)
    ys = torch.arange(y1, y2, device=dev).view(1, -1, 1)
    xs = torch.arange(x1, x2, device=dev).view(1, 1, -1)
    z = counter_normal((c * h + ys) * w + xs, seed_key(seed, dev))  # indexed by frame position: a pixel's noise is fixed
    win = images[:, :, y1:y2, x1:x2]
    noisy = _to_uint8(win.float() + std * z)
    out[:, :, y1:y2, x1:x2] = torch.where(regions.mask[:, :, y1:y2, x1:x2], noisy, win)
    return out
