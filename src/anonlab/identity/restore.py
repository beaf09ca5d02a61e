"""The restoring attacker's first step: undo what a redaction lets be undone before the face is matched.

An attacker who knows the defense and its strength (a tool's published default, or read off the image) can
invert part of it:

- ``gaussian_blur`` (``sigma`` px, or ``sigma_rel`` x box height): deconvolution with the defense's own point
  spread function, scikit-image's Richardson–Lucy (default) or Wiener filter;
- ``pixelate`` (``blocks`` or ``block_px``): the block grid holds one mean colour per block; it is read back
  and upscaled bicubically to the region, so the staircase becomes a smooth face;
- ``solid``, ``none``, and every other defense: nothing is restored (solid fill keeps no trace of the face;
  noise and worn patches have no inverse here); :func:`restoration` says so in words, and the images come
  back unchanged (a copy).

Constants and their sources:

- Richardson–Lucy runs :data:`RL_ITERATIONS` = 50 iterations, scikit-image's default ``num_iter``
  (``skimage.restoration.richardson_lucy``, 0.22–0.26);
- Wiener uses ``balance`` :data:`WIENER_BALANCE` = 0.1, the value of scikit-image's ``wiener`` docstring example;
- the PSF is the defense's kernel exactly: :func:`anonlab.filters.gaussian_kernel1d` over +-ceil(3 sigma)
  (:func:`anonlab.filters.gaussian_radius`), with ``sigma_rel`` quantized as the defense quantizes it
  (:func:`anonlab.defenses.ops.quantize`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anonlab.defenses.ops import box_heights, quantize
from anonlab.defenses.regions import Regions, make_regions
from anonlab.filters import gaussian_blur2d, gaussian_kernel1d, gaussian_radius
from anonlab.types import Detections, check_images

#: Richardson–Lucy iterations: scikit-image's default ``num_iter`` for ``restoration.richardson_lucy``
RL_ITERATIONS = 50
#: Wiener regularisation weight: the value in scikit-image's ``restoration.wiener`` docstring example
WIENER_BALANCE = 0.1
METHODS = ("richardson_lucy", "wiener")


def restoration(defense: nn.Module) -> str:
    """What :func:`restore` does for ``defense``, in words (for the run's notes): e.g.
    ``"deconvolution, PSF gaussian sigma=2.0 px"`` or ``"nothing to restore: ..."``."""
    name = getattr(defense, "name", type(defense).__name__)
    if name == "gaussian_blur":
        strength = f"sigma={defense.sigma} px" if defense.sigma is not None else \
            f"sigma_rel={defense.sigma_rel} x box height (quantized as the defense does)"
        return f"deconvolution, PSF gaussian {strength}"
    if name == "pixelate":
        grid = f"{defense.blocks}x{defense.blocks} blocks" if defense.blocks is not None else \
            f"{defense.block_px} px blocks"
        return f"bicubic upscaling from the block grid ({grid})"
    if name == "solid":
        return "nothing to restore: solid fill keeps no trace of the face (input returned unchanged)"
    if name == "none":
        return "nothing to restore: no defense (input returned unchanged)"
    return f"nothing to restore: no inverse of {name} is implemented (input returned unchanged)"


#: defenses :func:`restore` has an inverse for; it returns every other defense's images unchanged
RESTORABLE = ("gaussian_blur", "pixelate")


def restorable(defense: nn.Module) -> bool:
    """Whether :func:`restore` changes ``defense``'s images at all (False: a copy of the input comes back, so a
    restoring attacker sees exactly the redacted probe)."""
    return getattr(defense, "name", "") in RESTORABLE


def restore(images: Tensor, dets: Detections, defense: nn.Module, method: str = "richardson_lucy",
            num_iter: int = RL_ITERATIONS, balance: float = WIENER_BALANCE) -> Tensor:
    """Undo ``defense`` inside the regions it redacted, as far as it can be undone.

    ``images``: the redacted ``uint8 (B, 3, H, W)`` RGB batch (any device); ``dets``: the boxes the defense was
    applied to (``float32 (N, 4)`` xyxy pixels of those images, with ``batch_idx``), scaled and shaped as the
    defense does (its ``mask_scale`` and ``shape``). ``defense``: the registered defense module that redacted
    them, whose parameters (``sigma``/``sigma_rel``, ``blocks``/``block_px``) the attacker is assumed to know.
    ``method``: ``richardson_lucy`` (``num_iter`` iterations) or ``wiener`` (``balance``), for blurs only.

    Returns a new ``uint8 (B, 3, H, W)`` on the images' device; pixels outside the regions are unchanged.
    Each region is restored on its own (a window around it, on the host: scikit-image is numpy); defenses with
    no inverse return a copy of the input (:func:`restoration` says which). Raises ``ValueError`` for a bad
    ``method``, ``num_iter`` or ``balance``, or for images that are not ``uint8 (B, 3, H, W)``.
    """
    check_images(images, "restore input")
    if method not in METHODS:
        raise ValueError(f"restore: method must be one of {', '.join(METHODS)}, got {method!r}")
    if int(num_iter) != num_iter or num_iter < 1:
        raise ValueError(f"restore: num_iter must be an integer >= 1 (Richardson–Lucy iterations), got {num_iter!r}")
    if not balance > 0:
        raise ValueError(f"restore: balance must be > 0 (Wiener regularisation weight), got {balance!r}")
    name = getattr(defense, "name", "")
    if not restorable(defense) or dets.boxes.shape[0] == 0:
        return images.clone()
    regions = make_regions(dets.to(images.device), images.shape[0],
                           tuple(images.shape[-2:]), defense.shape, defense.mask_scale)
    if name == "gaussian_blur":
        return _deblur(images, regions, defense, method, int(num_iter), float(balance))
    return _unpixelate(images, regions, defense)


def _deblur(images: Tensor, regions: Regions, defense: nn.Module, method: str, num_iter: int,
            balance: float) -> Tensor:
    from skimage import restoration as skr

    if defense.sigma is not None:
        sigmas = [float(defense.sigma)] * regions.rects.shape[0]
    else:  # the defense's own per-box strength (quantized to quarter octaves)
        sigmas = quantize(box_heights(regions).clamp(min=1) * defense.sigma_rel).tolist()
    out = images.clone()
    host = images.cpu().numpy().astype(np.float64) / 255.0
    owner = regions.owner.cpu()
    h, w = images.shape[-2:]
    for k, ((x1, y1, x2, y2), b, s) in enumerate(zip(regions.rects.tolist(), regions.batch_idx.tolist(), sigmas)):
        if x2 <= x1 or y2 <= y1:
            continue
        r = gaussian_radius(s)
        # the blurred region mixes in up to r pixels of its surroundings: deconvolve a window that holds 2r of
        # them, mirrored at the image border as the defense's filter was (numpy "reflect" = BORDER_REFLECT_101).
        # Deconvolution models the whole window as blurred, but the surroundings are sharp: they are blurred
        # here with the same kernel first (else their edges ring into the face), then only the region is kept
        wy1, wy2, wx1, wx2 = max(0, y1 - 2 * r), min(h, y2 + 2 * r), max(0, x1 - 2 * r), min(w, x2 + 2 * r)
        window = np.pad(host[b, :, wy1:wy2, wx1:wx2], ((0, 0), (r, r), (r, r)), mode="reflect")
        inside = np.pad((owner[b, wy1:wy2, wx1:wx2] == k).numpy(), ((r, r), (r, r)), mode="reflect")
        reblurred = gaussian_blur2d(torch.from_numpy(window)[None].float(), s)[0].double().numpy()
        window = np.where(inside[None], window, reblurred)
        g = gaussian_kernel1d(s, r).double().numpy()
        psf = np.outer(g, g)
        grey = bool((window[0] == window[1]).all() and (window[0] == window[2]).all())
        chans = window[:1] if grey else window  # a grey face (AT&T) is deconvolved once, not three times
        if method == "richardson_lucy":
            rest = skr.richardson_lucy(chans, psf[None], num_iter=num_iter, clip=True)
        else:
            rest = np.stack([skr.wiener(c, psf, balance, clip=True) for c in chans])
        if grey:
            rest = np.repeat(rest, 3, axis=0)
        rest = rest[:, r + (y1 - wy1): r + (y2 - wy1), r + (x1 - wx1): r + (x2 - wx1)]
        rest_t = torch.from_numpy(np.clip(np.rint(rest * 255.0), 0, 255).astype(np.uint8)).to(images.device)
        sel = (owner[b, y1:y2, x1:x2] == k).to(images.device)
        out[b, :, y1:y2, x1:x2] = torch.where(sel, rest_t, out[b, :, y1:y2, x1:x2])
    return out


def _unpixelate(images: Tensor, regions: Regions, defense: nn.Module) -> Tensor:
    out = images.clone()
    dev = images.device
    for k, ((x1, y1, x2, y2), b) in enumerate(zip(regions.rects.tolist(), regions.batch_idx.tolist())):
        bh, bw = y2 - y1, x2 - x1
        if bh <= 0 or bw <= 0:
            continue
        crop = images[b, :, y1:y2, x1:x2].float()
        inside = regions.owner[b, y1:y2, x1:x2] == k
        ys = torch.arange(bh, device=dev)[:, None]
        xs = torch.arange(bw, device=dev)[None, :]
        if defense.blocks is not None:  # the defense's grid (ops.pixelate): floor(y * N / h), floor(x * N / w)
            nby = nbx = defense.blocks
            by, bx = (ys * nby) // bh, (xs * nbx) // bw
            size = (bh, bw)
        else:  # square blocks anchored at the region's top-left corner
            p = defense.block_px
            nby, nbx = -(-bh // p), -(-bw // p)
            by, bx = ys // p, xs // p
            size = (nby * p, nbx * p)  # block centres land on the grid's sample points; cropped to (bh, bw) below
        label = (by * nbx + bx).expand(bh, bw).reshape(-1)
        m = inside.reshape(-1).float()
        sums = torch.zeros(nby * nbx, 3, device=dev).index_add_(0, label, crop.reshape(3, -1).T * m[:, None])
        counts = torch.zeros(nby * nbx, device=dev).index_add_(0, label, m)
        fill = (sums.sum(0) / counts.sum().clamp(min=1))  # blocks with no region pixel (ellipse corners)
        grid = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], fill)
        grid = grid.T.reshape(1, 3, nby, nbx)
        up = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)[0, :, :bh, :bw]
        up = up.round().clamp(0, 255).to(torch.uint8)
        out[b, :, y1:y2, x1:x2] = torch.where(inside[None], up, out[b, :, y1:y2, x1:x2])
    return out
