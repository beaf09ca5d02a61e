"""The synthetic CCTV camera: ``capture`` (before the defense: footage as recorded) and ``release``
(after it: redacted footage re-encoded when posted). Pure batched functions in :mod:`anonlab.camera.ops`;
registered cameras (``none``, ``cctv`` and the presets) in :mod:`anonlab.camera.base` and
:mod:`anonlab.camera.cctv`."""

from anonlab.camera.base import CAMERAS, Camera, IdentityCamera
from anonlab.camera.cctv import (
    CCTV720pFar,
    CCTV720pNear,
    CCTVCamera,
    CCTVNightIR,
    Phone1080p,
    SimulatedCamera,
    SocialRelease,
)

__all__ = [
    "CAMERAS",
    "CCTV720pFar",
    "CCTV720pNear",
    "CCTVCamera",
    "CCTVNightIR",
    "Camera",
    "IdentityCamera",
    "Phone1080p",
    "SimulatedCamera",
    "SocialRelease",
]
