"""Ultralytics YOLO (v8/11/26 detection checkpoints) as a batched, differentiable torch person detector.

Only the ``nn.Module`` is used: no ``YOLO(...)`` god object, no ``predict``, no downloads. Images are letterboxed in
torch (long side to ``imgsz``, short side padded to a multiple of the model stride, top-left, pad 114), the module
runs on the whole batch, and its (B, 4 + nc, A) output is decoded here (person column, NMS with torchvision).

Ultralytics changes global state when imported (settings file under the user's config dir, telemetry settings,
``torch.save`` replaced, print options, ``OMP_NUM_THREADS``). :func:`prepare_ultralytics` confines that: it is
called by the adapter (never at ``import anonlab``) and imports ultralytics offline with its config in a temp dir.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from anonlab import weights as _weights
from anonlab._checks import check_range
from anonlab.detectors._common import clip_boxes, letterbox, nms_detections
from anonlab.detectors.base import DETECTORS
from anonlab.types import Detections, Detector, check_images

PAD_VALUE = 114.0 / 255.0
_PRINT_OPTS = ("precision", "threshold", "edgeitems", "linewidth", "sci_mode")


def prepare_ultralytics():
    """Import ``ultralytics`` offline and side-effect-contained; return the ``ultralytics.utils`` module.

    Before the first import: ``YOLO_OFFLINE=1`` (no DNS probe, no downloads), ``YOLO_AUTOINSTALL=0`` (no
    ``pip install`` at run time), and ``YOLO_CONFIG_DIR`` / ``MPLCONFIGDIR`` set to fresh temp dirs
    (``tempfile.mkdtemp``, once per process) unless the user has set them, so nothing is written under the home
    directory. After it: settings ``sync`` off (no telemetry / crash reports), and the import's global patches
    undone (``torch.save``, ``PIL.Image.open``, torch print options, ``OMP_NUM_THREADS`` if it was unset). Idempotent. If ultralytics
    was already imported by someone else, only ``sync`` is turned off (the env vars would come too late).
    """
    first = "ultralytics" not in sys.modules
    if first:
        os.environ["YOLO_OFFLINE"] = "1"
        os.environ["YOLO_AUTOINSTALL"] = "0"
        for var in ("YOLO_CONFIG_DIR", "MPLCONFIGDIR"):
            if not os.environ.get(var):
                os.environ[var] = tempfile.mkdtemp(prefix=f"anonlab-{var.lower()}-")
        had_omp = "OMP_NUM_THREADS" in os.environ
        torch_save = torch.save
        opts = torch._tensor_str.PRINT_OPTS
        print_opts = {k: getattr(opts, k) for k in _PRINT_OPTS}
        pil_open = Image.open

    import ultralytics.utils as uu
    import ultralytics.utils.patches  # noqa: F401  (replaces PIL.Image.open when imported; undone below)

    if first:
        # its Image.open retries unidentified files through a HEIF plugin it would pip-install: anonlab's reader
        # then raised ModuleNotFoundError instead of its one-line ImageReadError (found by the full test suite)
        Image.open = pil_open
        torch.save = torch_save
        for k, v in print_opts.items():
            setattr(opts, k, v)
        if not had_omp:
            os.environ.pop("OMP_NUM_THREADS", None)
    if uu.SETTINGS.get("sync", True):
        uu.SETTINGS.update({"sync": False})
    return uu


def load_yolo_module(path: Path) -> nn.Module:
    """An eval-mode, frozen ultralytics detection ``nn.Module`` from an existing ``.pt`` checkpoint or model ``.yaml``.

    The path must exist: ultralytics would otherwise try to download a bare name such as ``yolov8n.pt``.
    A ``.yaml`` builds an untrained model (scale from the stem, e.g. ``yolov8n.yaml``), useful for tests only.
    """
    if not path.is_file():
        raise FileNotFoundError(f"yolo: weights file {path} does not exist (expected a local .pt or model .yaml)")
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".yaml", ".yml"):
        raise ValueError(f"yolo: weights must be a .pt checkpoint or a model .yaml, got {path}")
    prepare_ultralytics()
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel, guess_model_task, load_checkpoint
    from ultralytics.utils.checks import check_yolov5u_filename

    if suffix == ".pt":
        if check_yolov5u_filename(str(path), verbose=False) != str(path):
            raise ValueError(f"yolo: ultralytics would replace {path} by a '...u.pt' download; rename the file")
        model, _ = load_checkpoint(str(path), device="cpu")
    else:
        model = DetectionModel(cfg=str(path), verbose=False)
    task = guess_model_task(model)
    head = model.model[-1] if hasattr(model, "model") else None
    if task != "detect" or not isinstance(head, Detect):
        raise ValueError(f"yolo: {path} is a {task!r} model with head {type(head).__name__}; expected a detect model")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@DETECTORS.register("yolo")
class UltralyticsYOLO(Detector):
    """Any ultralytics YOLO detection model; keeps one class (``person_class``, COCO 0 = person).

    ``forward(images uint8 (B, 3, H, W) RGB) -> Detections`` on ``images.device``; boxes xyxy in input pixels,
    clipped; score = P(person) of each anchor (the person column, whatever the arg-max class), then NMS at
    ``nms_iou`` (ultralytics' predict default 0.7). End-to-end heads (YOLOv10/26, NMS-free) keep their top
    ``max_det`` rows of class ``person_class`` and skip NMS.
    Params: ``weights`` local ``.pt`` (or model ``.yaml`` for an untrained model); ``imgsz`` long side of the network
    input, a multiple of the model stride; ``end2end`` None keeps the checkpoint's head mode, True selects the
    one-to-one (NMS-free) head where there is one, False the one-to-many head + NMS (ultralytics' ``nms`` arg).
    """

    kind = "person"
    classes = ("person",)
    capabilities = frozenset({"differentiable"})
    default_threshold = 0.25
    score_note = "YOLO class probability of person; 0.25 = ultralytics' predict default conf"

    def __init__(
        self,
        weights: str,
        threshold: float | None = None,
        score_floor: float | None = None,
        imgsz: int = 640,
        nms_iou: float = 0.7,
        person_class: int = 0,
        end2end: bool | None = None,
    ) -> None:
        super().__init__(threshold, score_floor)
        if not weights:
            raise ValueError("yolo: weights is required: a local .pt checkpoint (e.g. yolov8n.pt) or a model .yaml")
        check_range("nms_iou", nms_iou, 0.0, 1.0, lo_open=True, where="yolo")
        if str(weights) in _weights.KNOWN:  # a known name (`anonlab weights fetch yolov8n`): found locally, hash checked
            weights = _weights.resolve(_weights.KNOWN[str(weights)])
        self.weights_path = Path(os.fspath(weights)).expanduser().resolve()
        self.model = load_yolo_module(self.weights_path)
        head = self.model.model[-1]
        self.stride = int(max(self.model.stride.tolist()))
        if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz <= 0 or imgsz % self.stride:
            raise ValueError(f"yolo: imgsz must be a positive multiple of the model stride {self.stride}, got {imgsz}")
        if isinstance(person_class, bool) or not isinstance(person_class, int) or not 0 <= person_class < head.nc:
            raise ValueError(f"yolo: person_class must be an int in [0, {head.nc}), got {person_class!r}")
        self.imgsz, self.nms_iou, self.person_class = imgsz, float(nms_iou), person_class
        if end2end is not None:
            if end2end and getattr(head, "one2one_cv2", None) is None:
                raise ValueError(f"yolo: end2end=True needs a one-to-one (NMS-free) head; {self.weights_path} has none")
            head.end2end = bool(end2end)
        self.end2end = bool(getattr(head, "end2end", False))
        self.class_name = str(getattr(self.model, "names", {}).get(person_class, person_class))

    def train(self, mode: bool = True) -> UltralyticsYOLO:
        """The wrapped model stays in eval mode (frozen BatchNorm, inference head): detectors are not trained here."""
        super().train(mode)
        self.model.eval()
        return self

    def network_size(self, size_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the letterboxed network input for an image of ``size_hw``: long side ``imgsz``, short side
        rounded up to a multiple of the stride."""
        h, w = size_hw
        r = self.imgsz / max(h, w)
        s = self.stride
        return (-(-max(1, round(h * r)) // s) * s, -(-max(1, round(w * r)) // s) * s)

    #: v8/11/26 heads have no objectness: the person class probability
    objectives = ("cls",)

    def dense_scores(self, x: Tensor, objective: str) -> Tensor:
        """``(B, A)`` person class probabilities (``cls``); for end-to-end heads ``(B, K)``, the score of rows
        whose class is person."""
        self._check_objective(objective)
        y = self.forward_float(x)
        if self.end2end:  # (B, K, 6): score where the row's class is person
            return y[..., 4] * (y[..., 5] == self.person_class).to(y)
        return y[:, 4 + self.person_class]

    def forward_float(self, x: Tensor) -> Tensor:
        """Differentiable predictions for float RGB images.

        x: float (B, 3, H, W) RGB in [0, 1], any size (letterboxed inside; gradients flow to ``x``).
        Returns, with boxes in pixels of ``x``: for NMS heads (v8/11) ``(B, 4 + nc, A)``: cx, cy, w, h, then
        the nc class probabilities (person = row ``4 + person_class``); for end-to-end heads ``(B, max_det, 6)``:
        x1, y1, x2, y2, score, class.
        """
        if not x.is_floating_point() or x.ndim != 4 or x.shape[1] != 3:
            got = f"{x.dtype} {tuple(x.shape)}"
            raise ValueError(f"yolo: forward_float needs float (B, 3, H, W) RGB in [0, 1], got {got}")
        net_in, r = letterbox(x, self.network_size(tuple(x.shape[-2:])), PAD_VALUE)
        y = self.run_net(self.model, net_in)
        y = y[0] if isinstance(y, (tuple, list)) else y
        if self.end2end:
            return torch.cat([y[..., :4] / r, y[..., 4:]], dim=-1)
        return torch.cat([y[:, :4] / r, y[:, 4:]], dim=1)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        b, _, h, w = images.shape
        if b == 0:
            return Detections.empty(images.device)
        y = self.forward_float(images.float() / 255.0)
        if self.end2end:  # (B, K, 6) xyxy, score, class: already one box per object
            boxes, scores = y[..., :4].reshape(-1, 4), y[..., 4].reshape(-1)
            batch_idx = torch.arange(b, device=y.device).repeat_interleave(y.shape[1])
            keep = (y[..., 5].reshape(-1) == self.person_class) & (scores >= self.score_floor)
            boxes, scores, batch_idx = clip_boxes(boxes[keep], (h, w)), scores[keep], batch_idx[keep]
            return Detections(boxes.float().contiguous(), scores.float(), torch.zeros_like(batch_idx), batch_idx)
        cxcy, wh = y[:, :2].transpose(1, 2), y[:, 2:4].transpose(1, 2)  # (B, A, 2)
        head = self.model.model[-1]
        if getattr(head, "xyxy", False):
            boxes = y[:, :4].transpose(1, 2).reshape(-1, 4)
        else:
            boxes = torch.cat([cxcy - wh / 2, cxcy + wh / 2], dim=-1).reshape(-1, 4)
        scores = y[:, 4 + self.person_class].reshape(-1)
        batch_idx = torch.arange(b, device=y.device).repeat_interleave(y.shape[2])
        labels = torch.zeros_like(batch_idx)
        return nms_detections(clip_boxes(boxes, (h, w)), scores, labels, batch_idx, self.nms_iou, self.score_floor)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, weights={str(self.weights_path)!r}, imgsz={self.imgsz}, nms_iou={self.nms_iou}, "
            f"person_class={self.person_class} ({self.class_name!r}), end2end={self.end2end}"
        )
