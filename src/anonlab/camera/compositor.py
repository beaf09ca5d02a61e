"""Scene compositor: pedestrians cut out with their instance masks, pasted onto background frames at the
positions and scales a CCTV camera looking down at a ground plane would see, with exact ground truth; and
synthetic clips of the same pedestrians walking, written as MOTChallenge sequences.

Ground-plane pinhole model (:class:`GroundCamera`). The camera sits ``height_m`` above a flat ground, its optical
axis tilted down by ``tilt_deg`` (0 = horizontal), no roll, principal point at the frame centre
``(cx, cy) = (W / 2, H / 2)``, square pixels, focal length ``f = (W / 2) / tan(hfov / 2)`` pixels
(:func:`anonlab.camera.ops.focal_px`). A point at lateral offset ``X`` (m, right positive), forward ground
distance ``Z`` (m, from the foot of the mast) and height ``Y`` (m above the ground) has camera coordinates

    x_c = X,   y_c = (h - Y) cos t - Z sin t,   z_c = Z cos t + (h - Y) sin t

and projects to column ``u = cx + f x_c / z_c``, row ``v = cy + f y_c / z_c``. A pedestrian of real height
``H_p`` standing at ``(X, Z)`` has feet row ``y_f = v(Y=0)`` and head row ``y_h = v(Y=H_p)``; its pixel height is
``y_f - y_h``: farther people are smaller and higher in the frame. The cut-out is scaled uniformly so that its mask
height equals ``y_f - y_h``, pasted upright with the bottom edge of its mask on row ``round(y_f)`` and centred on
the feet column ``u(Y=0)`` (the convergence of vertical lines under tilt, a few degrees at CCTV fields of view, is
not modelled).

Pasting (:func:`render_scene`). Each cut-out (crop of the source image to its mask's bounding box, so the mask
touches all four sides) is resized to ``(round(h * s), round(w * s))`` (antialiased bilinear for the colours; the
mask is the same resize of the 0/1 mask thresholded at 0.5, with the strongest pixel of an empty first/last
row/column switched on so the resized mask spans its whole rectangle). It is alpha-blended with the mask as alpha
(``feather``: alpha = mask * (3x3 mean of the mask), a 1-px soft edge that stays inside the mask) in painter's
order, farthest first (descending ``Z``, ties in input order), so nearer people occlude farther ones. Pixels
outside every pasted mask keep the background's values exactly.

Ground truth per instance (:class:`SceneTruth`, rows in input order):

- ``persons``: bounding box of the *full* pasted mask inside the frame (xyxy pixel edges, integers), whatever
  nearer people hide of it; ``visible_boxes``: bounding box of its visible pixels (not covered by a nearer mask);
  ``occlusion``: 1 - visible / full pixel count (the frame border is truncation, flagged by ``truncated``, not
  occlusion); ``masks`` / ``visible_masks`` the per-pixel truth;
- ``faces``: the cut-out's face box (given in cut-out pixels, e.g. by a face detector run on the clean source)
  carried through the same scale and offset, clipped to the frame (NaN row when the cut-out has none or it leaves
  the frame); ``face_occlusion``: share of the (pixel-rounded) face box covered by nearer masks;
- ``identities``: the cut-out's identity id, ``present``: some mask pixel lies inside the frame.

Randomness comes only from a ``torch.Generator`` the caller seeds. Pixel work runs on the background's device
(CPU or CUDA); per-instance geometry is scalar float64 host arithmetic.
"""

from __future__ import annotations

import configparser
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from anonlab._checks import check_int, check_positive, check_range
from anonlab.camera.ops import focal_px

#: lossless codecs a clip may be written with: FFmpeg encoder -> (pixel format, container suffix)
CLIP_CODECS = {"ffv1": ("bgr0", ".mkv"), "libx264rgb": ("rgb24", ".mkv")}
#: a pedestrian walks at about this speed (m/s)
WALK_SPEED_MPS = 1.4


# ---------------------------------------------------------------------------------------------- camera model


