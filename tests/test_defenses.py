"""Defenses against OpenCV / NumPy references on a real photo, plus validation and invariants."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from images import BUS, load

from anonlab.defenses import (
    DEFENSES,
    AdditiveNoise,
    BoxBlur,
    GaussianBlur,
    Pixelate,
    SolidFill,
    make_regions,
    ops,
)
from anonlab.types import Detections

# two people's heads/torsos in bus.jpg (1080 x 810), one box touching the right border
BOXES = torch.tensor([[50.0, 400.0, 250.0, 700.0], [670.0, 380.0, 810.0, 700.0]])


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).cpu().numpy()


def _mask(shape) -> np.ndarray:
    m = np.zeros(shape[-2:], dtype=bool)
    for x1, y1, x2, y2 in BOXES.long().tolist():
        m[y1:y2, x1:x2] = True
    return m


@pytest.fixture
def bus(device):
    return load(BUS).to(device)


@pytest.fixture
def dets(device):
    return Detections.from_list([BOXES], device=device)


@pytest.mark.parametrize("sigma", [1.5, 8.0, 30.0, pytest.param(400.0, marks=pytest.mark.slow)])  # 400: kernel far
# larger than the image (~30 s on 2 cores: slow)
def test_gaussian_blur_matches_opencv(bus, dets, sigma):
    out = GaussianBlur(sigma=sigma)(bus, dets)
    k = 2 * math.ceil(3 * sigma) + 1
    ref = cv2.GaussianBlur(_hwc(bus), (k, k), sigma, borderType=cv2.BORDER_REFLECT_101).astype(int)
    diff = np.abs(_hwc(out).astype(int) - ref)
    m = _mask(bus.shape)
    assert diff[m].max() <= 2 and diff[m].mean() < 0.5
    assert np.array_equal(_hwc(out)[~m], _hwc(bus)[~m])  # untouched outside the regions


@pytest.mark.parametrize("kernel", [3, 16, 101, 2000])
def test_box_blur_matches_opencv(bus, dets, kernel):
    out = BoxBlur(kernel=kernel)(bus, dets)
    ref = cv2.blur(_hwc(bus), (kernel, kernel)).astype(int)  # default anchor, BORDER_REFLECT_101
    diff = np.abs(_hwc(out).astype(int) - ref)
    m = _mask(bus.shape)
    assert diff[m].max() <= 2 and diff[m].mean() < 0.5


@pytest.mark.parametrize("blocks", [1, 4, 10, 20])
def test_pixelate_blocks_exact_vs_opencv_area_resize(bus, dets, blocks):
    """Box sides divisible by N: INTER_AREA down + INTER_NEAREST up is the block mean. Exact, except that OpenCV
    itself rounds an exact .5 mean up on its integer fast path and to even on its generic path; ours always
    rounds half up, so only such ties may differ, by 1."""
    out = _hwc(Pixelate(blocks=blocks)(bus, dets))
    img = _hwc(bus)
    for x1, y1, x2, y2 in BOXES.long().tolist():
        small = cv2.resize(img[y1:y2, x1:x2], (blocks, blocks), interpolation=cv2.INTER_AREA)
        ref = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST).astype(int)
        h, w = (y2 - y1) // blocks, (x2 - x1) // blocks
        means = img[y1:y2, x1:x2].reshape(blocks, h, blocks, w, 3).astype(np.float64).mean((1, 3))
        tie = np.repeat(np.repeat(means % 1 == 0.5, h, 0), w, 1)
        diff = np.abs(out[y1:y2, x1:x2].astype(int) - ref)
        assert diff[~tie].max(initial=0) == 0 and diff[tie].max(initial=0) <= 1


def _numpy_pixelate(img: np.ndarray, box, blocks=None, block_px=None) -> np.ndarray:
    x1, y1, x2, y2 = box
    out = img.copy()
    h, w = y2 - y1, x2 - x1
    yy, xx = np.mgrid[0:h, 0:w]
    if blocks:
        by, bx = yy * blocks // h, xx * blocks // w
    else:
        by, bx = yy // block_px, xx // block_px
    roi = img[y1:y2, x1:x2].astype(np.float64)
    res = np.empty_like(img[y1:y2, x1:x2])
    for i in np.unique(by):
        for j in np.unique(bx):
            sel = (by == i) & (bx == j)
            res[sel] = np.floor(roi[sel].mean(0) + 0.5).astype(np.uint8)  # half up, like INTER_AREA's fast path
    out[y1:y2, x1:x2] = res
    return out


@pytest.mark.parametrize(("blocks", "block_px"), [(3, None), (7, None), (None, 9), (None, 64)])
def test_pixelate_exact_vs_numpy_reference(device, blocks, block_px):
    img = load(BUS).to(device)
    box = (103, 211, 290, 377)  # sides not divisible by the block counts
    out = Pixelate(blocks=blocks, block_px=block_px)(img, Detections.from_list([torch.tensor([box], dtype=torch.float32)], device=device))
    ref = _numpy_pixelate(_hwc(img), box, blocks, block_px)
    assert np.array_equal(_hwc(out), ref)


def test_solid_fill_exact(bus, dets):
    out = _hwc(SolidFill(color=(10, 20, 30))(bus, dets))
    ref = _hwc(bus).copy()
    for x1, y1, x2, y2 in BOXES.long().tolist():
        cv2.rectangle(ref, (x1, y1), (x2 - 1, y2 - 1), (10, 20, 30), thickness=-1)
    assert np.array_equal(out, ref)


def test_ellipse_region_is_inscribed_and_scale_grows_it(device):
    d = Detections.from_list([torch.tensor([[100.0, 100.0, 300.0, 200.0]])], device=device)
    rect = make_regions(d, 1, (400, 400), "rect").mask.sum().item()
    ell = make_regions(d, 1, (400, 400), "ellipse").mask.sum().item()
    big = make_regions(d, 1, (400, 400), "ellipse", mask_scale=1.3).mask.sum().item()
    assert rect == 200 * 100
    assert abs(ell / rect - math.pi / 4) < 0.01
    assert abs(big / ell - 1.3**2) < 0.02
    m = make_regions(d, 1, (400, 400), "ellipse").mask[0, 0].cpu().numpy()
    assert m[150, 200] and not m[100, 100] and not m[199, 299]  # centre in, corners out
    assert np.array_equal(m, m[:, ::-1][:, list(range(400 - 1, -1, -1))][:, ::-1])  # left-right symmetric


def test_noise_statistics_and_determinism(device):
    grey = torch.full((2, 3, 256, 256), 128, dtype=torch.uint8, device=device)
    d = Detections.from_list([torch.tensor([[0.0, 0.0, 256.0, 256.0]])] * 2, device=device)
    a = AdditiveNoise(std=20.0, seed=3)(grey, d)
    diff = a.float() - 128
    assert abs(diff.std().item() - 20.0) < 0.5 and abs(diff.mean().item()) < 0.3
    assert torch.equal(a, AdditiveNoise(std=20.0, seed=3)(grey, d))
    assert torch.equal(a[1:], AdditiveNoise(std=20.0, seed=3)(grey[1:], d.for_image(1).with_batch_offset(-1)))
    assert not torch.equal(a, AdditiveNoise(std=20.0, seed=4)(grey, d))


def test_relative_sigma_scales_with_box_height(device):
    """sigma_rel=0.25 on a 200-px box equals sigma=50 (a power of 2**(1/4) away: quantization is exact here)."""
    img = load(BUS).to(device)
    d = Detections.from_list([torch.tensor([[300.0, 300.0, 500.0, 500.0]])], device=device)
    rel = GaussianBlur(sigma_rel=0.25)(img, d)
    q = ops.quantize(torch.tensor([50.0])).item()
    ab = GaussianBlur(sigma=q)(img, d)
    assert torch.equal(rel, ab)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: GaussianBlur(sigma=-1), "sigma must be a number > 0"),
        (lambda: GaussianBlur(sigma=2, sigma_rel=0.5), "exactly one of sigma, sigma_rel"),
        (lambda: GaussianBlur(sigma=None), "exactly one"),
        (lambda: Pixelate(blocks=0), "blocks must be an integer >= 1"),
        (lambda: Pixelate(blocks=2.5), "blocks must be an integer >= 1"),
        (lambda: BoxBlur(kernel=0), "kernel must be an integer >= 1"),
        (lambda: GaussianBlur(sigma=2, mask_scale=0.9), "mask_scale must be a number >= 1"),
        (lambda: SolidFill(shape="circle"), "valid: rect, ellipse"),
        (lambda: SolidFill(color=(0, 0, 300)), "color must be three integers"),
        (lambda: AdditiveNoise(std=0), "std must be a number > 0"),
    ],
)
def test_bad_values_raise_when_built(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_unknown_defense_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown defense 'gausian_blur' \(did you mean 'gaussian_blur'\?\); valid: box_blur, "):
        DEFENSES.get("gausian_blur")


def test_wrong_image_dtype_raises():
    with pytest.raises(ValueError, match="uint8 \\(B, 3, H, W\\)"):
        GaussianBlur(sigma=2)(torch.zeros(1, 3, 8, 8), Detections.empty())


@pytest.mark.slow  # ~19 s on 2 cores
@settings(max_examples=40, deadline=None)
@given(
    boxes=st.lists(st.tuples(*[st.floats(-50, 120, allow_nan=False)] * 4), min_size=0, max_size=6),
    shape=st.sampled_from(["rect", "ellipse"]),
    scale=st.floats(1.0, 2.0),
)
def test_fuzz_regions_never_touch_outside(boxes, shape, scale):
    img = torch.randint(0, 256, (2, 3, 64, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    b = torch.cat([torch.minimum(b[:, :2], b[:, 2:]), torch.maximum(b[:, :2], b[:, 2:])], 1)
    d = Detections(b, torch.ones(len(b)), torch.zeros(len(b), dtype=torch.long), torch.arange(len(b)) % 2)
    regions = make_regions(d, 2, (64, 80), shape, scale)
    for defense in (GaussianBlur(sigma=3, shape=shape, mask_scale=scale), Pixelate(blocks=3, shape=shape, mask_scale=scale),
                    BoxBlur(kernel_rel=0.5, shape=shape, mask_scale=scale)):
        out = defense(img, d)
        outside = ~regions.mask.expand_as(img)
        assert torch.equal(out[outside], img[outside])


@settings(max_examples=60, deadline=None)
@given(
    rects=st.lists(st.tuples(st.integers(-10, 90), st.integers(-10, 70), st.integers(0, 60), st.integers(0, 50)),
                   min_size=0, max_size=12),
    shape=st.sampled_from(["rect", "ellipse"]),
)
def test_owner_map_equals_one_box_at_a_time(rects, shape):
    """owner_map (boxes grouped by size, each group on its own grid) equals drawing the boxes one by one in index
    order, each on its own extent: the highest index wins, ellipses keep the pixel centres inside; region_mask (what
    ``solid`` uses) is where any box is."""
    from anonlab.defenses.regions import owner_map, region_mask

    h, w = 60, 80
    r = torch.tensor([[x, y, x + bw, y + bh] for x, y, bw, bh in rects], dtype=torch.int64).reshape(-1, 4)
    r = torch.stack([r[:, 0].clamp(0, w), r[:, 1].clamp(0, h), r[:, 2].clamp(0, w), r[:, 3].clamp(0, h)], 1)
    b = torch.arange(len(r)) % 2
    want = torch.full((2, h, w), -1, dtype=torch.int64)
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    for i, (x1, y1, x2, y2) in enumerate(r.tolist()):
        inside = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
        if shape == "ellipse":
            rx, ry = max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
            inside &= ((xx - (x1 + x2) / 2) / rx) ** 2 + ((yy - (y1 + y2) / 2) / ry) ** 2 <= 1.0
        want[b[i]][inside] = i
    assert torch.equal(owner_map(r, b, 2, (h, w), shape), want)
    assert torch.equal(region_mask(r, b, 2, (h, w), shape), (want >= 0)[:, None])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize(
    "defense",
    [GaussianBlur(sigma=6), GaussianBlur(sigma_rel=0.5, shape="ellipse", mask_scale=1.3), BoxBlur(kernel_rel=0.5),
     BoxBlur(kernel=7), Pixelate(blocks=4), Pixelate(block_px=10), SolidFill(), AdditiveNoise(std=30)],
    ids=lambda d: d.label(),
)
def test_cuda_matches_cpu_within_one(defense):
    img = load(BUS)
    cpu = defense(img, Detections.from_list([BOXES]))
    gpu = defense(img.cuda(), Detections.from_list([BOXES], device="cuda")).cpu()
    assert (cpu.int() - gpu.int()).abs().max().item() <= 1
