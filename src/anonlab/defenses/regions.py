"""Which pixels a defense touches: boxes -> scaled, integer pixel rectangles -> a per-pixel owner map or mask.

All functions are batched torch, CPU and CUDA alike, with no Python loop over boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from anonlab.types import Detections

SHAPES = ("rect", "ellipse")
#: cap on the temporary (boxes x box-height x box-width) grid built per chunk, in elements
_GRID_BUDGET = 1 << 24


@dataclass(frozen=True)
class Regions:
    """The pixels to anonymize in a batch of ``batch`` images of ``size`` (H, W).

    rects ``(N, 4) int64`` x1, y1, x2, y2 (exclusive), clipped to the image, after mask scaling;
    batch_idx ``(N,) int64``; ``shape``: ``rect`` or ``ellipse`` (inscribed in each rect). Derived on first use
    and kept: :attr:`owner` ``(B, H, W) int64``, the index of the box that owns each pixel (the highest index where
    boxes overlap), -1 outside every region (:func:`owner_map`); :attr:`mask` ``(B, 1, H, W) bool``, True inside
    any region (:func:`region_mask`, or from :attr:`owner` when that is built: a defense that needs only the mask,
    such as ``solid``, never builds the 8-byte-per-pixel owner map).
    """

    rects: Tensor
    batch_idx: Tensor
    batch: int
    size: tuple[int, int]
    shape: str = "rect"

    @cached_property
    def owner(self) -> Tensor:
        return owner_map(self.rects, self.batch_idx, self.batch, self.size, self.shape)

    @cached_property
    def mask(self) -> Tensor:
        if "owner" in self.__dict__:
            return (self.owner >= 0)[:, None]
        return region_mask(self.rects, self.batch_idx, self.batch, self.size, self.shape)


def scale_boxes(boxes: Tensor, factor: float) -> Tensor:
    """Enlarge float xyxy boxes about their centres by ``factor`` (deface uses 1.3)."""
    if factor == 1.0:
        return boxes
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return torch.cat([c - half, c + half], dim=1)


#: a head's height and breadth as fractions of the stature: 0.13 (anthropometric tables, 1/7.7; an adult is about
#: 7 to 8 head heights tall in the classical canon) and 0.09 (head breadth ~15.5 cm of a 1.70 m adult)
HEAD_HEIGHT, HEAD_BREADTH = 0.13, 0.09
#: the head region of a ground-truth standing-person box (the re-ID study): the top 1/7, over HEAD_HEIGHT, which
#: errs towards covering the whole head and hair
HEAD_FRACTION = 1.0 / 7.0


def head_boxes(boxes: Tensor, fraction: float = HEAD_FRACTION, above: float = 0.0) -> Tensor:
    """``float32 (N, 4)`` xyxy person boxes (pixels) -> their head regions ``(N, 4)``: the top ``fraction`` of each
    box over its full width, its top raised by ``above`` x the box height (a detector's box may start below the
    crown). ``fraction``/``above`` are fractions of the box height, >= 0."""
    h = boxes[:, 3] - boxes[:, 1]
    out = boxes.clone()
    out[:, 1] = boxes[:, 1] - h * above
    out[:, 3] = boxes[:, 1] + h * fraction
    return out


def pixel_rects(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Float xyxy boxes -> int64 pixel rectangles [x1, x2) x [y1, y2), rounded and clipped to ``size`` (H, W).

    Pixel (x, y) covers [x, x+1); a box edge at 10.4 rounds to 10.
    """
    h, w = size
    r = boxes.round().long()
    return torch.stack([r[:, 0].clamp(0, w), r[:, 1].clamp(0, h), r[:, 2].clamp(0, w), r[:, 3].clamp(0, h)], dim=1)


