"""Camera registry and base. A camera maps ``uint8 (B, 3, H, W)`` RGB batches to new batches, twice per frame:
``capture`` before the defense and ``release`` after it. Ground-truth boxes follow ``capture``'s geometry
through :meth:`Camera.capture_boxes` (identity unless the camera rescales)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from anonlab.registry import Registry
from anonlab.types import check_images

CAMERAS: Registry[nn.Module] = Registry("camera")


class Camera(nn.Module):
    name: ClassVar[str] = ""

    def capture(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def release(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def capture_boxes(self, boxes: Tensor, size_hw: tuple[int, int]) -> Tensor:
        """Map float xyxy boxes of the input frame into the captured frame."""
        return boxes

    def params(self) -> dict[str, Any]:
        return {}


@CAMERAS.register("none")
class IdentityCamera(Camera):
    """Images as they are: no capture degradation, no release re-encoding."""

    def capture(self, images: Tensor) -> Tensor:
        check_images(images, "camera input")
        return images

    def release(self, images: Tensor) -> Tensor:
        return images
