"""Worn adversarial patches and their controls: a patch image pasted on each person's torso or each face.

Placement, shared with the trainer (:mod:`anonlab.attacks`) so that training and evaluation put the patch in the
same place: for a box ``(x1, y1, x2, y2)`` of width ``bw`` and height ``bh`` the patch is ``size * bw`` wide,
``size * bw * aspect`` high (``aspect`` = patch height / width), centred at ``(x1 + bw / 2, y1 + center_y * bh)``.
Defaults per ``target``: ``torso`` (person boxes) ``size=0.5, center_y=0.35`` (the chest) (for an upright pedestrian box,
w ~ 0.4 h, the patch side is ~0.2 h, the size Thys et al. 2019 used: 0.2 x the box diagonal); ``face`` (face boxes)
``size=0.8, center_y=0.72``, a mask over mouth and nose (train a wide patch, e.g. 150 x 300).

Pose noise (both the trainer's Expectation over Transformation and the defense's jitter): the patch rectangle is
scaled, shifted by a fraction of its size, rotated in-plane, its four corners moved independently (perspective),
and its colours get a brightness offset and a contrast factor about mid-grey. The patch is drawn into the frame
through the inverse homography of its corner quadrilateral (``grid_sample``, bilinear, from a mip level no more
than 2x finer than the target, so shrinking does not alias); each frame pixel inside a quad takes the patch colour,
where quads overlap the later box wins. All of it is batched torch, differentiable w.r.t. the patch (and the
frame), with no loop over boxes (one host sync per batch: the canvas size and the mip levels).

The defense's random numbers come from a counter-based hash of (seed, box coordinates): the same box gets the
same pose on CPU and CUDA, in any batch.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from anonlab._checks import check_choice, check_int, check_range
from anonlab._counter_rng import counter_uniform, hash32
from anonlab.defenses.base import DEFENSES, DefenseBase
from anonlab.types import Detections, Kind

TARGETS: dict[str, dict[str, float]] = {
    "torso": {"size": 0.5, "center_y": 0.35},
    "face": {"size": 0.8, "center_y": 0.72},
}
#: patches shipped with anonlab, usable by name as ``path`` (e.g. ``path=demo_yolox_nano``)
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "attacks" / "data"
#: columns of the uniform draws that :func:`pose_from_uniform` consumes
POSE_DIMS = 14
#: size of the noise/grey control patch when no ``path`` gives one
DEFAULT_PATCH_HW = (300, 300)
GREY = 128


# ---------------------------------------------------------------------------------------------- patch files


def resolve_patch_path(path: str | Path) -> Path:
    """A patch PNG on disk, or the name of a bundled patch (``demo_yolox_nano``); raises naming both."""
    p = Path(path).expanduser()
    if p.is_file():
        return p.resolve()
    bundled = BUNDLED_DIR / f"{path}.png"
    if p.suffix == "" and bundled.is_file():
        return bundled
    names = sorted(q.stem for q in BUNDLED_DIR.glob("*.png"))
    raise FileNotFoundError(f"patch file {str(path)!r} does not exist (expected an 8-bit RGB PNG, or a bundled "
                            f"patch name: {', '.join(names) or 'none'})")


def load_patch(path: str | Path) -> Tensor:
    """Read a patch image: ``uint8 (3, H, W)`` RGB on the CPU. Only 8-bit, 3-channel files are accepted: a grey,
    RGBA or 16-bit file raises ``ValueError`` naming the file, what it holds and what was expected."""
    import cv2

    p = resolve_patch_path(path)
    arr = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"patch file {p} could not be decoded as an image (expected an 8-bit RGB PNG)")
    shape = tuple(arr.shape)
    if arr.dtype.name != "uint8" or arr.ndim != 3 or shape[2] != 3:
        raise ValueError(f"patch file {p} holds a {arr.dtype.name} array of shape {shape}; expected an 8-bit RGB "
                         f"image: uint8 (H, W, 3)")
    if min(shape[:2]) < 2:
        raise ValueError(f"patch file {p} is {shape[0]} x {shape[1]} pixels; expected at least 2 x 2")
    return torch.from_numpy(arr[:, :, ::-1].copy()).permute(2, 0, 1).contiguous()


def save_patch(patch: Tensor, path: str | Path) -> Path:
    """Write ``patch`` (float (3, H, W) in [0, 1] or uint8) as an 8-bit RGB PNG; returns the path."""
    import cv2

    if patch.ndim != 3 or patch.shape[0] != 3:
        raise ValueError(f"patch must be (3, H, W), got {tuple(patch.shape)}")
    u8 = patch if patch.dtype == torch.uint8 else (patch.detach().float() * 255).round().clamp(0, 255).byte()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(p), u8.permute(1, 2, 0).cpu().numpy()[:, :, ::-1].copy()):
        raise OSError(f"could not write patch PNG {p}")
    return p


def noise_pattern(size_hw: tuple[int, int], seed: int = 0) -> Tensor:
    """uint8 (3, H, W) uniform random colours from a counter-based hash of (seed, pixel): device independent."""
    h, w = size_hw
    idx = torch.arange(3 * h * w, dtype=torch.int64)
    return (hash32(idx ^ hash32(torch.tensor(seed + 0x6A09E667))) & 0xFF).to(torch.uint8).view(3, h, w)


# ---------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class PoseRanges:
    """Ranges of the per-box pose noise, each a non-negative number (all zero: the patch sits exactly at its
    placement), drawn uniformly: jitter: centre shift up to +-jitter x the patch (w, h); scale: size factor in
    [1 - scale, 1 + scale]; rotation_deg: in-plane rotation up to +-rotation_deg; perspective: each corner moved up
    to +-perspective x the patch (w, h); brightness: offset up to +-brightness on [0, 1] colours; contrast: factor
    about mid-grey in [1 - contrast, 1 + contrast]. Scalars, so that a bench sweep can list values of each."""

    jitter: float = 0.0
    scale: float = 0.0
    rotation_deg: float = 0.0
    perspective: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self) -> None:
        for k, hi in (("jitter", 1.0), ("scale", 0.95), ("rotation_deg", 180.0), ("perspective", 0.45),
                      ("brightness", 1.0), ("contrast", 0.95)):
            object.__setattr__(self, k, check_range(k, getattr(self, k), 0, hi))


@dataclass(frozen=True)
class Pose:
    """Per-box pose of N patches: shift (N, 2) and corners (N, 4, 2) in fractions of the patch (w, h); scale,
    angle (radians), brightness, contrast (N,). Float32, one device."""

    shift: Tensor
    scale: Tensor
    angle: Tensor
    corners: Tensor
    brightness: Tensor
    contrast: Tensor


def pose_from_uniform(u: Tensor, r: PoseRanges) -> Pose:
    """Map uniform draws ``u (N, POSE_DIMS)`` in [0, 1) to a :class:`Pose` within the ranges ``r``."""
    s = 2 * u - 1  # symmetric in [-1, 1)
    return Pose(
        shift=s[:, 0:2] * r.jitter,
        scale=1 + s[:, 2] * r.scale,
        angle=s[:, 3] * math.radians(r.rotation_deg),
        corners=s[:, 4:12].reshape(-1, 4, 2) * r.perspective,
        brightness=s[:, 12] * r.brightness,
        contrast=1 + s[:, 13] * r.contrast,
    )


def identity_pose(n: int, device: torch.device | str = "cpu") -> Pose:
    return pose_from_uniform(torch.full((n, POSE_DIMS), 0.5, device=device), PoseRanges())


def box_uniforms(boxes: Tensor, seed: int, k: int = POSE_DIMS) -> Tensor:
    """(N, k) float32 uniforms in [0, 1) from a counter-based hash of (seed, box coordinates at 1/4 px): a box
    gets the same numbers whatever its batch, position in it, or device."""
    q = (boxes.detach() * 4).round().long()
    key = hash32(torch.full((q.shape[0],), seed, dtype=torch.int64, device=boxes.device) + 0x3C6EF372)
    for c in range(4):
        key = hash32(key ^ (q[:, c] & 0xFFFFFFFF))
    j = hash32(torch.arange(k, device=boxes.device) * 0x9E3779B1 + 0x510E527F)
    return counter_uniform(j[None, :], key[:, None]).float()


def placement_rects(boxes: Tensor, target: str, size: float, center_y: float, aspect: float) -> Tensor:
    """(N, 4) float32 patch rectangles ``cx, cy, w, h`` in pixels for xyxy ``boxes (N, 4)`` (see module doc)."""
    if target not in TARGETS:
        raise ValueError(f"unknown patch target {target!r}; valid: {', '.join(TARGETS)}")
    bw = (boxes[:, 2] - boxes[:, 0]).clamp(min=1)
    bh = (boxes[:, 3] - boxes[:, 1]).clamp(min=1)
    w = size * bw
    return torch.stack([boxes[:, 0] + bw / 2, boxes[:, 1] + center_y * bh, w, w * aspect], dim=1)


def patch_corners(rects: Tensor, pose: Pose) -> Tensor:
    """(N, 4, 2) frame corners (x, y) of each posed patch: top-left, top-right, bottom-right, bottom-left."""
    wh = rects[:, 2:] * pose.scale[:, None]  # (N, 2)
    unit = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], device=rects.device)
    local = (unit[None] + pose.corners) * wh[:, None, :]  # (N, 4, 2), patch-aligned pixels about the centre
    cos, sin = pose.angle.cos()[:, None], pose.angle.sin()[:, None]
    rot = torch.stack([local[..., 0] * cos - local[..., 1] * sin, local[..., 0] * sin + local[..., 1] * cos], -1)
    centre = rects[:, None, :2] + pose.shift[:, None, :] * wh[:, None, :]
    return rot + centre


def frame_to_unit_homography(corners: Tensor) -> Tensor:
    """(N, 3, 3) homographies mapping frame points to patch coordinates in [0, 1]^2 (the unit square's corners
    TL, TR, BR, BL map from ``corners (N, 4, 2)``). Solved in float64 (direct linear transform)."""
    src = corners.double()
    dst = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64, device=corners.device)
    dst = dst.expand(src.shape[0], 4, 2)
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (N, 8, 8)
    b = torch.cat([u, v], dim=1)  # (N, 8)
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones_like(h[:, :1])], dim=1).view(-1, 3, 3)


def _pyramid(patch: Tensor, levels: int) -> list[Tensor]:
    """[patch, patch / 2, ...] (levels + 1 entries) of float (1, 3, H, W), antialiased halving."""
    out = [patch]
    for _ in range(levels):
        h, w = out[-1].shape[-2:]
        out.append(F.interpolate(out[-1], size=(max(1, -(-h // 2)), max(1, -(-w // 2))), mode="bilinear",
                                 align_corners=False, antialias=True))
    return out


@dataclass(frozen=True)
class Canvases:
    """N patch renderings, each in its own window of the frame: colour (N, 3, hc, wc) float, inside (N, hc, wc)
    bool (pixel centre within the quad), origin (N, 2) int64 frame (x, y) of the window's top-left pixel."""

    colour: Tensor
    inside: Tensor
    origin: Tensor