def _grids(rects: Tensor, batch_idx: Tensor, size: tuple[int, int], shape: str):
    """The pixels of every rectangle, grouped by size: yields per chunk ``(ids (n,), flat (n, mh, mw), inside
    (n, mh, mw))``, the boxes' indices, the flat index ``(b * H + y) * W + x`` of each cell of their
    ``mh x mw`` grid, and whether that cell is a pixel of the box (inside its rect and, with ``shape="ellipse"``,
    with its centre inside the inscribed ellipse).

    Rectangles are grouped by size (width and height each rounded up to a power of two), and each group is drawn
    on a grid of its own largest size, so one large box does not make every small one cost its size (a video
    frame's many small held boxes and one grown box took 0.9 s a frame on one grid). One host sync (the sizes)
    and one copy to the device (the grouped order), none per box; a loop over size groups and ``_GRID_BUDGET``
    chunks.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown region shape {shape!r}; valid: {', '.join(SHAPES)}")
    h, w = size
    dev = rects.device
    if rects.shape[0] == 0 or h == 0 or w == 0:
        return
    extent = (rects[:, 2:] - rects[:, :2]).clamp(min=0)
    ext = extent.tolist()  # the one sync (extent is w, h)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (ew, eh) in enumerate(ext):
        if ew > 0 and eh > 0:
            groups.setdefault((1 << (ew - 1).bit_length(), 1 << (eh - 1).bit_length()), []).append(i)
    # the boxes' indices ordered by group, moved to the device once (a copy per group would wait for the host)
    order = torch.tensor([i for members in groups.values() for i in members], dtype=torch.int64)
    order = order.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else order
    offset = 0
    for members in groups.values():
        sel = order[offset : offset + len(members)]
        offset += len(members)
        mw, mh = max(ext[i][0] for i in members), max(ext[i][1] for i in members)
        chunk = max(1, _GRID_BUDGET // (mh * mw))
        ys = torch.arange(mh, device=dev)
        xs = torch.arange(mw, device=dev)
        for start in range(0, len(members), chunk):  # chunks of boxes (usually one), never single boxes
            ids = sel[start : start + chunk]
            r = rects[ids]
            b = batch_idx[ids]
            y = r[:, 1, None, None] + ys[None, :, None]  # (n, mh, 1)
            x = r[:, 0, None, None] + xs[None, None, :]  # (n, 1, mw)
            inside = (y < r[:, 3, None, None]) & (x < r[:, 2, None, None])
            if shape == "ellipse":
                cy = (r[:, 1] + r[:, 3]).float()[:, None, None] / 2
                cx = (r[:, 0] + r[:, 2]).float()[:, None, None] / 2
                ry = ((r[:, 3] - r[:, 1]).float() / 2).clamp(min=0.5)[:, None, None]
                rx = ((r[:, 2] - r[:, 0]).float() / 2).clamp(min=0.5)[:, None, None]
                inside = inside & ((((y + 0.5) - cy) / ry) ** 2 + (((x + 0.5) - cx) / rx) ** 2 <= 1.0)
            yield ids, (b[:, None, None] * h + y) * w + x, inside


def owner_map(rects: Tensor, batch_idx: Tensor, batch: int, size: tuple[int, int], shape: str = "rect") -> Tensor:
    """(B, H, W) int64: index of the rectangle covering each pixel (highest wins), -1 where none does.

    ``shape="ellipse"`` keeps only pixels whose centres fall inside the ellipse inscribed in the rectangle
    (:func:`_grids`: no Python loop over boxes, one host sync). Raises ``ValueError`` for an unknown shape.
    """
    h, w = size
    owner = torch.full((batch * h * w,), -1, dtype=torch.int64, device=rects.device)
    for ids, flat, inside in _grids(rects, batch_idx, size, shape):
        flat = torch.where(inside, flat, torch.zeros_like(flat))
        val = torch.where(inside, ids[:, None, None].expand_as(inside), torch.full_like(flat, -1))
        owner.scatter_reduce_(0, flat.reshape(-1), val.reshape(-1), reduce="amax")
    return owner.view(batch, h, w)


def region_mask(rects: Tensor, batch_idx: Tensor, batch: int, size: tuple[int, int], shape: str = "rect") -> Tensor:
    """(B, 1, H, W) bool: True where any rectangle (or, with ``shape="ellipse"``, its inscribed ellipse) covers
    the pixel; ``owner_map(...) >= 0`` at an eighth of the memory (:func:`_grids`). Raises ``ValueError`` for an
    unknown shape."""
    h, w = size
    n = batch * h * w
    mask = torch.zeros(n + 1, dtype=torch.bool, device=rects.device)  # the last element takes the cells outside
    for _, flat, inside in _grids(rects, batch_idx, size, shape):
        mask.index_fill_(0, torch.where(inside, flat, n).reshape(-1), True)
    return mask[:n].view(batch, 1, h, w)


def make_regions(dets: Detections, batch: int, size: tuple[int, int], shape: str = "rect",
                 mask_scale: float = 1.0) -> Regions:
    """Scale ``dets.boxes`` by ``mask_scale`` and snap them to pixels: the :class:`Regions` of a batch (its owner
    map and mask are built on first use). Raises ``ValueError`` for an unknown ``shape``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown region shape {shape!r}; valid: {', '.join(SHAPES)}")
    rects = pixel_rects(scale_boxes(dets.boxes, mask_scale), size)
    return Regions(rects, dets.batch_idx, batch, tuple(size), shape)
