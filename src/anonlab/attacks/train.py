"""Patch training: Adam on the patch pixels against one frozen, differentiable detector, with EOT.

Each step takes a minibatch of training frames (letterboxed to ``max_side`` x ``max_side``), pastes the patch on
every annotated person torso (or face) with a random pose, colour change, noise and blur (:mod:`.eot`), optionally
runs the camera's differentiable capture (``capture_float``), and minimises
``detection_loss + w_nps * non_printability + w_tv * total_variation`` (:mod:`.objectives`). The patch stays in
[0, 1] by clamping after each step (Thys et al. 2019 do the same).

Detector integrity: the trainer builds its own detector, puts it in eval mode with ``requires_grad_(False)``, hashes
every parameter and buffer before and after (:func:`weights_hash`) and raises if anything changed; the detector
object is dropped when training ends and never handed to evaluation, which builds fresh detectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from anonlab._checks import usable_device
from anonlab.attacks.eot import EOT, photometric, sample_pose
from anonlab.attacks.objectives import (
    check_differentiable,
    check_objective,
    default_objective,
    detection_loss,
    load_palette,
    non_printability,
    score_fn,
    total_variation,
)
from anonlab.build import build_config
from anonlab.camera import SimulatedCapture
from anonlab.defenses.patch import TARGETS, paste_patch, save_patch
from anonlab.detectors import DETECTORS
from anonlab.detectors._common import letterbox
from anonlab.progress import progress_bar
from anonlab.provenance import package_version, plain
from anonlab.types import Detector

PAD = 114.0 / 255.0
DEFAULT_SIZE_HW = {"torso": (300, 300), "face": (150, 300)}
KIND_OF_TARGET = {"torso": "person", "face": "face"}


class PatchTrainingError(ValueError):
    """A bad training configuration or input, one line, raised before training starts."""


def weights_hash(module: nn.Module) -> str:
    """sha256 over every parameter and buffer of ``module`` (persistent or not): names, dtypes, shapes, bytes."""
    h = hashlib.sha256()
    tensors = {**dict(module.named_buffers()), **module.state_dict(keep_vars=True)}
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensors[name].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def split_ids(refs: list[str], train: list[str] | None, held_out: float, seed: int) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids). ``train`` given: exactly those (each must exist); else a seeded hash split that
    keeps a share ``held_out`` of the images out of training (stable when images are added)."""
    if train is not None:
        unknown = [i for i in train if i not in refs]
        if unknown:
            raise PatchTrainingError(f"images.train names {unknown}, not in the dataset (first ids: {refs[:5]})")
        keep = set(train)
        return [r for r in refs if r in keep], [r for r in refs if r not in keep]
    if not 0 <= held_out < 1:
        raise PatchTrainingError(f"images.held_out must be a share in [0, 1), got {held_out!r}")
    cut = int(held_out * 2**32)
    held = {r for r in refs if int(hashlib.sha256(f"{seed}:{r}".encode()).hexdigest()[:8], 16) < cut}
    return [r for r in refs if r not in held], [r for r in refs if r in held]


def load_frames(dataset, ids: list[str], kind: str, max_side: int) -> tuple[Tensor, Tensor, Tensor]:
    """Training frames letterboxed (top-left, grey pad) into ``max_side`` squares: float (N, 3, S, S) in [0, 1],
    boxes (M, 4) xyxy in those pixels, owner (M,) int64 frame index. Frames without a ``kind`` box are skipped."""
    if kind in dataset.pseudo_kinds:
        raise PatchTrainingError(f"dataset {dataset.name!r} has no {kind} annotations; patch training needs them")
    refs = dataset.refs()
    frames, boxes, owner = [], [], []
    for image_id in ids:
        s = dataset.load(refs.index(image_id))
        b = s.gt.boxes(kind)[~s.gt.ignore(kind)]
        if b.shape[0] == 0:
            continue
        x, r = letterbox(s.image[None].float() / 255.0, (max_side, max_side), PAD)
        boxes.append(b * r)
        owner.append(torch.full((b.shape[0],), len(frames), dtype=torch.int64))
        frames.append(x[0])
    if not frames:
        raise PatchTrainingError(f"none of the {len(ids)} training images has an annotated {kind}; "
                                 f"choose images with {kind}s (images.train=[...]) or another dataset")
    return torch.stack(frames), torch.cat(boxes), torch.cat(owner)


