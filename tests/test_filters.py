"""The shared filters (anonlab.filters), the scalar checks (anonlab._checks) and the counter-based RNG."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from images import ASTRONAUT, load

from anonlab._checks import check_int, check_positive, check_range
from anonlab._counter_rng import counter_normal, seed_key
from anonlab.filters import GaussianBlur2d, filter2d, gaussian_blur2d

CV_BORDER = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return load(ASTRONAUT)[:, :, 100:228, 150:310].float()  # (1, 3, 128, 160), a face


@pytest.mark.parametrize("border", ["reflect", "replicate"])
@pytest.mark.parametrize("sigma", [0.8, 3.0, 20.0])  # 20 px: a 121-tap kernel, the band-matrix path
def test_gaussian_blur2d_matches_opencv_and_its_twin(photo, border, sigma):
    out = gaussian_blur2d(photo, sigma, border)
    assert out.shape == photo.shape and out.dtype == photo.dtype
    k = 2 * int(np.ceil(3 * sigma)) + 1
    ref = cv2.GaussianBlur(photo[0].permute(1, 2, 0).numpy(), (k, k), sigma, borderType=CV_BORDER[border])
    assert np.abs(out[0].permute(1, 2, 0).numpy() - ref).max() < 0.01  # float32 grey levels
    assert torch.equal(GaussianBlur2d(sigma, border)(photo), out)


@pytest.mark.parametrize("border", ["reflect", "replicate"])
def test_shift_method_agrees_with_convolution(photo, border):
    x = photo / 255.0
    a = gaussian_blur2d(x, 1.7, border, "shift")
    b = gaussian_blur2d(x, 1.7, border, "auto")
    assert (a - b).abs().max() < 1e-5


def test_filter2d_matches_opencv(photo):
    kernel = torch.rand(5, 5, generator=torch.Generator().manual_seed(0))
    kernel /= kernel.sum()
    for border in ("reflect", "replicate"):
        out = filter2d(photo, kernel, border)
        ref = cv2.filter2D(photo[0].permute(1, 2, 0).numpy(), -1, kernel.numpy(), borderType=CV_BORDER[border])
        assert np.abs(out[0].permute(1, 2, 0).numpy() - ref).max() < 0.01


def test_unknown_border_and_bad_sigma_raise():
    with pytest.raises(ValueError, match="unknown border mode 'wrap'; valid: reflect, replicate"):
        gaussian_blur2d(torch.zeros(1, 1, 8, 8), 1.0, "wrap")
    with pytest.raises(ValueError, match=r"sigma must be a number > 0, got -1"):
        GaussianBlur2d(-1)


def test_checks_share_one_message_shape():
    with pytest.raises(ValueError, match=r"^blur: sigma must be a number > 0 \(pixels\), got True$"):
        check_positive("sigma", True, where="blur", note="pixels")
    with pytest.raises(ValueError, match=r"^size must be a number in \(0, 4\], got 4.5$"):
        check_range("size", 4.5, 0, 4, lo_open=True)
    with pytest.raises(ValueError, match=r"^CRF must be an integer in \[0, 51\], got 2.5$"):
        check_int("CRF", 2.5, 0, 51)
    assert check_int("blocks", 4.0, 1, whole_floats=True) == 4 and check_range("x", 1, 0, 1) == 1.0


def test_counter_normal_is_standard_normal_and_seed_keyed():
    idx = torch.arange(200_000)
    z = counter_normal(idx, seed_key(0))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    assert torch.equal(counter_normal(idx[1000:1010], seed_key(0)), z[1000:1010])  # a value depends on its position
    assert not torch.equal(counter_normal(idx[:10], seed_key(1)), z[:10])