@dataclass(frozen=True)
class GroundCamera:
    """A pinhole CCTV camera above a flat ground (see the module docstring for the model).

    size_hw: frame (H, W) in pixels; height_m: mount height in (2, 100] m (above head height); tilt_deg: downward
    tilt of the optical axis in [0, 90); hfov_deg: horizontal field of view in (0, 180)."""

    size_hw: tuple[int, int]
    height_m: float = 6.0
    tilt_deg: float = 25.0
    hfov_deg: float = 70.0

    def __post_init__(self) -> None:
        h, w = self.size_hw
        if isinstance(h, bool) or isinstance(w, bool) or int(h) != h or int(w) != w or h < 1 or w < 1:
            raise ValueError(f"camera size_hw must be two integers >= 1, got {self.size_hw!r}")
        object.__setattr__(self, "size_hw", (int(h), int(w)))
        check_range("camera height_m", self.height_m, 2.0, 100.0, lo_open=True,
                    note="metres, mounted above head height")
        check_range("camera tilt_deg", self.tilt_deg, 0.0, 90.0, hi_open=True, note="degrees below the horizontal")
        check_range("camera hfov_deg", self.hfov_deg, 0.0, 180.0, lo_open=True, hi_open=True, note="degrees")

    @property
    def focal(self) -> float:
        return focal_px(self.size_hw[1], self.hfov_deg)

    @property
    def centre(self) -> tuple[float, float]:
        """(cx, cy) principal point in pixels."""
        return self.size_hw[1] / 2, self.size_hw[0] / 2

    def project(self, x: Tensor, z: Tensor, y: Tensor | float = 0.0) -> tuple[Tensor, Tensor]:
        """Columns and rows (float64 tensors) of ground-frame points ``(X, Z)`` at height ``Y`` (metres)."""
        t = math.radians(self.tilt_deg)
        c, s = math.cos(t), math.sin(t)
        x, z = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(z, dtype=torch.float64)
        dy = self.height_m - torch.as_tensor(y, dtype=torch.float64)
        zc = z * c + dy * s
        yc = dy * c - z * s
        cx, cy = self.centre
        return cx + self.focal * x / zc, cy + self.focal * yc / zc

    def rows(self, z: Tensor, person_height_m: Tensor | float) -> tuple[Tensor, Tensor]:
        """Feet row ``y_f`` and head row ``y_h`` (float64) of a person ``person_height_m`` tall at distance ``z``."""
        zero = torch.zeros_like(torch.as_tensor(z, dtype=torch.float64))
        _, yf = self.project(zero, z, 0.0)
        _, yh = self.project(zero, z, person_height_m)
        return yf, yh

    def pixel_height(self, z: Tensor | float, person_height_m: Tensor | float) -> Tensor:
        """``y_f - y_h``: the pinhole pixel height of a person ``person_height_m`` tall at ground distance ``z``."""
        yf, yh = self.rows(torch.as_tensor(z, dtype=torch.float64), person_height_m)
        return yf - yh

    def ground_x(self, u: Tensor, z: Tensor) -> Tensor:
        """Lateral offset ``X`` whose feet point at distance ``z`` images to column ``u``."""
        t = math.radians(self.tilt_deg)
        zc = torch.as_tensor(z, dtype=torch.float64) * math.cos(t) + self.height_m * math.sin(t)
        return (torch.as_tensor(u, dtype=torch.float64) - self.centre[0]) * zc / self.focal

    def depth_range(self, person_height_m: float, min_px: float) -> tuple[float, float]:
        """``(z_near, z_far)``: ground distances at which a person ``person_height_m`` tall is wholly inside the
        frame vertically (head row >= 0, feet row <= H) and at least ``min_px`` pixels tall. Raises
        ``ValueError`` when no distance qualifies."""
        z = torch.logspace(-2, 3, 20001, dtype=torch.float64)  # 1 cm .. 1 km, 0.06 % steps
        yf, yh = self.rows(z, person_height_m)
        ok = (yh >= 0) & (yf <= self.size_hw[0]) & (yf - yh >= min_px) & (yf > yh)
        if not bool(ok.any()):
            raise ValueError(f"no ground distance shows a {person_height_m} m person wholly in the {self.size_hw} "
                             f"frame at >= {min_px} px (height_m={self.height_m}, tilt_deg={self.tilt_deg}, "
                             f"hfov_deg={self.hfov_deg}): lower min_person_px or tilt_deg")
        idx = ok.nonzero()[:, 0]
        return float(z[idx[0]]), float(z[idx[-1]])


# ---------------------------------------------------------------------------------------------- cut-outs


@dataclass(frozen=True)
class Cutout:
    """One pedestrian: ``rgb`` uint8 (3, h, w) crop of its source image to its mask's bounding box, ``mask`` bool
    (h, w) touching all four sides, ``face`` float32 (4,) xyxy in crop pixels (all NaN: no face), ``identity``."""

    rgb: Tensor
    mask: Tensor
    face: Tensor
    identity: int
    source: str = ""

    @property
    def aspect(self) -> float:
        """width / height of the mask's bounding box."""
        return self.mask.shape[1] / self.mask.shape[0]


