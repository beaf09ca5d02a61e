"""The synthetic camera: pure ops (geometry, optics, sensor noise, codecs) and the registered capture and release
presets."""

from __future__ import annotations

import pytest
import torch
from images import BUS, load

from anonlab.camera import CAPTURES, RELEASES, ops


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) ** 2).mean()
    return float(10 * torch.log10(255.0**2 / mse))


def _bus(device: torch.device, scale: int = 2) -> torch.Tensor:
    return load(BUS)[:, :, ::scale, ::scale].contiguous().to(device)  # 540 x 405


# ------------------------------------------------------------------------------------------------- ops


def test_uint8_ops_keep_shape_dtype_device(device):
    x = torch.randint(0, 256, (2, 3, 37, 41), dtype=torch.uint8, device=device)
    for y in (ops.resize(x, (20, 30)), ops.motion_blur(x, 5.5, 30.0), ops.defocus_blur(x, 2.5), ops.jpeg(x, 50),
              ops.video_roundtrip(x, "h264", 28)):
        assert y.dtype == torch.uint8 and y.device == x.device and y.shape[:2] == (2, 3)
    assert ops.resize(x, (20, 30)).shape == (2, 3, 20, 30)
    keys = ops.frame_keys(x, 0)
    assert keys.shape == (2,) and keys.device == x.device and keys[0] != keys[1]
    lin = x.float() / 255
    for f in (ops.sensor_noise(lin, keys, 100.0, 1.0), ops.sensor_noise_float(lin, keys, 100.0, 1.0),
              ops.low_light_float(lin, keys, 0.1, None, 500.0, 1.0, ir=True, exact=True)):
        assert f.dtype == torch.float32 and f.shape == x.shape and f.device == x.device


def test_noise_is_the_same_on_cpu_and_cuda_and_in_any_batch(device):
    x = _bus(device, 8)
    y = ops.low_light_float(ops.to_float(x), ops.frame_keys(x, 3), 0.05, None, 400.0, 0.5, exact=True)
    both = torch.cat([x.flip(0), x.flip(-1), x])
    y3 = ops.low_light_float(ops.to_float(both), ops.frame_keys(both, 3), 0.05, None, 400.0, 0.5, exact=True)
    assert (ops.to_uint8(y3[2:]).int() - ops.to_uint8(y).int()).abs().max() <= 1  # float rounding only
    assert (ops.to_uint8(y3[0]).int() - ops.to_uint8(y[0]).int()).abs().max() <= 1  # same frame, same noise
    cpu = ops.low_light_float(ops.to_float(x.cpu()), ops.frame_keys(x.cpu(), 3), 0.05, None, 400.0, 0.5, exact=True)
    assert (ops.to_uint8(cpu).int() - ops.to_uint8(y).cpu().int()).abs().max() <= 1


@pytest.mark.parametrize("exact", [False, True])
def test_sensor_noise_variance_follows_the_poisson_gaussian_law(device, exact):
    fn = ops.sensor_noise if exact else ops.sensor_noise_float
    keys = torch.tensor([11, 12], device=device)
    read = 3.0  # grey levels
    flat = torch.full((2, 3, 256, 256), 0.5, device=device)
    var = fn(flat, keys, None, read).mul(255).var().item()
    assert abs(var / read**2 - 1) < 0.05  # read noise alone
    photons = 200.0
    for level in (0.02, 0.1, 0.5):  # 4, 20, 100 photo-electrons: exact Poisson below 12, normal law above
        out = fn(torch.full_like(flat, level), keys, photons, read)
        expected = level / photons + (read / 255) ** 2
        assert abs(out.mean().item() / level - 1) < 0.01
        assert abs(out.var().item() / expected - 1) < 0.05, level
    if exact:  # Poisson counts are integers
        counts = ops.sensor_noise(torch.full_like(flat, 0.02), keys, photons, 0.0) * photons
        assert torch.allclose(counts, counts.round(), atol=1e-3)


