"""Core types shared by every stage: image batches, ``Detections``, ground truth, and the ``Detector`` base.

Conventions (see STYLE.md §3):
- images: ``uint8 (B, 3, H, W)`` RGB, contiguous, one device, in and out of every stage;
- boxes: ``float32 (N, 4)`` xyxy in pixels of the image they index, ``0 <= x1 <= x2``;
- scores ``float32 (N,)`` in [0, 1]; labels ``int64 (N,)`` indexing the detector's ``classes``;
- a flat ``batch_idx (N,) int64`` in [0, B) says which image a box belongs to. Empty is N == 0, never None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

Kind = Literal["face", "person"]
KINDS: tuple[str, ...] = ("face", "person")


class SampleError(ValueError):
    """One sample (an image or frame) cannot be used, for a reason of its own: its decoded size differs from the
    size its annotations record, rescaling it to ``scene.face_px`` would need an absurd frame, ... The message
    names the sample and the reason, on one line. Datasets and per-sample steps (rescaling, padding) raise it; the
    engine lists the sample in run.json's ``failures`` and goes on (exit 3). A bad configuration is not a
    ``SampleError``: it stops the job before any work (exit 2). :class:`anonlab.io.images.ImageReadError` (a file
    that does not decode) is handled the same way."""


def check_images(images: Tensor, where: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is a ``uint8 (B, 3, H, W)`` tensor. Never syncs the GPU."""
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{where} must be a uint8 (B, 3, H, W) RGB tensor, got {got}")


