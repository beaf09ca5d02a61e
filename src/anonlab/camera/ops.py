"""Pure batched camera functions: geometry, optics, sensor, encoding.

Two kinds of function live here:

* float paths, ``x: float (B, C, H, W)`` in [0, 1] (RGB, or linear light where named so) -> float, built from
  differentiable torch ops so gradients flow back to ``x`` (resize, blur, exposure, gamma, IR mix, sensor noise
  with the Gaussian shot-noise approximation);
* uint8 wrappers, ``uint8 (B, 3, H, W)`` RGB in, a new ``uint8 (B, 3, H, W)`` out (float32 inside, rounded and
  clipped on exit), and the lossy codecs (JPEG through torchvision, H.264/H.265 through PyAV), which are not
  differentiable and exist for evaluation only.

Nothing modifies its input. CPU and CUDA run the same float32 arithmetic; the noise comes from a counter-based
hash (a value depends only on (key, position)), so CPU and CUDA draw the same noise field. JPEG uses libjpeg on
CPU and nvJPEG on CUDA: those differ by a few grey levels.

Camera geometry (pinhole, fronto-parallel face). A camera of horizontal field of view ``hfov`` on a sensor
``W`` pixels wide has focal length ``f_px = (W / 2) / tan(hfov / 2)`` pixels. A face of height ``face_height_m``
(chin to crown, ~0.22 m for an adult) whose centre lies ``d`` metres from the camera along the optical axis
images to ``face_px = f_px * face_height_m / d`` pixels; the image scale at the subject is ``f_px / d``
pixels per metre. A camera mounted ``mount_height_m`` above the ground, looking at a face ``subject_height_m``
high (1.6 m) at horizontal distance ``D``, with the optical axis tilted down by ``tilt``, has
``d = D cos(tilt) + (mount_height_m - subject_height_m) sin(tilt)``; aimed at the face (``tilt`` = None),
``d = sqrt(D^2 + dh^2)``. Foreshortening of the face seen from above and lens distortion are ignored.
"""

from __future__ import annotations

import io
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from anonlab._checks import check_int, check_positive, check_range
from anonlab._counter_rng import counter_normal, counter_uniform, hash32
from anonlab.filters import filter2d
from anonlab.types import check_images

#: resolution presets, (H, W)
RESOLUTIONS: dict[str, tuple[int, int]] = {
    "D1": (576, 704),
    "720p": (720, 1280),
    "1080p": (1080, 1920),
    "4MP": (1440, 2560),
}
#: sRGB-like display gamma used to go from pixel values to linear light and back
DISPLAY_GAMMA = 2.2
#: IR night mode: near-infrared reflectance of skin and fabric follows the red channel most closely
IR_WEIGHTS = (0.6, 0.3, 0.1)
VIDEO_CODECS = {"h264": "libx264", "h265": "libx265"}


def check_float_images(x: Tensor) -> None:
    if not x.is_floating_point() or x.ndim != 4:
        raise ValueError(f"x must be a float (B, C, H, W) tensor in [0, 1], got {x.dtype} {tuple(x.shape)}")