def test_blur_kernels_sum_to_one_and_have_the_stated_extent():
    for length in (0.5, 1.0, 4.3, 17.0):
        for angle in (0.0, 30.0, 90.0, 135.0):
            k = ops.motion_kernel(length, angle)
            assert abs(k.sum().item() - 1) < 1e-6
    horizontal = ops.motion_kernel(9.0, 0.0)
    row = horizontal.sum(0)
    assert ((row > 1e-6).sum().item() - 9) <= 2 and horizontal.sum(1).max() > 0.999  # one row, ~9 px long
    for r in (0.5, 1.0, 3.7):
        d = ops.disk_kernel(r)
        assert abs(d.sum().item() - 1) < 1e-6
        assert torch.allclose(d, d.flip(0)) and torch.allclose(d, d.T)
    assert ops.motion_kernel(0.0).shape == (1, 1) and ops.disk_kernel(0.0).shape == (1, 1)


def test_motion_blur_smears_a_point_along_the_motion(device):
    x = torch.zeros(1, 3, 31, 31, device=device)
    x[..., 15, 15] = 1.0
    y = ops.motion_blur_float(x, 8.0, 0.0)
    assert abs(y.sum().item() / 3 - 1) < 1e-5
    cols = (y[0, 0] > 1e-4).nonzero()
    assert cols[:, 0].unique().tolist() == [15] and 8 <= cols[:, 1].max() - cols[:, 1].min() + 1 <= 10


def test_jpeg_quality_on_a_real_photo(device):
    x = load(BUS).to(device)
    assert _psnr(ops.jpeg(x, 95), x) > 38
    assert _psnr(ops.jpeg(x, 10), x) < 30


def test_h264_round_trip_keeps_frames_and_size():
    x = _bus(torch.device("cpu"), 4)[:, :, :135, :101]  # odd size: padded to even for yuv420p, cropped back
    clip = torch.cat([x, x.roll(3, -1), x.roll(6, -1)])
    for kwargs in ({"clip": True}, {"clip": False}):
        y = ops.video_roundtrip(clip, "h264", 18, **kwargs)
        assert y.shape == clip.shape and y.dtype == torch.uint8
        assert _psnr(y, clip) > 30  # the frames come back in order
    assert _psnr(ops.video_roundtrip(x, "h264", 45), x) < _psnr(ops.video_roundtrip(x, "h264", 18), x)


def test_float_paths_are_differentiable(device):
    x = ops.to_float(_bus(device, 8)).requires_grad_(True)
    keys = ops.index_keys(1, 0, device)
    for f in (lambda t: ops.resize_float(t, (40, 30)), lambda t: ops.motion_blur_float(t, 4.0, 20.0),
              lambda t: ops.defocus_blur_float(t, 2.0),
              lambda t: ops.low_light_float(t, keys, 0.1, None, 300.0, 1.0, ir=True, contrast=1.2)):
        (g,) = torch.autograd.grad(f(x).square().sum(), x)
        assert g.abs().sum() > 0
    cam = CAPTURES.build("cctv_night_ir")
    (g,) = torch.autograd.grad(cam.capture_float(x).sum(), x)
    assert g.abs().sum() > 0


# ------------------------------------------------------------------------------------------------- geometry


def test_pinhole_geometry():
    assert ops.focal_px(1280, 90.0) == pytest.approx(640.0)
    assert ops.axis_distance(4.0, 3.0, 1.6) == pytest.approx((16 + 1.96) ** 0.5)
    assert ops.axis_distance(4.0, 3.0, 1.6, tilt_deg=0.0) == pytest.approx(4.0)
    assert ops.face_pixel_height(640.0, 0.22, 4.0) == pytest.approx(35.2)


@pytest.mark.parametrize(("name", "face_px"), [("cctv_720p_near", 33.2), ("cctv_720p_far", 11.7),
                                               ("cctv_night_ir", 27.1), ("phone_1080p", 150.8)])
def test_preset_puts_faces_at_the_stated_pixel_height(name, face_px):
    cam = CAPTURES.build(name)
    assert cam.face_px == pytest.approx(face_px, abs=0.1)
    src = cam.params()["source_face_px"]
    size = (270, 200)
    face = torch.tensor([[30.0, 20.0, 30.0 + 0.8 * src, 20.0 + src]])
    out = cam.capture_boxes(face, size)
    assert abs((out[0, 3] - out[0, 1]).item() - face_px) <= 1.0
    x = torch.zeros(1, 3, *size, dtype=torch.uint8)
    assert tuple(cam.capture(x).shape[-2:]) == cam.captured_size(size)


