"""The synthetic camera in two stages: ``capture`` (before the defense: footage as recorded; registry
``CAPTURES``, configs ``conf/capture/``) and ``release`` (after it: redacted footage re-encoded when posted;
registry ``RELEASES``, configs ``conf/release/``). Pure batched functions in :mod:`anonlab.camera.ops`; the stages
in :mod:`anonlab.camera.base` (``none``) and :mod:`anonlab.camera.cctv` (the simulated stages and presets). Every
module of this package is imported (sorted by name), so a new stage is one module plus its config."""

from anonlab.camera.base import (
    CAPTURES,
    RELEASES,
    CaptureStage,
    IdentityCapture,
    IdentityRelease,
    ReleaseStage,
    camera_label,
)
from anonlab.registry import import_submodules

import_submodules(__name__, __path__)

from anonlab.camera.cctv import (  # noqa: E402  (re-exported for configs' _target_)
    CCTV720pFar,
    CCTV720pNear,
    CCTVNightIR,
    H264Release,
    H265Release,
    JPEGRelease,
    Phone1080p,
    SimulatedCapture,
    SimulatedRelease,
    SocialRelease,
)

__all__ = [
    "CAPTURES",
    "RELEASES",
    "CCTV720pFar",
    "CCTV720pNear",
    "CCTVNightIR",
    "CaptureStage",
    "H264Release",
    "H265Release",
    "IdentityCapture",
    "IdentityRelease",
    "JPEGRelease",
    "Phone1080p",
    "ReleaseStage",
    "SimulatedCapture",
    "SimulatedRelease",
    "SocialRelease",
    "camera_label",
]