@dataclass
class TrainedPatch:
    """A training run's result: ``patch`` float (3, H, W) in [0, 1] on the CPU, its metadata, and the files."""

    patch: Tensor
    meta: dict[str, Any]
    png: Path | None = None
    json: Path | None = None


class PatchTrainer:
    """One patch against one frozen detector. ``frames`` float (N, 3, S, S), ``boxes`` (M, 4) with ``owner`` (M,),
    all on the detector's device; ``patch`` float (3, H, W) in [0, 1] is the only tensor with a gradient."""

    def __init__(self, detector: Detector, objective: str, frames: Tensor, boxes: Tensor, owner: Tensor,
                 patch_hw: tuple[int, int], target: str = "torso", size: float | None = None,
                 center_y: float | None = None, eot: EOT | None = None, camera: nn.Module | None = None,
                 lr: float = 0.03, nps_weight: float = 0.01, tv_weight: float = 2.5, palette: Tensor | None = None,
                 batch_size: int = 8, init: str = "grey", seed: int = 0) -> None:
        if target not in TARGETS:
            raise PatchTrainingError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
        if init not in ("grey", "random"):
            raise PatchTrainingError(f"init must be grey or random, got {init!r}")
        self.device = frames.device
        self.detector = detector.eval().requires_grad_(False)
        self.scores = score_fn(detector, objective)
        self.frames, self.boxes, self.owner = frames, boxes, owner
        self.target = target
        self.size = TARGETS[target]["size"] if size is None else float(size)
        self.center_y = TARGETS[target]["center_y"] if center_y is None else float(center_y)
        self.eot = eot or EOT()
        self.camera = camera
        self.nps_weight, self.tv_weight = float(nps_weight), float(tv_weight)
        self.palette = load_palette(None, self.device) if palette is None else palette.to(self.device)
        self.batch_size = max(1, min(int(batch_size), frames.shape[0]))
        self.gen = torch.Generator(device=self.device).manual_seed(int(seed))
        h, w = patch_hw
        init_t = (torch.full((3, h, w), 0.5, device=self.device) if init == "grey"
                  else torch.rand((3, h, w), generator=self.gen, device=self.device))
        self.patch = init_t.requires_grad_(True)
        self.opt = torch.optim.Adam([self.patch], lr=lr)
        self._order = torch.empty(0, dtype=torch.int64, device=self.device)

    def _next_batch(self) -> Tensor:
        if self._order.numel() < self.batch_size:  # reshuffle: every frame once per epoch
            perm = torch.randperm(self.frames.shape[0], generator=self.gen, device=self.device)
            self._order = torch.cat([self._order, perm])
        idx, self._order = self._order[: self.batch_size], self._order[self.batch_size:]
        return idx

    def render(self, idx: Tensor, randomize: bool) -> Tensor:
        """Frames ``idx`` with the patch on every box (random EOT if ``randomize``), after the camera capture."""
        pos = torch.full((self.frames.shape[0],), -1, dtype=torch.int64, device=self.device)
        pos[idx] = torch.arange(idx.shape[0], device=self.device)
        sel = pos[self.owner] >= 0
        boxes, bidx = self.boxes[sel], pos[self.owner[sel]]
        frames = self.frames[idx]
        if boxes.shape[0]:
            ranges = self.eot.pose if randomize else type(self.eot.pose)()
            pose = sample_pose(boxes.shape[0], ranges, self.gen)
            effect = (lambda colour: photometric(colour, self.eot, self.gen)) if randomize else None
            frames = paste_patch(frames, self.patch, boxes, bidx, self.target, self.size, self.center_y, pose, effect)
        if self.camera is not None:
            frames = self.camera.capture_float(frames)
        return frames

    def step(self) -> dict[str, Tensor]:
        """One Adam step on a random minibatch; returns the (detached) loss terms."""
        x = self.render(self._next_batch(), randomize=True)
        det = detection_loss(self.scores(x))
        nps = non_printability(self.patch, self.palette)
        tv = total_variation(self.patch)
        loss = det + self.nps_weight * nps + self.tv_weight * tv
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.patch.clamp_(0, 1)
        return {"loss": loss.detach(), "det": det.detach(), "nps": nps.detach(), "tv": tv.detach()}

    @torch.no_grad()
    def fixed_loss(self) -> float:
        """Detection loss on every training frame with the patch exactly placed (no EOT): comparable across steps."""
        n = self.frames.shape[0]
        per = [self.scores(self.render(torch.arange(i, min(n, i + self.batch_size), device=self.device),
                                       randomize=False)).amax(1) for i in range(0, n, self.batch_size)]
        return float(torch.cat(per).mean())