def render_canvases(patch: Tensor, corners: Tensor) -> Canvases:
    """Warp ``patch`` (float (3, Ph, Pw) in [0, 1]) onto each quad ``corners (N, 4, 2)``; differentiable w.r.t.
    ``patch``. Each box samples the mip level that is at most 2x finer than its quad (bilinear in it)."""
    n, dev = corners.shape[0], corners.device
    lo = corners.amin(1).floor()
    hi = corners.amax(1).ceil()
    extent = (hi - lo).clamp(min=1)
    ph, pw = patch.shape[-2:]
    quad_w = (corners[:, 1] - corners[:, 0]).norm(dim=-1).clamp(min=1)
    quad_h = (corners[:, 3] - corners[:, 0]).norm(dim=-1).clamp(min=1)
    ratio = torch.minimum(pw / quad_w, ph / quad_h)
    level = torch.log2(ratio.clamp(min=1)).floor().long()
    sizes = torch.cat([extent.amax(0), level.float()]).tolist()  # the one host sync
    wc, hc, levels = int(sizes[0]), int(sizes[1]), [int(v) for v in sizes[2:]]
    pyr = _pyramid(patch[None], max(levels) if levels else 0)
    hinv = frame_to_unit_homography(corners).float()
    ys = torch.arange(hc, device=dev, dtype=torch.float32) + 0.5
    xs = torch.arange(wc, device=dev, dtype=torch.float32) + 0.5
    px = lo[:, 0, None, None] + xs[None, None, :]  # (N, 1, wc)
    py = lo[:, 1, None, None] + ys[None, :, None]  # (N, hc, 1)
    den = hinv[:, 2, 0, None, None] * px + hinv[:, 2, 1, None, None] * py + hinv[:, 2, 2, None, None]
    u = (hinv[:, 0, 0, None, None] * px + hinv[:, 0, 1, None, None] * py + hinv[:, 0, 2, None, None]) / den
    v = (hinv[:, 1, 0, None, None] * px + hinv[:, 1, 1, None, None] * py + hinv[:, 1, 2, None, None]) / den
    centre = corners.mean(1)  # points on the quad's side of the horizon line share the sign of den at its centre
    den_c = hinv[:, 2, 0] * centre[:, 0] + hinv[:, 2, 1] * centre[:, 1] + hinv[:, 2, 2]
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1) & (den * den_c[:, None, None] > 0)
    grid = torch.stack([u * 2 - 1, v * 2 - 1], dim=-1)  # (N, hc, wc, 2), align_corners=False convention
    distinct = sorted(set(levels))
    if len(distinct) == 1:
        colour = F.grid_sample(pyr[distinct[0]].expand(n, -1, -1, -1), grid, mode="bilinear",
                               padding_mode="border", align_corners=False)
    else:
        colour = patch.new_zeros(n, 3, hc, wc)
        for lv in distinct:  # a few mip levels, never a loop over boxes
            sel = (level == lv).nonzero().squeeze(1)
            src = pyr[lv].expand(sel.shape[0], -1, -1, -1)
            colour = colour.index_copy(0, sel, F.grid_sample(src, grid[sel], mode="bilinear",
                                                             padding_mode="border", align_corners=False))
    return Canvases(colour, inside, lo.long())


