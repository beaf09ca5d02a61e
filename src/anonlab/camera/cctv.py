"""Synthetic camera stages: a physical capture model (geometry, optics, motion, sensor, in-camera JPEG) and a
release model (resize for posting, JPEG or H.264/H.265), every step optional.

:class:`SimulatedCapture` (registered as ``cctv``: every parameter exposed, neutral values) holds the whole capture
pipeline; each capture preset (``cctv_720p_near``, ...) is a small registered subclass. :class:`SimulatedRelease`
holds the release pipeline, its presets (``social``, ``jpeg``, ...) likewise. A preset's values live only in
``conf/capture/<name>.yaml`` or ``conf/release/<name>.yaml``, with the physical assumptions behind them: the class
reads its file when built (keyword arguments override it), so ``CAPTURES.build("cctv_720p_far")`` from Python and
``capture=cctv_720p_far`` give the same stage, and Hydra's ``_target_`` points at the class.

Geometry: the input frame is taken as the scene. With ``distance_m`` the pinhole model (see
:mod:`anonlab.camera.ops`) gives the face height ``face_px`` on the ``resolution`` sensor, and the frame is scaled
by ``face_px / source_face_px`` (``source_face_px``: the face height of the input images), so the captured frame
is the part of the sensor that the input scene covers. Without ``distance_m``, ``resolution`` alone fits the
frame inside that preset (aspect kept). Ground-truth boxes follow through :meth:`capture_boxes`.

Noise is keyed by ``seed`` and each frame's content (:func:`~anonlab.camera.ops.frame_keys`): a frame's
captured result is the same in any batch, in any order, on CPU or CUDA.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from anonlab._checks import check_positive, check_range
from anonlab.camera import ops
from anonlab.camera.base import (
    CAPTURES,
    RELEASES,
    CaptureStage,
    ReleaseStage,
    preset_values,
)
from anonlab.types import check_images

RELEASE_CODECS = ("jpeg", "h264", "h265")


def _preset_params(stage: str, name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's values from its config file, with ``overrides`` (keys of that file only) applied."""
    p = preset_values(stage, name)
    unknown = set(overrides) - set(p)
    if unknown:
        raise ValueError(f"unknown {stage} parameter(s) {sorted(unknown)}; valid: {', '.join(sorted(p))}")
    p.update(overrides)
    return p


