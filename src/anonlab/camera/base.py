"""The camera's two stages, each a registry: ``capture`` (``CAPTURES``, before the defense: the footage as the
camera records it) and ``release`` (``RELEASES``, after it: the redacted footage as it is posted). Any capture
combines with any release (``anonlab bench capture=cctv_720p_far release=social``). Both map ``uint8 (B, 3, H, W)``
RGB batches to new batches; ground-truth boxes follow the capture's geometry through
:meth:`CaptureStage.capture_boxes` (identity unless the capture rescales). The contracts the engine relies on are
the :class:`~anonlab.types.Capture` and :class:`~anonlab.types.Release` protocols.

Preset values live in one place, ``conf/<stage>/<name>.yaml`` (with the physical assumptions behind them): a
registered preset class reads its file when built (:func:`preset_values`), so ``CAPTURES.build("cctv_720p_far")``
from Python gives the same stage as ``capture=cctv_720p_far`` on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from anonlab.registry import Registry
from anonlab.types import check_images

#: the stage configs: ``conf/capture/<name>.yaml`` and ``conf/release/<name>.yaml`` (installed with the package)
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class CaptureStage(nn.Module):
    """Base of the capture stages (implements :class:`anonlab.types.Capture`)."""

    name: ClassVar[str] = ""

    def capture(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def capture_boxes(self, boxes: Tensor, size_hw: tuple[int, int]) -> Tensor:
        """Map float32 (N, 4) xyxy boxes of an input frame of ``size_hw = (H, W)`` into the captured frame."""
        return boxes

    def params(self) -> dict[str, Any]:
        return {}


class ReleaseStage(nn.Module):
    """Base of the release stages (implements :class:`anonlab.types.Release`)."""

    name: ClassVar[str] = ""

    def release(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}


CAPTURES: Registry[CaptureStage] = Registry("capture")
RELEASES: Registry[ReleaseStage] = Registry("release")


@CAPTURES.register("none")
class IdentityCapture(CaptureStage):
    """Frames as they are: no capture degradation."""

    def capture(self, images: Tensor) -> Tensor:
        check_images(images, "capture input")
        return images


@RELEASES.register("none")
class IdentityRelease(ReleaseStage):
    """Frames as they are: no release re-encoding."""

    def release(self, images: Tensor) -> Tensor:
        check_images(images, "release input")
        return images


def preset_values(stage: str, name: str) -> dict[str, Any]:
    """The values of ``conf/<stage>/<name>.yaml`` (without ``_target_``), the one home of a preset's numbers.
    Raises ``ValueError`` when ``name`` has no file there."""
    from omegaconf import OmegaConf

    path = CONF_DIR / stage / f"{name}.yaml"
    if not name or not path.is_file():
        raise ValueError(f"{stage} {name!r} has no preset file {path}; build a registered {stage} preset")
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    values.pop("_target_", None)
    return values


def camera_label(capture: CaptureStage, release: ReleaseStage) -> str:
    """The ``camera`` column of result rows: ``none`` when both stages are off, the capture's name when only it
    is on, else ``<capture>+<release>`` (e.g. ``cctv_720p_far+social``, ``none+social``)."""
    if release.name == "none":
        return capture.name
    return f"{capture.name}+{release.name}"