def adjust_colour(colour: Tensor, pose: Pose) -> Tensor:
    """Contrast about mid-grey, then brightness, clipped to [0, 1]: ``(c - 0.5) * contrast + 0.5 + brightness``."""
    c = pose.contrast.view(-1, 1, 1, 1).to(colour)
    b = pose.brightness.view(-1, 1, 1, 1).to(colour)
    return ((colour - 0.5) * c + 0.5 + b).clamp(0, 1)


def composite(frames: Tensor, canvases: Tensor, inside: Tensor, origin: Tensor, batch_idx: Tensor) -> Tensor:
    """A new (B, 3, H, W) tensor: each frame pixel inside a canvas quad takes that canvas's colour (the highest box
    index wins where quads overlap), every other pixel is ``frames``' own. ``canvases`` is cast to ``frames``'
    dtype; differentiable w.r.t. both for float frames. Works on the window that holds the canvases (one sync)."""
    b, c, h, w = frames.shape
    n, _, hc, wc = canvases.shape
    out = frames.clone()
    if n == 0:
        return out
    lo = origin.amin(0)
    hi = origin.amax(0) + torch.tensor([wc, hc], device=origin.device)
    x1, y1, x2, y2 = (int(v) for v in torch.cat([lo, hi]).tolist())
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x1 >= x2 or y1 >= y2:
        return out
    wh, ww = y2 - y1, x2 - x1
    dev = frames.device
    fy = origin[:, 1, None, None] - y1 + torch.arange(hc, device=dev)[None, :, None]  # (N, hc, 1), window rows
    fx = origin[:, 0, None, None] - x1 + torch.arange(wc, device=dev)[None, None, :]  # (N, 1, wc)
    valid = inside & (fy >= 0) & (fy < wh) & (fx >= 0) & (fx < ww)
    flat = (batch_idx[:, None, None] * wh + fy.clamp(0, wh - 1)) * ww + fx.clamp(0, ww - 1)
    cid = torch.arange(n * hc * wc, device=dev).view(n, hc, wc)
    owner = torch.full((b * wh * ww,), -1, dtype=torch.int64, device=dev)
    owner.scatter_reduce_(0, torch.where(valid, flat, 0).reshape(-1), torch.where(valid, cid, -1).reshape(-1),
                          reduce="amax")
    win = frames[:, :, y1:y2, x1:x2]
    pix = win.permute(0, 2, 3, 1).reshape(-1, c)
    src = canvases.to(frames.dtype).permute(0, 2, 3, 1).reshape(-1, c)
    pasted = torch.where((owner >= 0)[:, None], src[owner.clamp(min=0)], pix)
    out[:, :, y1:y2, x1:x2] = pasted.view(b, wh, ww, c).permute(0, 3, 1, 2)
    return out


