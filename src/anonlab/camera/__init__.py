"""The synthetic CCTV camera: ``capture`` (before the defense: footage as recorded) and ``release``
(after it: redacted footage re-encoded when posted). Only the identity camera exists so far."""

from anonlab.camera.base import CAMERAS, Camera, IdentityCamera

__all__ = ["CAMERAS", "Camera", "IdentityCamera"]