def cut_out(image: Tensor, masks: Tensor, faces: Tensor | None = None, identities: Sequence[int] | None = None,
            sources: Sequence[str] | None = None) -> list[Cutout]:
    """Cut the instances of one image out: ``image`` uint8 (3, H, W), ``masks`` bool (N, H, W), ``faces`` float32
    (N, 4) xyxy in image pixels (NaN rows: no face; None: none at all), ``identities`` N ints (default 0..N-1).
    Instances with an empty mask are skipped. Face boxes are shifted into crop pixels (not clipped)."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 (3, H, W), got {image.dtype} {tuple(image.shape)}")
    if masks.dtype != torch.bool or masks.ndim != 3 or masks.shape[1:] != image.shape[1:]:
        raise ValueError(f"masks must be bool (N, {image.shape[1]}, {image.shape[2]}), got {masks.dtype} "
                         f"{tuple(masks.shape)}")
    n = masks.shape[0]
    if faces is None:
        faces = torch.full((n, 4), float("nan"))
    if faces.shape != (n, 4):
        raise ValueError(f"faces must be float32 ({n}, 4), got {tuple(faces.shape)}")
    ids = list(range(n)) if identities is None else list(identities)
    names = [""] * n if sources is None else list(sources)
    if len(ids) != n or len(names) != n:
        raise ValueError(f"identities and sources need {n} entries, got {len(ids)} and {len(names)}")
    boxes = mask_boxes(masks).long().tolist()
    out = []
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        if x2 <= x1:
            continue
        face = faces[k].float() - torch.tensor([x1, y1, x1, y1], dtype=torch.float32)
        out.append(Cutout(image[:, y1:y2, x1:x2].clone(), masks[k, y1:y2, x1:x2].clone(), face, int(ids[k]), names[k]))
    return out


def mask_boxes(masks: Tensor) -> Tensor:
    """float32 (N, 4) xyxy pixel-edge bounding boxes of bool masks (N, H, W); all zeros for an empty mask."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, device=masks.device)
    rows, cols = masks.any(2), masks.any(1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    big = max(h, w) + 1
    y1 = torch.where(rows, ar_h, big).amin(1)
    y2 = torch.where(rows, ar_h, -1).amax(1) + 1
    x1 = torch.where(cols, ar_w, big).amin(1)
    x2 = torch.where(cols, ar_w, -1).amax(1) + 1
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    return torch.where(rows.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


# ---------------------------------------------------------------------------------------------- placements


@dataclass(frozen=True)
class Placement:
    """Where pedestrians stand: float64 (K,) ground coordinates ``x``, ``z`` (m) and real heights ``height_m``."""

    x: Tensor
    z: Tensor
    height_m: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def check_height_range(height_range_m: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in height_range_m)
    if not 0.5 <= lo <= hi <= 2.5:
        raise ValueError(f"person height range must satisfy 0.5 <= low <= high <= 2.5 metres, got {height_range_m!r}")
    return lo, hi


def sample_placements(camera: GroundCamera, aspects: Sequence[float], generator: torch.Generator,
                      height_range_m: Sequence[float] = (1.6, 1.9), min_px: float = 40.0) -> Placement:
    """One random standing position per cut-out (``aspects``: its width / height), wholly inside the frame:
    real height uniform in ``height_range_m``, ground distance ``Z`` uniform over the distances where the person
    fits vertically and is at least ``min_px`` tall (:meth:`GroundCamera.depth_range`), feet column uniform over
    the columns where its scaled width fits. Draws from ``generator`` only."""
    lo, hi = check_height_range(height_range_m)
    check_range("min_px", min_px, 1, note="pixels")
    k = len(aspects)
    u01 = torch.rand(k, 3, generator=generator, dtype=torch.float64)
    heights = lo + (hi - lo) * u01[:, 0]
    xs, zs = [], []
    w = camera.size_hw[1]
    for i in range(k):
        z_near, z_far = camera.depth_range(float(heights[i]), min_px)
        z = z_near + (z_far - z_near) * u01[i, 1]
        half = 0.5 * float(camera.pixel_height(z, heights[i])) * aspects[i]
        if 2 * half > w:
            raise ValueError(f"a cut-out of aspect {aspects[i]:.2f} is wider than the {w}-px frame at every distance")
        u = half + (w - 2 * half) * u01[i, 2]
        zs.append(z)
        xs.append(camera.ground_x(u, z))
    empty = torch.zeros(0, dtype=torch.float64)
    return Placement(torch.stack(xs) if xs else empty, torch.stack(zs) if zs else empty, heights)


# ---------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class SceneTruth:
    """Exact ground truth of a rendered scene, one row per placed cut-out in input order (see module docstring).

    persons, visible_boxes, faces: float32 (K, 4); occlusion, face_occlusion: float32 (K,); identities: int64 (K,);
    present, truncated: bool (K,); masks, visible_masks: bool (K, H, W); ground_xz: float64 (K, 2) ground position
    (X, Z) in metres (CPU); order: int64 (K,) painter's order (indices, farthest first). All others on the
    background's device."""

    persons: Tensor
    visible_boxes: Tensor
    occlusion: Tensor
    faces: Tensor
    face_occlusion: Tensor
    identities: Tensor
    present: Tensor
    truncated: Tensor
    masks: Tensor
    visible_masks: Tensor
    ground_xz: Tensor
    order: Tensor


def _resize_cutout(cut: Cutout, out_hw: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
    """Float RGB (3, h, w) in [0, 1] and bool mask (h, w) of ``cut`` at ``out_hw`` (see module docstring)."""
    rgb = cut.rgb.to(device).float()[None] / 255.0
    m = cut.mask.to(device).float()[None, None]
    if tuple(out_hw) != tuple(cut.mask.shape):
        rgb = F.interpolate(rgb, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
        m = F.interpolate(m, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    alpha = m[0, 0]
    mask = alpha >= 0.5
    # the source mask touches every side of its crop: keep that extent after resizing (strongest pixel of an
    # empty border row/column switched on; vectorized, no host sync)
    h, w = out_hw
    for line, lmask in ((alpha[0], mask[0]), (alpha[h - 1], mask[h - 1]), (alpha[:, 0], mask[:, 0]),
                        (alpha[:, w - 1], mask[:, w - 1])):
        best = torch.zeros_like(lmask)
        best[line.argmax()] = True
        lmask |= best & ~lmask.any()
    return rgb[0].clamp(0, 1), mask


def _feather(mask: Tensor) -> Tensor:
    m = mask.float()[None, None]
    return (m * F.avg_pool2d(F.pad(m, (1, 1, 1, 1)), 3, stride=1))[0, 0]


def render_scene(background: Tensor, cutouts: Sequence[Cutout], placement: Placement, camera: GroundCamera,
                 feather: bool = False) -> tuple[Tensor, SceneTruth]:
    """Paste ``cutouts[k]`` at ``placement`` row ``k`` into ``background`` (uint8 (3, H, W), H x W =
    ``camera.size_hw``; not modified) in painter's order. Returns the new uint8 (3, H, W) frame on the
    background's device and its :class:`SceneTruth`. A cut-out is sized by the pinhole model (module docstring)
    and clipped to the frame; one whose feet lie behind the camera or at/above the horizon is not drawn
    (``present`` False)."""
    if background.dtype != torch.uint8 or background.ndim != 3 or background.shape[0] != 3:
        raise ValueError(f"background must be uint8 (3, H, W), got {background.dtype} {tuple(background.shape)}")
    hh, ww = camera.size_hw
    if tuple(background.shape[1:]) != (hh, ww):
        raise ValueError(f"background is {tuple(background.shape[1:])} but the camera frame is {(hh, ww)}")
    k = len(cutouts)
    if len(placement) != k:
        raise ValueError(f"{k} cut-outs but {len(placement)} placements")
    dev = background.device
    canvas = background.float() / 255.0
    masks = torch.zeros(k, hh, ww, dtype=torch.bool, device=dev)
    faces = torch.full((k, 4), float("nan"))
    truncated = torch.zeros(k, dtype=torch.bool)
    order = sorted(range(k), key=lambda i: -float(placement.z[i]))  # stable: ties keep input order
    u, _ = camera.project(placement.x, placement.z, 0.0)
    yf, yh = camera.rows(placement.z, placement.height_m)
    t = math.radians(camera.tilt_deg)
    zc = placement.z * math.cos(t) + camera.height_m * math.sin(t)
    for i in order:
        cut = cutouts[i]
        ph = float(yf[i] - yh[i])
        if not (float(zc[i]) > 0 and ph > 0 and math.isfinite(ph)):
            continue
        sh, sw = cut.mask.shape
        scale = ph / sh
        oh, ow = max(1, round(sh * scale)), max(1, round(sw * scale))
        bottom = round(float(yf[i]))
        top, left = bottom - oh, round(float(u[i]) - ow / 2)
        y1, y2, x1, x2 = max(top, 0), min(bottom, hh), max(left, 0), min(left + ow, ww)
        if y2 <= y1 or x2 <= x1:
            continue
        truncated[i] = (y1, y2, x1, x2) != (top, bottom, left, left + ow)
        rgb, mask = _resize_cutout(cut, (oh, ow), dev)
        rgb = rgb[:, y1 - top : y2 - top, x1 - left : x2 - left]
        mask = mask[y1 - top : y2 - top, x1 - left : x2 - left]
        alpha = (_feather(mask) if feather else mask.float())[None]
        region = canvas[:, y1:y2, x1:x2]
        canvas[:, y1:y2, x1:x2] = region * (1 - alpha) + rgb * alpha
        masks[i, y1:y2, x1:x2] = mask
        f = cut.face * torch.tensor([ow / sw, oh / sh, ow / sw, oh / sh]) + torch.tensor([left, top, left, top])
        f = torch.stack([f[0].clamp(0, ww), f[1].clamp(0, hh), f[2].clamp(0, ww), f[3].clamp(0, hh)])
        if bool(f[2] > f[0]) and bool(f[3] > f[1]):
            faces[i] = f
    image = (canvas * 255.0).round().clamp_(0, 255).to(torch.uint8)
    return image, _truth(masks, faces.to(dev), truncated.to(dev), cutouts, placement, order)


def _truth(masks: Tensor, faces: Tensor, truncated: Tensor, cutouts: Sequence[Cutout], placement: Placement,
           order: list[int]) -> SceneTruth:
    k, hh, ww = masks.shape
    dev = masks.device
    order_t = torch.tensor(order, dtype=torch.int64, device=dev)
    rank = torch.empty_like(order_t)
    rank[order_t] = torch.arange(k, device=dev)  # 0 = farthest
    # covered[i]: pixels of any instance nearer than i (later in painter's order)
    by_rank = masks[order_t].int()
    nearer = by_rank.flip(0).cumsum(0).flip(0) - by_rank
    covered = torch.empty_like(masks)
    covered[order_t] = nearer > 0
    visible = masks & ~covered
    full_n = masks.flatten(1).sum(1)
    vis_n = visible.flatten(1).sum(1)
    occlusion = torch.where(full_n > 0, 1 - vis_n / full_n.clamp(min=1), torch.zeros_like(full_n, dtype=torch.float32))
    # face occlusion: share of the rounded face box covered by nearer masks (integral image)
    integ = F.pad(covered.int().cumsum(1).cumsum(2), (1, 0, 1, 0))
    has_face = ~faces.isnan().any(1)
    fb = torch.nan_to_num(faces).round().long()
    x1, y1, x2, y2 = fb[:, 0].clamp(0, ww), fb[:, 1].clamp(0, hh), fb[:, 2].clamp(0, ww), fb[:, 3].clamp(0, hh)
    idx = torch.arange(k, device=dev)
    area = ((x2 - x1) * (y2 - y1)).clamp(min=1)
    cov = integ[idx, y2, x2] - integ[idx, y1, x2] - integ[idx, y2, x1] + integ[idx, y1, x1]
    face_occ = torch.where(has_face, cov / area, torch.zeros_like(area, dtype=torch.float32)).float()
    ids = torch.tensor([c.identity for c in cutouts], dtype=torch.int64, device=dev)
    return SceneTruth(mask_boxes(masks), mask_boxes(visible), occlusion.float(), faces.float(), face_occ, ids,
                      full_n > 0, truncated, masks, visible, torch.stack([placement.x, placement.z], 1), order_t)


# ---------------------------------------------------------------------------------------------- clips


def sample_walks(camera: GroundCamera, aspects: Sequence[float], n_frames: int, fps: float,
                 generator: torch.Generator, speed_mps: float = WALK_SPEED_MPS,
                 height_range_m: Sequence[float] = (1.6, 1.9), min_px: float = 40.0) -> list[Placement]:
    """Straight walks, one per cut-out: the position at the clip's middle frame is drawn as in
    :func:`sample_placements`, the direction uniformly over the ground plane's 360 degrees, the speed
    uniformly within +-15 % of ``speed_mps``; frame ``t`` is at ``p_mid + v (t - (n_frames - 1) / 2) / fps``.
    Returns ``n_frames`` placements (people may walk out of the frame; a person is then clipped, or absent)."""
    check_int("n_frames", n_frames, 1)
    check_positive("fps", fps)
    check_range("speed_mps", speed_mps, 0, note="m/s")
    mid = sample_placements(camera, aspects, generator, height_range_m, min_px)
    k = len(aspects)
    r = torch.rand(k, 2, generator=generator, dtype=torch.float64)
    theta = 2 * math.pi * r[:, 0]
    v = speed_mps * (0.85 + 0.3 * r[:, 1])
    times = (torch.arange(n_frames, dtype=torch.float64) - (n_frames - 1) / 2) / fps
    xs = mid.x[None] + (v * torch.cos(theta))[None] * times[:, None]
    zs = mid.z[None] + (v * torch.sin(theta))[None] * times[:, None]
    return [Placement(xs[t], zs[t], mid.height_m) for t in range(n_frames)]


def render_clip(background: Tensor, cutouts: Sequence[Cutout], walks: Sequence[Placement], camera: GroundCamera,
                feather: bool = False) -> Iterator[tuple[Tensor, SceneTruth]]:
    """Frames of a clip over one static background, lazily: ``(frame uint8 (3, H, W), SceneTruth)`` per walk step.
    A person closer than 0.3 m (feet beside the mast) is left out of that frame."""
    for p in walks:
        keep = p.z > 0.3
        idx = keep.nonzero()[:, 0].tolist()
        sub = Placement(p.x[keep], p.z[keep], p.height_m[keep])
        yield render_scene(background, [cutouts[i] for i in idx], sub, camera, feather)


def write_mot_clip(folder: str | Path, frames: Iterable[tuple[Tensor, SceneTruth]], fps: int, name: str = "composite",
                   codec: str = "ffv1") -> Path:
    """Write a clip as a MOTChallenge sequence that anonlab's ``mot`` dataset reads back:
    ``<folder>/<name><suffix>`` (lossless: ``ffv1`` (bgr0, .mkv) or ``libx264rgb`` (crf 0, .mkv)),
    ``<folder>/seqinfo.ini`` and ``<folder>/gt/gt.txt`` in the 10-column MOT15 format
    ``frame, id, bb_left, bb_top, bb_width, bb_height, 1, X, Z, -1`` (one row per present person: its full-mask
    box, integer pixels; track id = identity; X, Z its ground position in metres). Returns the folder."""
    import av

    if codec not in CLIP_CODECS:
        raise ValueError(f"unknown clip codec {codec!r}; valid (lossless): {', '.join(CLIP_CODECS)}")
    check_int("fps", fps, 1)
    pix_fmt, suffix = CLIP_CODECS[codec]
    folder = Path(folder)
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    video = folder / f"{name}{suffix}"
    rows: list[str] = []
    n, size_hw = 0, None
    with av.open(str(video), "w") as out:
        stream = None
        for frame, truth in frames:
            if stream is None:
                size_hw = tuple(frame.shape[1:])
                stream = out.add_stream(codec, rate=fps)
                stream.height, stream.width = size_hw
                stream.pix_fmt = pix_fmt
                if codec == "libx264rgb":
                    stream.options = {"crf": "0", "qp": "0"}
            n += 1
            arr = frame.permute(1, 2, 0).contiguous().cpu().numpy()
            for pkt in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(pkt)
            boxes = truth.persons.cpu().long().tolist()
            xz = truth.ground_xz.tolist()
            for j in truth.present.cpu().nonzero()[:, 0].tolist():
                x1, y1, x2, y2 = boxes[j]
                rows.append(f"{n},{int(truth.identities[j])},{x1},{y1},{x2 - x1},{y2 - y1},1,"
                            f"{xz[j][0]:.4f},{xz[j][1]:.4f},-1")
        if stream is None:
            raise ValueError("write_mot_clip: the clip has no frames")
        for pkt in stream.encode():
            out.mux(pkt)
    (folder / "gt" / "gt.txt").write_text("".join(r + "\n" for r in rows))
    cp = configparser.ConfigParser()
    cp.optionxform = str  # keep imWidth's case
    cp["Sequence"] = {"name": name, "imDir": "img1", "frameRate": str(fps), "seqLength": str(n),
                      "imWidth": str(size_hw[1]), "imHeight": str(size_hw[0]), "imExt": ".jpg"}
    with open(folder / "seqinfo.ini", "w", encoding="utf-8") as f:
        cp.write(f, space_around_delimiters=False)
    return folder