@CAPTURES.register("cctv")
class SimulatedCapture(CaptureStage):
    """Capture: scale/resolution -> defocus -> motion blur -> sensor (low light, IR, noise) -> in-camera JPEG.

    Parameters (values of ``conf/capture/<name>.yaml``; ``cctv``'s leave frames untouched):
      resolution: sensor preset (``D1``, ``720p``, ``1080p``, ``4MP``); hfov_deg: horizontal field of view.
      distance_m, mount_height_m, subject_height_m, tilt_deg, face_height_m, source_face_px: pinhole geometry.
      defocus_px: defocus disk radius (captured pixels).
      speed_mps, shutter_s, motion_angle_deg: subject motion during the exposure (needs ``distance_m``).
      exposure, gain, photons_at_white, read_sigma, gamma, contrast, ir: sensor (see ``ops.low_light_float``).
      jpeg_quality: in-camera JPEG quality (1..100) or None.
      seed: noise seed.
    Raises ``ValueError`` (one line, naming the parameter) for an unknown or out-of-range value.
    """

    def __init__(self, **overrides: Any) -> None:
        super().__init__()
        self._p = _preset_params("capture", self.name, overrides)
        self._validate()

    # ------------------------------------------------------------------------------------------ config
    def _validate(self) -> None:
        p = self._p
        if p["resolution"] is not None:
            ops.resolution_hw(p["resolution"])
        ops.focal_px(1, p["hfov_deg"])
        if p["distance_m"] is not None:
            if p["resolution"] is None:
                raise ValueError("distance_m needs a sensor resolution (resolution: D1|720p|1080p|4MP)")
            if p["source_face_px"] is None or not p["source_face_px"] > 0:
                raise ValueError(f"distance_m needs source_face_px > 0 (face height in the input images), "
                                 f"got {p['source_face_px']!r}")
            check_positive("face_height_m", p["face_height_m"], note="metres")
            ops.axis_distance(p["distance_m"], p["mount_height_m"], p["subject_height_m"], p["tilt_deg"])
        for key in ("defocus_px", "speed_mps", "shutter_s", "read_sigma"):
            check_range(key, p[key], 0)
        if p["speed_mps"] > 0 and p["distance_m"] is None:
            raise ValueError("speed_mps needs distance_m (the pixel scale at the subject) and resolution")
        for key in ("exposure", "gamma", "contrast"):
            check_positive(key, p[key])
        if p["gain"] is not None:
            check_positive("gain", p["gain"], note="or null: auto, 1 / exposure")
        if p["photons_at_white"] is not None:
            check_positive("photons_at_white", p["photons_at_white"], note="or null: no shot noise")
        if p["jpeg_quality"] is not None:
            ops.check_quality(p["jpeg_quality"])

    def params(self) -> dict[str, Any]:
        return dict(self._p)

    # ------------------------------------------------------------------------------------------ geometry
    @property
    def focal_px(self) -> float | None:
        """Focal length in pixels of the sensor (None without a resolution)."""
        r = self._p["resolution"]
        return None if r is None else ops.focal_px(ops.resolution_hw(r)[1], self._p["hfov_deg"])

    @property
    def px_per_m(self) -> float | None:
        """Image scale at the subject, pixels per metre (None without ``distance_m``)."""
        p = self._p
        if p["distance_m"] is None:
            return None
        return self.focal_px / ops.axis_distance(p["distance_m"], p["mount_height_m"], p["subject_height_m"],
                                                 p["tilt_deg"])

    @property
    def face_px(self) -> float | None:
        """Face height in captured pixels (pinhole), None without ``distance_m``."""
        s = self.px_per_m
        return None if s is None else s * self._p["face_height_m"]

    @property
    def motion_px(self) -> float:
        """Motion blur streak length in captured pixels."""
        s = self.px_per_m
        return 0.0 if s is None else ops.motion_length_px(self._p["speed_mps"], self._p["shutter_s"], s)

    def captured_size(self, size_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the captured frame for an input frame of ``size_hw``."""
        p = self._p
        if p["distance_m"] is not None:
            return ops.scaled_size(size_hw, self.face_px / p["source_face_px"])
        if p["resolution"] is not None:
            return ops.scaled_size(size_hw, ops.fit_scale(size_hw, ops.resolution_hw(p["resolution"])))
        return tuple(size_hw)

    def capture_boxes(self, boxes: Tensor, size_hw: tuple[int, int]) -> Tensor:
        return ops.scale_boxes(boxes, tuple(size_hw), self.captured_size(tuple(size_hw)))

    # ------------------------------------------------------------------------------------------ pipeline
    def _sensor_on(self) -> bool:
        p = self._p
        return (p["ir"] or p["exposure"] != 1.0 or p["gain"] is not None or p["photons_at_white"] is not None
                or p["read_sigma"] > 0 or p["gamma"] != ops.DISPLAY_GAMMA or p["contrast"] != 1.0)

    def _capture(self, x: Tensor, keys: Tensor, exact: bool) -> Tensor:
        p = self._p
        x = ops.resize_float(x, self.captured_size(tuple(x.shape[-2:])))
        if p["defocus_px"] > 0:
            x = ops.defocus_blur_float(x, p["defocus_px"])
        if self.motion_px > 0:
            x = ops.motion_blur_float(x, self.motion_px, p["motion_angle_deg"])
        if self._sensor_on():
            x = ops.low_light_float(x, keys, p["exposure"], p["gain"], p["photons_at_white"], p["read_sigma"],
                                    p["gamma"], p["contrast"], p["ir"], exact=exact)
        return x

    def capture_float(self, x: Tensor) -> Tensor:
        """Differentiable capture: float (B, 3, H, W) RGB in [0, 1] -> float in [0, 1] (captured size).
        Shot noise uses the Gaussian law keyed by ``seed`` and the frame's index in the batch; no JPEG."""
        ops.check_float_images(x)
        return self._capture(x, ops.index_keys(x.shape[0], self._p["seed"], x.device), exact=False)

    def capture(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) RGB -> uint8 (B, 3, H', W') as recorded (exact Poisson noise, in-camera JPEG)."""
        check_images(images, "capture input")
        keys = ops.frame_keys(images, self._p["seed"]) if self._sensor_on() else None
        out = ops.to_uint8(self._capture(ops.to_float(images), keys, exact=True))
        if self._p["jpeg_quality"] is not None:
            out = ops.jpeg(out, self._p["jpeg_quality"])
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._p.items())


@CAPTURES.register("cctv_720p_near")
class CCTV720pNear(SimulatedCapture):
    """720p wide-angle (90 deg) camera 3 m up, subject walking 4 m away: faces ~33 px, light motion blur."""


@CAPTURES.register("cctv_720p_far")
class CCTV720pFar(SimulatedCapture):
    """Same camera, subject 12 m away: faces ~12 px."""


@CAPTURES.register("cctv_night_ir")
class CCTVNightIR(SimulatedCapture):
    """720p camera at night in IR mode, subject 5 m away: grey, dim (5 % exposure, auto gain), noisy, 1/25 s."""


@CAPTURES.register("phone_1080p")
class Phone1080p(SimulatedCapture):
    """Hand-held phone, 1080p landscape, 70 deg HFOV, at face height 2 m from the subject: faces ~150 px."""


class SimulatedRelease(ReleaseStage):
    """Release: downscale to fit ``resolution`` (never up) and back -> JPEG / H.264 / H.265. Not registered
    itself: build a preset (``social``, ``jpeg``, ``h264``, ``h265``) and override its values.

    Parameters (values of ``conf/release/<name>.yaml``):
      resolution: fit the frame inside this preset before encoding (``D1``, ``720p``, ``1080p``, ``4MP``) or None.
      codec: ``jpeg`` | ``h264`` | ``h265`` | None; quality: JPEG quality 1..100 (codec jpeg);
      crf: x264/x265 CRF 0..51 (codec h264/h265); clip: true: the batch is one clip (consecutive frames),
      false: one clip per frame (a frame's result does not depend on its batch).
    Raises ``ValueError`` (one line, naming the parameter) for an unknown or out-of-range value.
    """

    def __init__(self, **overrides: Any) -> None:
        super().__init__()
        self._p = _preset_params("release", self.name, overrides)
        p = self._p
        if p["resolution"] is not None:
            ops.resolution_hw(p["resolution"])
        if p["codec"] is not None and p["codec"] not in RELEASE_CODECS:
            raise ValueError(f"unknown release codec {p['codec']!r}; valid: {', '.join(RELEASE_CODECS)} or null")
        ops.check_quality(p["quality"])
        ops.check_crf(p["crf"])

    def params(self) -> dict[str, Any]:
        return dict(self._p)

    def release(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> uint8 (B, 3, H, W): downscaled to fit ``resolution`` (never upscaled) and
        encoded, then decoded and scaled back to (H, W) so captured boxes stay valid."""
        check_images(images, "release input")
        p = self._p
        size = tuple(images.shape[-2:])
        out = images
        if p["resolution"] is not None:
            s = ops.fit_scale(size, ops.resolution_hw(p["resolution"]))
            if s < 1:
                out = ops.resize(out, ops.scaled_size(size, s))
        if p["codec"] == "jpeg":
            out = ops.jpeg(out, p["quality"])
        elif p["codec"] is not None:
            out = ops.video_roundtrip(out, p["codec"], p["crf"], clip=p["clip"])
        if tuple(out.shape[-2:]) != size:
            out = ops.resize(out, size)
        return out if out is not images else images.clone()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._p.items())


@RELEASES.register("social")
class SocialRelease(SimulatedRelease):
    """Posted on social media: downscaled to fit 720p, H.264 CRF 28, one clip per frame."""


@RELEASES.register("jpeg")
class JPEGRelease(SimulatedRelease):
    """Posted as photos: JPEG at quality 75, full size."""


@RELEASES.register("h264")
class H264Release(SimulatedRelease):
    """Shared as video: H.264 (libx264) at CRF 23, full size, one clip per frame."""


@RELEASES.register("h265")
class H265Release(SimulatedRelease):
    """Shared as video: H.265 (libx265) at CRF 28, full size, one clip per frame."""