# ---------------------------------------------------------------------------------------------- config-driven run


def train_patch(cfg: DictConfig, progress: bool = True, log=None, write: bool = True) -> TrainedPatch:
    """Train one patch as described by ``cfg`` (the composed ``conf/patch/train.yaml``); write
    ``<out>/<name>.png`` and ``<out>/<name>.json`` unless ``write`` is False. Validates everything first."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    name = detector_name(cfg.detector)
    check_differentiable(name)  # class attributes only: fails before any weights are read
    objective = str(cfg.objective) if cfg.get("objective") else default_objective(DETECTORS.get(name))
    try:
        check_objective(DETECTORS.get(name), str(objective))
    except ValueError as e:
        raise PatchTrainingError(str(e)) from None
    try:
        device = usable_device(cfg.device)
    except ValueError as e:
        raise PatchTrainingError(str(e)) from None
    target = str(cfg.target)
    if target not in TARGETS:
        raise PatchTrainingError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
    kind, found = KIND_OF_TARGET[target], DETECTORS.get(name).kind
    if found != kind:
        raise PatchTrainingError(f"target={target} needs a {kind} detector; {name!r} finds {found}s")
    size, center_y = cfg.placement.get("size"), cfg.placement.get("center_y")
    if (size is not None and not 0 < float(size) <= 4) or (center_y is not None and not 0 <= float(center_y) <= 1):
        raise PatchTrainingError(f"placement.size must be in (0, 4] and placement.center_y in [0, 1] (or null), got "
                                 f"{size!r}, {center_y!r}")
    steps, max_side = int(cfg.steps), int(cfg.max_side)
    if steps < 0 or max_side < 32:
        raise PatchTrainingError(f"steps must be >= 0 and max_side >= 32, got steps={steps}, max_side={max_side}")
    patch_hw = tuple(cfg.patch_size) if cfg.get("patch_size") else DEFAULT_SIZE_HW[target]
    if len(patch_hw) != 2 or min(patch_hw) < 2:
        raise PatchTrainingError(f"patch_size must be [H, W] pixels, each >= 2, got {list(patch_hw)}")
    try:
        eot = EOT.from_dict(plain(cfg.eot) or {})
    except ValueError as e:
        raise PatchTrainingError(str(e)) from None
    palette = load_palette(cfg.get("palette"))

    detector = _build(cfg.detector, f"detector {name}")  # this trainer's own instance, never shared
    dataset = _build(cfg.dataset, "dataset")
    capture_cfg = cfg.get("capture")
    camera = _build(capture_cfg, "capture") if capture_cfg is not None else None
    if camera is not None and camera.name == "none":
        camera = None
    if camera is not None and not isinstance(camera, SimulatedCapture):
        raise PatchTrainingError(f"capture {camera.name!r} has no differentiable capture (capture_float)")

    refs = dataset.refs()
    limit = cfg.images.get("limit")
    refs = refs[: int(limit)] if limit is not None else refs
    train_list = plain(cfg.images.get("train"))
    train_ids, held_ids = split_ids(refs, train_list, float(cfg.images.held_out), int(cfg.seed))
    frames, boxes, owner = load_frames(dataset, train_ids, kind, max_side)

    detector.to(device)
    before = weights_hash(detector)
    trainer = PatchTrainer(
        detector, objective, frames.to(device), boxes.to(device), owner.to(device), patch_hw, target,
        cfg.placement.get("size"), cfg.placement.get("center_y"), eot, camera.to(device) if camera else None,
        float(cfg.lr), float(cfg.loss.nps), float(cfg.loss.tv), palette, int(cfg.batch_size), str(cfg.init),
        int(cfg.seed))
    initial = trainer.fixed_loss()
    every = max(1, steps // 50)
    history: dict[str, list[float]] = {"loss": [], "det": [], "nps": [], "tv": []}
    window: list[dict[str, Tensor]] = []
    bar = progress_bar(progress, "loss {task.fields[loss]:.4f}")
    t0 = time.perf_counter()
    with bar or contextlib.nullcontext():
        task = bar.add_task(f"patch vs {name}", total=steps, loss=float("nan")) if bar else None
        for i in range(steps):
            window.append(trainer.step())
            if len(window) == every or i == steps - 1:  # one host sync per `every` steps
                means = {k: float(torch.stack([w[k] for w in window]).mean()) for k in history}
                for k, v in means.items():
                    history[k].append(round(v, 6))
                window = []
                if bar:
                    bar.update(task, completed=i + 1, loss=means["loss"])
    train_s = time.perf_counter() - t0
    final = trainer.fixed_loss()
    after = weights_hash(detector)
    if after != before:
        raise RuntimeError(f"detector {name!r} changed during patch training (weights sha256 {before[:12]} -> "
                           f"{after[:12]}); refusing to save the patch")
    if any(p.grad is not None for p in detector.parameters()):
        raise RuntimeError(f"detector {name!r} received gradients during patch training")
    patch = trainer.patch.detach().to("cpu")
    placement = {"size": trainer.size, "center_y": trainer.center_y}
    del trainer, detector  # never handed to evaluation

    out_name = str(cfg.get("name") or f"{name}_{objective}_{target}_s{int(cfg.seed)}")
    meta = {
        "name": out_name, "detector": name, "detector_config": plain(cfg.detector),
        "objective": objective, "target": target,
        "placement": placement,
        "patch_size_hw": list(patch_hw), "init": str(cfg.init), "steps": steps, "batch_size": int(cfg.batch_size),
        "lr": float(cfg.lr), "loss_weights": {"nps": float(cfg.loss.nps), "tv": float(cfg.loss.tv)},
        "palette": str(cfg.get("palette") or "stand-in 27-colour grid (not measured)"),
        "transforms": eot.to_dict(), "capture": plain(capture_cfg) if camera is not None else None,
        "max_side": max_side, "seed": int(cfg.seed), "device": str(device),
        "initial_loss": round(initial, 6), "final_loss": round(final, 6),
        "loss_note": ("initial_loss/final_loss: detection loss (mean over the training images of the highest score) "
                      "with the patch exactly placed, no EOT; history: training loss per step (EOT draws, "
                      "plus nps and tv terms), averaged over every_steps"),
        "final_step_loss": history["loss"][-1] if history["loss"] else None,
        "history": {"every_steps": every, **history},
        "weights_sha256": before, "weights_unchanged": True,
        "dataset": plain(cfg.dataset), "dataset_name": dataset.name,
        "train_images": train_ids, "held_out_images": held_ids, "n_train_frames": int(frames.shape[0]),
        "n_train_boxes": int(boxes.shape[0]),
        "train_s": round(train_s, 3), "images_per_s": round(steps * min(int(cfg.batch_size), frames.shape[0])
                                                              / train_s, 3) if steps and train_s > 0 else None,
        "versions": {p: package_version(p) for p in ("anonlab", "torch")},
    }
    result = TrainedPatch(patch, meta)
    if write:
        out = Path(str(cfg.out))
        result.png = save_patch(patch, out / f"{out_name}.png")
        meta["png_sha256"] = hashlib.sha256(result.png.read_bytes()).hexdigest()
        result.json = out / f"{out_name}.json"
        result.json.write_text(json.dumps(meta, indent=2))
    log(f"patch vs {name}: loss {initial:.4f} -> {final:.4f} (exact placement, {frames.shape[0]} frames), "
        f"{meta['images_per_s']} images/s" + (f"; wrote {result.png}" if result.png else ""))
    return result


def detector_name(dcfg: DictConfig) -> str:
    """Registry name of the detector a ``conf/detector/*.yaml`` config builds (from its ``_target_`` class)."""
    from hydra.utils import get_class

    target = dcfg.get("_target_") if OmegaConf.is_config(dcfg) else None
    if not target:
        raise PatchTrainingError(f"detector must be a detector config (conf/detector/NAME.yaml), got {dcfg!r}")
    cls = get_class(str(target))
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise PatchTrainingError(f"detector config builds {target}, which is not an anonlab Detector")
    return cls.name


def _build(cfg: DictConfig, what: str) -> Any:
    """Instantiate a Hydra config; a constructor's own one-line error becomes a :class:`PatchTrainingError`."""
    return build_config(cfg, what, PatchTrainingError)