@dataclass(frozen=True)
class Detections:
    """N detections over a batch of B images, all on one device.

    boxes ``(N, 4) float32`` xyxy pixels; scores ``(N,) float32`` in [0, 1]; labels ``(N,) int64``;
    batch_idx ``(N,) int64`` in [0, B). Empty is N == 0, never None.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    batch_idx: Tensor

    def __post_init__(self) -> None:  # shape/dtype/device only: these never sync the GPU
        n = self.boxes.shape[0] if self.boxes.ndim else -1
        if self.boxes.dtype != torch.float32 or self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must be float32 (N, 4), got {self.boxes.dtype} {tuple(self.boxes.shape)}")
        for name, dtype in (("scores", torch.float32), ("labels", torch.int64), ("batch_idx", torch.int64)):
            t = getattr(self, name)
            if t.shape != (n,) or t.dtype != dtype or t.device != self.boxes.device:
                raise ValueError(
                    f"{name} must be {dtype} ({n},) on {self.boxes.device}, got {t.dtype} {tuple(t.shape)} on {t.device}"
                )

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Detections:
        i = torch.empty(0, dtype=torch.int64, device=device)
        return cls(torch.empty(0, 4, device=device), torch.empty(0, device=device), i, i.clone())

    @classmethod
    def cat(cls, parts: list[Detections], device: torch.device | str | None = None) -> Detections:
        """Concatenate detections that already index the same batch."""
        if not parts:
            return cls.empty(device or "cpu")
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in ("boxes", "scores", "labels", "batch_idx")))

    @classmethod
    def from_list(
        cls,
        boxes: list[Tensor],
        scores: list[Tensor] | None = None,
        labels: list[Tensor] | None = None,
        device: torch.device | str = "cpu",
    ) -> Detections:
        """Build from one ``(Ni, 4)`` box tensor per image (scores default 1, labels default 0)."""
        if not boxes:
            return cls.empty(device)
        counts = torch.tensor([len(b) for b in boxes], device=device)
        b = torch.cat([torch.as_tensor(x, dtype=torch.float32).reshape(-1, 4) for x in boxes]).to(device)
        s = (
            torch.cat([torch.as_tensor(x, dtype=torch.float32).reshape(-1) for x in scores]).to(device)
            if scores is not None
            else torch.ones(len(b), device=device)
        )
        lab = (
            torch.cat([torch.as_tensor(x, dtype=torch.int64).reshape(-1) for x in labels]).to(device)
            if labels is not None
            else torch.zeros(len(b), dtype=torch.int64, device=device)
        )
        idx = torch.repeat_interleave(torch.arange(len(boxes), device=device), counts)
        return cls(b, s, lab, idx)

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def select(self, keep: Tensor) -> Detections:
        """Subset by a bool mask or an index tensor."""
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.batch_idx[keep])

    def above(self, threshold: float) -> Detections:
        return self.select(self.scores >= threshold)

    def to(self, device: torch.device | str) -> Detections:
        return Detections(*(getattr(self, f).to(device) for f in ("boxes", "scores", "labels", "batch_idx")))

    def for_image(self, i: int) -> Detections:
        return self.select(self.batch_idx == i)

    def with_batch_offset(self, offset: int) -> Detections:
        return Detections(self.boxes, self.scores, self.labels, self.batch_idx + offset)


@dataclass(frozen=True)
class GroundTruth:
    """Annotations of one image, CPU tensors.

    faces ``(F, 4) float32`` and persons ``(P, 4) float32`` xyxy pixels of the image as loaded;
    face_ids / person_ids ``int64`` identity per box, -1 where unknown;
    ``ignore_faces`` / ``ignore_persons`` bool per box: matched detections of these count neither as TP nor FP
    (e.g. WIDER's invalid faces); ``pseudo_gt`` True when the boxes come from detectors, not from people.
    """

    faces: Tensor = field(default_factory=lambda: torch.empty(0, 4))
    persons: Tensor = field(default_factory=lambda: torch.empty(0, 4))
    face_ids: Tensor | None = None
    person_ids: Tensor | None = None
    ignore_faces: Tensor | None = None
    ignore_persons: Tensor | None = None
    pseudo_gt: bool = False

    def __post_init__(self) -> None:
        for kind in KINDS:
            boxes = getattr(self, f"{kind}s")
            if boxes.dtype != torch.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(f"{kind} boxes must be float32 (N, 4), got {boxes.dtype} {tuple(boxes.shape)}")
            n = boxes.shape[0]
            for extra, fill, dtype in ((f"{kind}_ids", -1, torch.int64), (f"ignore_{kind}s", False, torch.bool)):
                t = getattr(self, extra)
                if t is None:  # fill defaults so consumers never see None
                    object.__setattr__(self, extra, torch.full((n,), fill, dtype=dtype))
                elif t.shape != (n,) or t.dtype != dtype:
                    raise ValueError(f"{extra} must be {dtype} ({n},), got {t.dtype} {tuple(t.shape)}")

    def boxes(self, kind: str) -> Tensor:
        if kind not in KINDS:
            raise ValueError(f"unknown object kind {kind!r}; valid: {', '.join(KINDS)}")
        return getattr(self, f"{kind}s")

    def ignore(self, kind: str) -> Tensor:
        return getattr(self, f"ignore_{kind}s")

    def ids(self, kind: str) -> Tensor:
        return getattr(self, f"{kind}_ids")


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: ``image`` is ``uint8 (3, H, W)`` RGB, on the CPU (or on the CUDA device when the
    engine decodes JPEGs there, see :func:`anonlab.io.images.decode_on`). ``notes``: ``{file path: one line}``
    saying what the reader did to the stored pixels (EXIF or display-matrix rotation, 16-bit scaling) or what
    damage it found (a truncated video); the engine records them per file in run.json (``reader_notes``)."""

    image_id: str
    image: Tensor
    gt: GroundTruth
    path: str = ""
    notes: dict[str, str] = field(default_factory=dict)


class Detector(nn.Module):
    """Base of every detector adapter.

    ``forward(images)`` takes ``uint8 (B, 3, H, W)`` RGB on any device and returns ``Detections`` on the same
    device, in pixels of the input images, with every detection whose score is >= ``score_floor`` (the low
    cut used for AP; compare with ``threshold`` for TP/FP/FN). Class attributes are readable without
    building the model (weights are loaded in ``__init__``).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[Kind]
    classes: ClassVar[tuple[str, ...]] = ("face",)
    #: e.g. {"differentiable"} (a torch graph from pixels to scores), {"cpu_only"} (runs on the host)
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: what the default threshold and score mean, one line
    score_note: ClassVar[str] = "model confidence in [0, 1]"
    default_threshold: ClassVar[float] = 0.5

    def __init__(self, threshold: float | None = None, score_floor: float | None = None) -> None:
        super().__init__()
        self.threshold = float(self.default_threshold if threshold is None else threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"{self.name}: threshold must be in [0, 1], got {threshold!r}")
        floor = min(0.05, self.threshold) if score_floor is None else float(score_floor)
        if not 0.0 <= floor <= self.threshold:
            raise ValueError(f"{self.name}: score_floor must be in [0, threshold={self.threshold}], got {score_floor!r}")
        self.score_floor = floor

    def forward(self, images: Tensor) -> Detections:  # pragma: no cover - abstract
        raise NotImplementedError

    #: autocast dtype of the network part (None: float32); torch ("differentiable") detectors only
    amp_dtype: torch.dtype | None = None
    #: the dense scores an attack can minimise (see :class:`DenseScorer`); empty: none declared
    objectives: ClassVar[tuple[str, ...]] = ()

    def dense_scores(self, x: Tensor, objective: str) -> Tensor:
        """``x float32 (B, 3, H, W)`` RGB in [0, 1] -> ``(B, A)`` scores of ``objective`` (one of
        :attr:`objectives`), differentiable w.r.t. ``x`` (:class:`DenseScorer`). Raises ``ValueError`` for an
        objective the detector does not declare."""
        raise ValueError(f"{self.name} declares no dense scores (objectives: none)")

    def _check_objective(self, objective: str) -> None:
        if objective not in self.objectives:
            raise ValueError(f"{self.name}: unknown objective {objective!r}; valid: {', '.join(self.objectives)}")

    def set_precision(self, precision: str) -> bool:
        """Run the network under autocast at ``precision`` (``fp32``, ``bf16`` or ``fp16``); pre- and
        post-processing (resizing, box decoding, NMS) stay float32. Returns False, changing nothing, for detectors
        that are not torch graphs (OpenCV, dlib, MTCNN): they always run at their own precision."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if "differentiable" not in self.capabilities:
            return False
        self.amp_dtype = PRECISIONS[precision]
        return True

    def run_net(self, net: nn.Module, *args: Tensor) -> Any:
        """``net(*args)``, under autocast when :meth:`set_precision` chose a reduced precision; floating
        outputs come back as float32."""
        if self.amp_dtype is None:
            return net(*args)
        with torch.autocast(args[0].device.type, dtype=self.amp_dtype):
            out = net(*args)
        return _to_float32(out)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, threshold={self.threshold}, score_floor={self.score_floor}"


#: names accepted by :meth:`Detector.set_precision`
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _to_float32(out: Any) -> Any:
    if isinstance(out, Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple
        return type(out)(*(_to_float32(o) for o in out))
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float32(o) for o in out)
    return out


# ---------------------------------------------------------------------------------------------- declared contracts


@runtime_checkable
class Defense(Protocol):
    """What the engine needs of a defense setting; :class:`anonlab.defenses.base.DefenseBase` implements it.

    ``defense(images, regions) -> images``: ``images`` ``uint8 (B, 3, H, W)`` RGB and ``regions``
    :class:`Detections` (xyxy pixels of those images) on the same device; returns a new ``uint8 (B, 3, H, W)``.
    A *redaction* (blur, pixelation, a mask) edits the recorded footage: the engine applies it to the captured
    frame at the region source's boxes. A *worn* defense (``worn = True``: a printed patch) is in the scene: the
    engine applies it to the input frame on the annotated objects of kind :meth:`worn_on` (whoever wears it,
    whatever a detector finds), and the camera then records it.
    """

    name: ClassVar[str]
    worn: ClassVar[bool]

    def worn_on(self) -> Kind | None:
        """The object kind a worn defense sits on (``"person"`` for a torso patch), None for a redaction."""
        ...

    def controls(self) -> list[Defense]:
        """Settings that must run beside this one to read it honestly (a patch brings a noise and a grey patch of
        the same size and placement); empty for most defenses."""
        ...

    def label(self) -> str:
        """The setting's short name in results, e.g. ``pixelate(blocks=8)``."""
        ...

    def params(self) -> dict[str, Any]: ...

    def params_json(self) -> str: ...

    def __call__(self, images: Tensor, regions: Detections) -> Tensor: ...


@runtime_checkable
class Capture(Protocol):
    """The camera's first stage (:data:`anonlab.camera.CAPTURES`): the footage as the camera records it, before
    any redaction. :class:`anonlab.camera.CaptureStage` implements it.

    ``capture(images)`` maps ``uint8 (B, 3, H, W)`` RGB to ``uint8 (B, 3, H', W')`` on the same device (a capture
    may rescale: distance, sensor resolution), never modifying its input. ``capture_boxes(boxes, (H, W))`` maps
    ``float32 (N, 4)`` xyxy pixel boxes of an input frame of that size into the captured frame (how ground truth
    follows the capture). ``params()`` gives its configuration values.
    """

    name: ClassVar[str]

    def capture(self, images: Tensor) -> Tensor: ...

    def capture_boxes(self, boxes: Tensor, size_hw: tuple[int, int]) -> Tensor: ...

    def params(self) -> dict[str, Any]: ...


@runtime_checkable
class Release(Protocol):
    """The camera's last stage (:data:`anonlab.camera.RELEASES`): the redacted footage as it is posted (resized,
    re-encoded). :class:`anonlab.camera.ReleaseStage` implements it.

    ``release(images)`` maps ``uint8 (B, 3, H, W)`` RGB to ``uint8 (B, 3, H, W)`` (same size, so boxes of the
    captured frame stay valid) on the same device, never modifying its input. ``params()`` gives its
    configuration values.
    """

    name: ClassVar[str]

    def release(self, images: Tensor) -> Tensor: ...

    def params(self) -> dict[str, Any]: ...


@runtime_checkable
class DenseScorer(Protocol):
    """A differentiable detector's dense scores, the interface attacks (adversarial patches, EOT) optimise against.

    ``objectives`` declares which scores the detector has (Thys et al. 2019: ``obj`` objectness, ``cls`` the
    person class probability, ``obj_cls`` their product; ``heatmap`` the face score map of a dense face detector).
    ``dense_scores(x, objective)`` maps ``x`` ``float32 (B, 3, H, W)`` RGB in [0, 1] (any size) to ``(B, A)``
    scores in [0, 1], one per anchor or map cell, differentiable w.r.t. ``x``. Checked when a trainer is built
    (:func:`anonlab.attacks.objectives.check_objective`), as ART checks ``_estimator_requirements``.
    """

    name: ClassVar[str]
    objectives: ClassVar[tuple[str, ...]]

    def dense_scores(self, x: Tensor, objective: str) -> Tensor: ...


@runtime_checkable
class Recognizer(Protocol):
    """A face (or body) embedder, for identity leakage: does a redacted person stay unidentified?

    ``embed(crops)`` maps aligned crops ``uint8 (N, 3, H, W)`` RGB with ``(H, W) == input_size_hw`` to ``float32
    (N, embedding_dim)`` on the same device. ``alignment`` names how a crop is made from a detection: ``"arcface5"``
    (similarity transform of 5 landmarks to the ArcFace 112x112 template), ``"dlib5"`` (dlib's 5-point chip),
    ``"box"`` (the box resized, for body re-identification or when no landmarks are found). ``distance`` is
    ``"cosine"`` (1 - cosine similarity of L2-normalised embeddings) or ``"euclidean"``; ``threshold`` the
    published same-person operating point in that distance, or None where the source gives none; ``min_face_px``
    the shorter box side in pixels below which a face is "not embedded" (counted, never guessed).
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    input_size_hw: ClassVar[tuple[int, int]]
    alignment: ClassVar[str]
    embedding_dim: ClassVar[int]
    distance: ClassVar[str]
    threshold: ClassVar[float | None]
    min_face_px: ClassVar[int]

    def embed(self, crops: Tensor) -> Tensor: ...