def to_float(images: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]."""
    check_images(images)
    return images.float() / 255.0


def to_uint8(x: Tensor) -> Tensor:
    """float in [0, 1] -> uint8, rounded and clipped."""
    return (x.detach() * 255.0).round().clamp_(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------- geometry


def resolution_hw(name: str) -> tuple[int, int]:
    """(H, W) of a resolution preset; raises ``ValueError`` naming the valid presets."""
    if name not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {name!r}; valid: {', '.join(RESOLUTIONS)}")
    return RESOLUTIONS[name]


def focal_px(width_px: int, hfov_deg: float) -> float:
    """Pinhole focal length in pixels of a sensor ``width_px`` wide with horizontal field of view ``hfov_deg``."""
    check_range("hfov_deg", hfov_deg, 0, 180, lo_open=True, hi_open=True, note="degrees")
    return (width_px / 2) / math.tan(math.radians(hfov_deg) / 2)


def axis_distance(distance_m: float, mount_height_m: float, subject_height_m: float = 1.6,
                  tilt_deg: float | None = None) -> float:
    """Distance (m) from the camera to the subject's face along the optical axis (see module docstring).

    ``distance_m``: horizontal distance; ``tilt_deg``: downward tilt of the axis, None = aimed at the face."""
    check_positive("distance_m", distance_m, note="metres")
    dh = mount_height_m - subject_height_m
    if tilt_deg is None:
        return math.hypot(distance_m, dh)
    t = math.radians(tilt_deg)
    d = distance_m * math.cos(t) + dh * math.sin(t)
    if not d > 0:
        raise ValueError(f"the face is behind the camera (axis distance {d:.3f} m) at tilt_deg={tilt_deg}")
    return d


def face_pixel_height(f_px: float, face_height_m: float, axis_distance_m: float) -> float:
    """Pinhole projection: ``f_px * face_height_m / axis_distance_m`` pixels."""
    return f_px * face_height_m / axis_distance_m


def scaled_size(size_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """(round(H * scale), round(W * scale)), at least 1 x 1."""
    h, w = size_hw
    return max(1, round(h * scale)), max(1, round(w * scale))


def fit_scale(size_hw: tuple[int, int], target_hw: tuple[int, int]) -> float:
    """Largest scale at which an image of ``size_hw`` fits inside ``target_hw`` (aspect kept)."""
    return min(target_hw[0] / size_hw[0], target_hw[1] / size_hw[1])


def resize_float(x: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Bilinear resize of float (B, C, H, W), antialiased when shrinking (pixel areas map exactly:
    ``align_corners=False``, so the pixel edge ``x`` of the input lands on ``x * W_out / W``)."""
    check_float_images(x)
    if tuple(x.shape[-2:]) == tuple(size_hw):
        return x
    if x.shape[0] == 0:
        return x.new_zeros(0, x.shape[1], *size_hw)
    return F.interpolate(x, size=tuple(size_hw), mode="bilinear", align_corners=False, antialias=True)


def resize(images: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """uint8 twin of :func:`resize_float`."""
    check_images(images)
    if tuple(images.shape[-2:]) == tuple(size_hw):
        return images.clone()
    return to_uint8(resize_float(to_float(images), size_hw))


def scale_boxes(boxes: Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Tensor:
    """Map float xyxy pixel boxes ``(N, 4)`` of an ``in_hw`` image to the same scene in an ``out_hw`` resize."""
    sx, sy = out_hw[1] / in_hw[1], out_hw[0] / in_hw[0]
    return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)


# ---------------------------------------------------------------------------------------------- optics


def motion_length_px(speed_mps: float, shutter_s: float, px_per_m: float) -> float:
    """Blur streak length in pixels: the subject moves ``speed * shutter`` metres while the shutter is open,
    ``px_per_m`` pixels per metre at the subject (``f_px / axis_distance``)."""
    if speed_mps < 0 or shutter_s < 0 or px_per_m < 0:
        raise ValueError(f"speed_mps, shutter_s, px_per_m must be >= 0, got {speed_mps}, {shutter_s}, {px_per_m}")
    return speed_mps * shutter_s * px_per_m


def motion_kernel(length_px: float, angle_deg: float = 0.0, device: torch.device | str = "cpu") -> Tensor:
    """(k, k) float32 kernel summing to 1: a line segment ``length_px`` long through the centre at
    ``angle_deg`` (0 = horizontal motion, counter-clockwise), drawn with sub-pixel bilinear splatting.
    ``length_px`` <= 0 gives the 1 x 1 identity."""
    check_range("length_px", length_px, 0)
    if length_px == 0:
        return torch.ones(1, 1, device=device)
    r = math.ceil(length_px / 2) + 1
    k = 2 * r + 1
    n = max(2, math.ceil(length_px * 8) + 1)
    t = torch.linspace(-length_px / 2, length_px / 2, n, dtype=torch.float64, device=device)
    a = math.radians(angle_deg)
    xs, ys = r + t * math.cos(a), r - t * math.sin(a)
    x0, y0 = xs.floor(), ys.floor()
    fx, fy = xs - x0, ys - y0
    ker = torch.zeros(k * k, dtype=torch.float64, device=device)
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        ker.index_add_(0, ((y0 + dy) * k + (x0 + dx)).long(), wgt)
    ker = ker.view(k, k)
    return (ker / ker.sum()).float()


def disk_kernel(radius_px: float, device: torch.device | str = "cpu", supersample: int = 16) -> Tensor:
    """(k, k) float32 defocus kernel summing to 1: each tap is the share of its pixel covered by a disk of
    ``radius_px`` (estimated on a ``supersample`` x ``supersample`` sub-grid). ``radius_px`` <= 0: identity."""
    check_range("radius_px", radius_px, 0)
    if radius_px == 0:
        return torch.ones(1, 1, device=device)
    r = math.ceil(radius_px)
    k = 2 * r + 1
    s = supersample
    sub = (torch.arange(k * s, dtype=torch.float64, device=device) + 0.5) / s - (r + 0.5)
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2 <= radius_px**2).double()
    ker = inside.view(k, s, k, s).mean(dim=(1, 3))
    return (ker / ker.sum()).float()