@pytest.mark.parametrize("out_hw", [(300, 225), (720, 540), (151, 97)])
def test_capture_boxes_follow_the_resize(device, out_hw):
    x = torch.zeros(1, 3, 480, 360, dtype=torch.uint8, device=device)
    x[..., 100:260, 50:170] = 255  # box (50, 100, 170, 260), pixel-edge coordinates
    box = torch.tensor([[50.0, 100.0, 170.0, 260.0]], device=device)
    y = ops.resize(x, out_hw)
    ys, xs = (y[0, 0] > 127).nonzero().unbind(1)
    drawn = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    mapped = ops.scale_boxes(box, (480, 360), out_hw)[0]
    assert (drawn - mapped).abs().max() <= 1.0


def test_camera_capture_boxes_match_its_frames(device):
    cam = CAPTURES.build("cctv", resolution="720p", distance_m=6.0, mount_height_m=3.0, source_face_px=100.0)
    x = torch.zeros(1, 3, 400, 300, dtype=torch.uint8, device=device)
    x[..., 120:220, 90:170] = 255
    y = cam.capture(x)
    ys, xs = (y[0, 0] > 127).nonzero().unbind(1)
    drawn = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    mapped = cam.capture_boxes(torch.tensor([[90.0, 120.0, 170.0, 220.0]], device=device), (400, 300))[0]
    assert (drawn - mapped).abs().max() <= 1.0
    assert abs((mapped[3] - mapped[1]).item() - cam.face_px) <= 0.5  # frame size is rounded to whole pixels


# ------------------------------------------------------------------------------------------------- cameras


# the shared contract (uint8 in and out, input untouched, boxes in frame, deterministic) of every capture and release
# stage is in test_registry_conformance.py; below, what each preset itself promises


def test_night_ir_capture_is_grey(device):
    y = CAPTURES.build("cctv_night_ir").to(device).capture(_bus(device))
    assert torch.equal(y[:, 0], y[:, 1]) or (y[:, 0].int() - y[:, 1].int()).abs().float().mean() < 2


def test_social_release_compresses(device):
    x = _bus(device)
    assert 25 < _psnr(RELEASES.build("social").to(device).release(x), x) < 50


def test_neutral_capture_and_release_are_the_identity(device):
    x = _bus(device)
    y = CAPTURES.build("cctv").to(device).capture(x)
    assert torch.equal(y, x)
    assert torch.equal(RELEASES.build("social", resolution=None, codec=None).to(device).release(y), x)


def test_night_capture_is_noisier_than_day():
    x = _bus(torch.device("cpu"), 4)
    day = CAPTURES.build("cctv", photons_at_white=2000.0, read_sigma=0.5)
    night = CAPTURES.build("cctv", photons_at_white=2000.0, read_sigma=0.5, exposure=0.05)
    assert _psnr(night.capture(x), x) < _psnr(day.capture(x), x) - 6


def test_presets_take_their_values_from_their_config_file_and_overrides_on_top():
    far = CAPTURES.build("cctv_720p_far", distance_m=8.0)
    assert far.params()["distance_m"] == 8.0 and far.params()["resolution"] == "720p"
    assert CAPTURES.build("cctv_720p_far").params()["distance_m"] == 12.0
    assert RELEASES.build("jpeg", quality=50).params()["quality"] == 50


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"read_sigma": -1.0}, "read_sigma"),
    ({"photons_at_white": -5.0}, "photons_at_white"),
    ({"jpeg_quality": 0}, "quality"),
    ({"jpeg_quality": 101}, "quality"),
    ({"resolution": "8K"}, "resolution"),
    ({"resolution": "720p", "distance_m": 5.0}, "source_face_px"),
    ({"distance_m": 5.0, "source_face_px": 80.0}, "resolution"),
    ({"speed_mps": 1.0}, "distance_m"),
    ({"exposure": 0.0}, "exposure"),
    ({"hfov_deg": 200.0}, "hfov_deg"),
    ({"focal": 3}, "unknown capture parameter"),
    ({"codec": "h264"}, "unknown capture parameter"),
])
def test_bad_capture_parameters_raise_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CAPTURES.build("cctv", **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"quality": 150}, "quality"),
    ({"crf": 60}, "CRF"),
    ({"codec": "vp9"}, "codec"),
    ({"resolution": "480i"}, "resolution"),
    ({"distance_m": 5.0}, "unknown release parameter"),
])
def test_bad_release_parameters_raise_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RELEASES.build("jpeg", **kwargs)