def paste_patch(frames: Tensor, patch: Tensor, boxes: Tensor, batch_idx: Tensor, target: str, size: float,
                center_y: float, pose: Pose, effect: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """A new tensor: ``frames`` with ``patch`` pasted on each box. The one paste path of the patch defense,
    :func:`apply_patch` and the trainer (:meth:`anonlab.attacks.PatchTrainer.render`).

    ``frames`` (B, 3, H, W): float in [0, 1] (differentiable w.r.t. ``patch`` and ``frames``) or uint8 (the
    rendered colours are rounded to 0..255 first). ``patch`` float (3, Ph, Pw) in [0, 1]; ``boxes (N, 4)`` float
    xyxy pixels with ``batch_idx (N,)``; placement ``target``/``size``/``center_y`` (module doc); ``pose`` per box;
    ``effect``: applied to the posed colours (N, 3, hc, wc) before compositing (the trainer's photometric EOT).
    """
    if boxes.shape[0] == 0:
        return frames.clone()
    aspect = patch.shape[-2] / patch.shape[-1]
    rects = placement_rects(boxes, target, size, center_y, aspect)
    cv = render_canvases(patch, patch_corners(rects, pose))
    colour = adjust_colour(cv.colour, pose)
    if effect is not None:
        colour = effect(colour)
    if frames.dtype == torch.uint8:
        colour = (colour * 255.0).round().clamp(0, 255).to(torch.uint8)
    return composite(frames, colour, cv.inside, cv.origin, batch_idx)


def apply_patch(frames: Tensor, patch: Tensor, boxes: Tensor, batch_idx: Tensor, target: str = "torso",
                size: float | None = None, center_y: float | None = None, pose: Pose | None = None) -> Tensor:
    """Paste ``patch`` (float (3, Ph, Pw) in [0, 1]) on each box of float ``frames`` (B, 3, H, W) in [0, 1].

    ``boxes (N, 4)`` float xyxy pixels with ``batch_idx (N,)``; placement per ``target`` (``size``, ``center_y``
    default to the target's); ``pose`` per box (None: exact placement). Differentiable w.r.t. ``patch``."""
    d = TARGETS.get(target)
    if d is None:
        raise ValueError(f"unknown patch target {target!r}; valid: {', '.join(TARGETS)}")
    n = boxes.shape[0]
    if n == 0:
        return frames.clone()
    return paste_patch(frames, patch.to(frames.dtype), boxes.float(), batch_idx, target,
                       d["size"] if size is None else size, d["center_y"] if center_y is None else center_y,
                       pose or identity_pose(n, frames.device))


# ---------------------------------------------------------------------------------------------- defenses


class PatchDefenseBase(DefenseBase):
    """A patch pasted on every region box (``target`` torso: person boxes, ``regions.target=person``; face: face
    boxes), with seeded pose noise per box (ranges as in :class:`PoseRanges`). Subclasses choose the pixels."""

    #: worn in the scene: the engine pastes it on the input frame's annotated boxes, before the camera records
    worn: ClassVar[bool] = True
    #: the object kind each placement ``target`` sits on (a torso patch on persons, a mouth-and-nose mask on faces)
    TARGET_KIND: ClassVar[dict[str, Kind]] = {"torso": "person", "face": "face"}

    def worn_on(self) -> Kind:
        return self.TARGET_KIND[self.target]
    #: the patch is placed relative to its box and may reach beyond it (size up to 4 box widths, pose noise)
    outside_changes: ClassVar[bool] = True

    def __init__(self, path: str | None = None, target: str = "torso", size: float | None = None,
                 center_y: float | None = None, jitter: float = 0.0, scale: float = 0.0, rotation_deg: float = 0.0,
                 perspective: float = 0.0, brightness: float = 0.0, contrast: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        check_choice("target", target, TARGETS, where=self.name)
        d = TARGETS[target]
        size = d["size"] if size is None else size
        center_y = d["center_y"] if center_y is None else center_y
        check_range("size", size, 0, 4, lo_open=True, where=self.name,
                    note="the patch width as a fraction of the box width")
        check_range("center_y", center_y, 0, 1, where=self.name, note="fraction of the box height")
        check_int("seed", seed, 0, where=self.name)
        try:
            self.ranges = PoseRanges(jitter, scale, rotation_deg, perspective, brightness, contrast)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{self.name}: {e}") from None
        self.path = None if path is None else str(path)
        self.target, self.size, self.center_y, self.seed = target, float(size), float(center_y), seed
        for k, v in asdict(self.ranges).items():
            setattr(self, k, v)
        self.register_buffer("pattern", self.make_pattern(), persistent=False)

    def make_pattern(self) -> Tensor:  # pragma: no cover - abstract
        """The patch pixels, uint8 (3, Ph, Pw) RGB."""
        raise NotImplementedError

    def forward(self, images: Tensor, dets: Detections) -> Tensor:
        self.check_inputs(images, dets)
        if len(dets) == 0:
            return images.clone()
        boxes = dets.boxes
        pose = pose_from_uniform(box_uniforms(boxes, self.seed), self.ranges)
        patch = self.pattern.to(images.device).float() / 255.0
        return paste_patch(images, patch, boxes, dets.batch_idx, self.target, self.size, self.center_y, pose)

    def params(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in inspect.signature(PatchDefenseBase.__init__).parameters if k != "self"}
        if out["path"] is None:
            del out["path"]
        return out

    def label(self) -> str:
        """``patch(path=<stem>)`` plus the placement/pose parameters that differ from their defaults."""
        d = {**{k: p.default for k, p in inspect.signature(PatchDefenseBase.__init__).parameters.items()},
             **TARGETS[self.target]}
        parts = [f"path={Path(self.path).stem}"] if self.path else []
        for k, v in self.params().items():
            if k in ("path", "sha256") or v == d[k]:
                continue
            parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
        return f"{self.name}({','.join(parts)})" if parts else self.name

    def placement(self) -> dict[str, Any]:
        """The constructor arguments (path, placement, pose ranges, seed): for controls placed alike."""
        p = self.params()
        p.pop("sha256", None)
        return p


@DEFENSES.register("patch")
class PatchDefense(PatchDefenseBase):
    """A trained patch from ``path`` (an 8-bit RGB PNG, e.g. from ``anonlab patch train``, or a bundled name)."""

    def __init__(self, path: str = "demo_yolox_nano", **placement: Any) -> None:
        if not path:
            raise ValueError("patch: path is required (an 8-bit RGB PNG from `anonlab patch train`)")
        self._file = resolve_patch_path(path)
        super().__init__(path=str(path), **placement)
        self.sha256 = hashlib.sha256(self._file.read_bytes()).hexdigest()[:16]

    def make_pattern(self) -> Tensor:
        return load_patch(self._file)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "sha256": getattr(self, "sha256", None)}

    def controls(self) -> list[PatchDefenseBase]:
        """The noise and grey patches of the same size (aspect) and placement."""
        return [NoisePatch(**self.placement()), GreyPatch(**self.placement())]


@DEFENSES.register("noise_patch")
class NoisePatch(PatchDefenseBase):
    """Control: a uniform random-colour patch (fixed by ``seed``), the size of ``path``'s patch (300 x 300 if none)."""

    def make_pattern(self) -> Tensor:
        hw = DEFAULT_PATCH_HW if self.path is None else tuple(load_patch(self.path).shape[-2:])
        return noise_pattern(hw, self.seed)


@DEFENSES.register("grey_patch")
class GreyPatch(PatchDefenseBase):
    """Control: a uniform mid-grey (128) patch, the size of ``path``'s patch (300 x 300 if none)."""

    def make_pattern(self) -> Tensor:
        hw = DEFAULT_PATCH_HW if self.path is None else tuple(load_patch(self.path).shape[-2:])
        return torch.full((3, *hw), GREY, dtype=torch.uint8)