def motion_blur_float(x: Tensor, length_px: float, angle_deg: float = 0.0) -> Tensor:
    return filter2d(x, motion_kernel(length_px, angle_deg, x.device))


def defocus_blur_float(x: Tensor, radius_px: float) -> Tensor:
    return filter2d(x, disk_kernel(radius_px, x.device))


def motion_blur(images: Tensor, length_px: float, angle_deg: float = 0.0) -> Tensor:
    """uint8 twin of :func:`motion_blur_float`."""
    return to_uint8(motion_blur_float(to_float(images), length_px, angle_deg))


def defocus_blur(images: Tensor, radius_px: float) -> Tensor:
    """uint8 twin of :func:`defocus_blur_float`."""
    return to_uint8(defocus_blur_float(to_float(images), radius_px))


# ---------------------------------------------------------------------------------------------- randomness

_M32 = 0xFFFFFFFF


def frame_keys(images: Tensor, seed: int) -> Tensor:
    """(B,) int64 noise stream per frame from ``seed`` and the frame's content (an order-independent hash of
    every pixel value at its position): a frame gets the same noise whatever its batch, position in it, or
    device, and different frames get independent noise."""
    check_images(images)
    b = images.shape[0]
    flat = images.reshape(b, -1)
    weights = (torch.arange(flat.shape[1], device=images.device, dtype=torch.int64) * 0x9E3779B1 + 1) & 0xFFFFFF
    digest = (flat.long() * weights).sum(dim=1)  # < 2**56 for a 4K frame: exact in int64
    seed_t = torch.full((b,), seed, dtype=torch.int64, device=images.device)
    return hash32(hash32(digest & _M32) ^ hash32(digest >> 32) ^ hash32(seed_t + 0x2545F491))


def index_keys(batch: int, seed: int, device: torch.device | str = "cpu") -> Tensor:
    """(B,) int64 noise streams for frames 0..B-1 of a float batch (no content hash: used by the float path)."""
    i = torch.arange(batch, dtype=torch.int64, device=device)
    return hash32(hash32(i + 0x51ED27) ^ hash32(torch.full_like(i, seed)))


# ---------------------------------------------------------------------------------------------- sensor


def to_linear(x: Tensor, gamma: float = DISPLAY_GAMMA) -> Tensor:
    """Pixel values in [0, 1] -> linear light ``x ** gamma``."""
    return x.clamp(0, 1) ** gamma


def to_display(lin: Tensor, gamma: float = DISPLAY_GAMMA, contrast: float = 1.0) -> Tensor:
    """Linear light -> pixel values: ``lin ** (1 / gamma)``, then contrast about mid-grey, clipped to [0, 1]."""
    y = lin.clamp(1e-6, 1) ** (1.0 / gamma)
    if contrast != 1.0:
        y = (y - 0.5) * contrast + 0.5
    return y.clamp(0, 1)


def ir_mix(x: Tensor, weights: tuple[float, float, float] = IR_WEIGHTS) -> Tensor:
    """IR night mode: a grey (B, 3, H, W) image, each channel ``sum_c weights[c] * x[:, c]`` (the IR-cut
    filter is out and every photosite sees near-infrared; weights are normalized to sum 1)."""
    wt = torch.tensor(weights, dtype=x.dtype, device=x.device)
    wt = wt / wt.sum()
    return (x * wt.view(1, 3, 1, 1)).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)


def _noise_index(x: Tensor, stream: int) -> Tensor:
    _, c, h, w = x.shape
    return torch.arange(c * h * w, device=x.device, dtype=torch.int64).view(1, c, h, w) * 4 + stream


def sensor_noise_float(lin: Tensor, keys: Tensor, photons_at_white: float | None, read_sigma: float) -> Tensor:
    """Poisson-Gaussian sensor noise on linear light ``lin`` (B, C, H, W) in [0, 1], Gaussian approximation.

    A pixel at level ``lin`` collects ``lin * photons_at_white`` photo-electrons; shot noise has variance
    ``lin / photons_at_white`` (in units of white), read noise a fixed ``read_sigma`` grey levels (of 255):
    ``out = lin + sqrt(lin / P) * z1 + read_sigma / 255 * z2`` with z from :func:`counter_normal` keyed by
    ``keys`` (B,). The noise scale is treated as a constant in the backward pass (gradient 1 w.r.t. ``lin``).
    ``photons_at_white`` None: no shot noise. Not clipped."""
    check_float_images(lin)
    k = keys.view(-1, 1, 1, 1)
    out = lin
    if photons_at_white is not None:
        std = (lin.detach().clamp(min=0) / photons_at_white).sqrt()
        out = out + std * counter_normal(_noise_index(lin, 0), k).to(lin)
    if read_sigma > 0:
        out = out + (read_sigma / 255.0) * counter_normal(_noise_index(lin, 1), k).to(lin)
    return out


#: below this mean photon count :func:`poisson_counts` samples the exact Poisson law (inverse CDF); above it,
#: the rounded normal law N(lam, lam) (skewness of the true law there < 0.29; same mean and variance)
POISSON_EXACT_MAX = 12.0


def poisson_counts(lam: Tensor, keys: Tensor, lam_max: float | None = None, stream: int = 2) -> Tensor:
    """Poisson(lam) samples (float32, same shape as ``lam`` (B, C, H, W)), counter-based: exact inverse-CDF
    sampling where ``lam <= POISSON_EXACT_MAX``, ``round(lam + sqrt(lam) z)`` above. ``lam_max``: a known upper
    bound of ``lam`` (e.g. ``exposure * photons_at_white``) that shortens the CDF walk; no host sync. Same
    values on CPU and CUDA (float32 CDF). Not differentiable."""
    k = keys.view(-1, 1, 1, 1)
    idx = _noise_index(lam, stream)
    lam = lam.detach().float().clamp(min=0)
    top = POISSON_EXACT_MAX if lam_max is None else min(POISSON_EXACT_MAX, float(lam_max))
    kmax = math.ceil(top + 6 * math.sqrt(top) + 6)  # P(N > kmax) < 1e-7 for lam <= top
    u = counter_uniform(idx, k).float()
    small = lam <= POISSON_EXACT_MAX
    subset = lam.device.type == "cpu"  # on the host, walk only the dim pixels (a gather costs no device sync)
    lam_w, u_w = (lam[small], u[small]) if subset else (lam, u)
    p = torch.exp(-lam_w)
    cdf = p.clone()
    n = torch.zeros_like(lam_w)
    above = torch.empty_like(lam_w, dtype=torch.bool)
    for j in range(1, kmax + 1):  # walk the CDF over count values, vectorized over pixels
        torch.gt(u_w, cdf, out=above)
        n.add_(above)
        if subset and j % 4 == 0 and not above.any():  # on the host this check is free
            break
        p.mul_(lam_w).mul_(1.0 / j)
        cdf.add_(p)
    if lam_max is not None and lam_max <= POISSON_EXACT_MAX and not subset:
        return n
    normal = (lam + lam.sqrt() * counter_normal(idx, k)).round().clamp(min=0)
    if subset:
        normal[small] = n
        return normal
    return torch.where(small, n, normal)


def sensor_noise(lin: Tensor, keys: Tensor, photons_at_white: float | None, read_sigma: float,
                 lin_max: float = 1.0) -> Tensor:
    """Exact Poisson-Gaussian noise on linear light (float (B, C, H, W) in [0, 1]; not differentiable):
    ``Poisson(lin * P) / P + read_sigma / 255 * z``. Its mean-variance law is that of
    :func:`sensor_noise_float`: ``var = lin / P + (read_sigma / 255) ** 2``. ``lin_max``: upper bound of
    ``lin`` (the exposure), which bounds the photon counts and so the cost of the exact sampler."""
    check_float_images(lin)
    out = lin
    if photons_at_white is not None:
        out = poisson_counts(lin * photons_at_white, keys, lin_max * photons_at_white).to(lin) / photons_at_white
    if read_sigma > 0:
        out = out + (read_sigma / 255.0) * counter_normal(_noise_index(lin, 1), keys.view(-1, 1, 1, 1)).to(lin)
    return out


def low_light_float(x: Tensor, keys: Tensor, exposure: float = 1.0, gain: float | None = None,
                    photons_at_white: float | None = None, read_sigma: float = 0.0, gamma: float = DISPLAY_GAMMA,
                    contrast: float = 1.0, ir: bool = False, exact: bool = False) -> Tensor:
    """The sensor: pixel values -> linear light (display gamma 2.2) -> optional IR mix -> ``* exposure``
    (the share of the reference light that reaches the sensor) -> Poisson-Gaussian noise -> ``* gain``
    (default ``1 / exposure``: auto-gain restores the brightness, and amplifies the noise) -> encode with
    ``gamma`` and ``contrast``. ``exact``: exact Poisson (not differentiable) instead of the Gaussian law."""
    lin = to_linear(x)
    if ir:
        lin = ir_mix(lin)
    lin = lin * exposure
    if photons_at_white is not None or read_sigma > 0:
        if exact:
            def noise(t: Tensor) -> Tensor:
                return sensor_noise(t, keys, photons_at_white, read_sigma, lin_max=exposure)
        else:
            def noise(t: Tensor) -> Tensor:
                return sensor_noise_float(t, keys, photons_at_white, read_sigma)
        # IR: one mono sensor signal, replicated to the three channels
        lin = noise(lin[:, :1]).expand(-1, 3, -1, -1) if ir else noise(lin)
    lin = lin * (1.0 / exposure if gain is None else gain)
    return to_display(lin, gamma, contrast)


# ---------------------------------------------------------------------------------------------- codecs


def check_quality(quality: int) -> None:
    """Raise ``ValueError`` unless ``quality`` is a JPEG quality, an integer in [1, 100]."""
    check_int("JPEG quality", quality, 1, 100)


def check_crf(crf: int) -> None:
    """Raise ``ValueError`` unless ``crf`` is an x264/x265 constant rate factor, an integer in [0, 51]."""
    check_int("CRF", crf, 0, 51)


def jpeg(images: Tensor, quality: int) -> Tensor:
    """JPEG encode + decode each frame at ``quality`` (1..100; torchvision: libjpeg on CPU, nvJPEG on CUDA).
    uint8 (B, 3, H, W) in and out, same device."""
    check_images(images)
    check_quality(quality)
    if images.shape[0] == 0:
        return images.clone()
    from torchvision.io import decode_jpeg, encode_jpeg

    frames = list(images.contiguous())
    data = encode_jpeg(frames, quality=quality)
    out = decode_jpeg(data, device=images.device)
    return torch.stack(out).to(images.device)


def video_roundtrip(images: Tensor, codec: str = "h264", crf: int = 28, clip: bool = False,
                    preset: str = "medium", fps: int = 25) -> Tensor:
    """Encode frames with libx264/libx265 at ``crf`` (yuv420p, frames padded to even size by edge replication)
    and decode them back, through PyAV in memory. ``clip``: the batch is one clip (P/B frames predicted from
    their neighbours: for consecutive video frames); otherwise each frame is its own one-frame clip, so a
    frame's result does not depend on its batch. uint8 (B, 3, H, W) in and out, same device. Evaluation only."""
    check_images(images)
    check_crf(crf)
    if codec not in VIDEO_CODECS:
        raise ValueError(f"unknown video codec {codec!r}; valid: {', '.join(VIDEO_CODECS)}")
    b, _, h, w = images.shape
    if b == 0:
        return images.clone()
    ph, pw = h + h % 2, w + w % 2
    host = F.pad(images.float(), (0, pw - w, 0, ph - h), mode="replicate").to(torch.uint8) if (ph, pw) != (h, w) \
        else images
    frames = host.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    groups = [frames] if clip else [frames[i : i + 1] for i in range(b)]
    decoded = []
    for g in groups:
        decoded.extend(_encode_decode(g, VIDEO_CODECS[codec], crf, preset, fps))
    if len(decoded) != b:
        raise RuntimeError(f"{codec} round trip returned {len(decoded)} frames for {b}")
    import numpy as np

    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2)[:, :, :h, :w]
    return out.contiguous().to(images.device)


def _encode_decode(frames, encoder: str, crf: int, preset: str, fps: int) -> list:
    import av

    from anonlab.io.video import VIDEO_ENCODERS, VideoWriter

    codec = {v: k for k, v in VIDEO_ENCODERS.items()}[encoder]
    buf = io.BytesIO()
    _, h, w, _ = frames.shape
    with VideoWriter(buf, (h, w), fps, format="matroska", codec=codec, crf=crf, preset=preset) as out:
        for f in frames:
            out.write(f)
    buf.seek(0)
    with av.open(buf, "r") as inp:
        return [fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)]
