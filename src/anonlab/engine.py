"""The batched benchmark loop: frames -> capture -> defense -> release -> detectors -> rows.

Each decoded batch is reused for every defense setting x detector (decode once, evaluate many). Images of
one batch share a size (samples are bucketed by (H, W)). Detections leave the device once per
(batch, setting, detector), when rows are made; matching and AP run on the host.

The pieces around the loop have homes of their own: :mod:`anonlab.build` (components from configs),
:mod:`anonlab.job` (options), :mod:`anonlab.loader` (decode, pad, bucket, stage), :mod:`anonlab.rows`,
:mod:`anonlab.store` (shards, schema), :mod:`anonlab.provenance` (run.json, hashes).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from omegaconf import DictConfig

from anonlab.build import (
    BenchError,
    build_camera,
    build_config,
    build_detectors,
    build_pseudo_panel,
    build_region_detector,
    build_settings,
    group_config,
)
from anonlab.camera import CaptureStage, camera_label
from anonlab.datasets import Dataset, normalize_ground_truth
from anonlab.datasets.base import fingerprint
from anonlab.detectors import DETECTORS
from anonlab.io.images import DEFAULT_MAX_PIXELS, check_device_decode, limit_pixels
from anonlab.job import JobOptions, read_options
from anonlab.loader import Failure, iter_batches, stack_to_device
from anonlab.metrics.pseudo_gt import pseudo_ground_truth
from anonlab.metrics.summary import summarize
from anonlab.progress import progress_bar
from anonlab.provenance import config_hash, plain
from anonlab.rows import RowLabels, make_rows
from anonlab.store import RESULT_SCHEMA, ShardStore, plan_chunks
from anonlab.types import (
    Capture,
    Defense,
    Detections,
    Detector,
    GroundTruth,
    Release,
    Sample,
)


@dataclass
class BenchResult:
    """A finished job. ``table`` holds every result row (Arrow, schema ``RESULT_SCHEMA``); ``rows`` lists them as
    dicts; ``summary`` has one row per (setting, detector)."""

    table: pa.Table
    summary: list[dict]
    failures: list[Failure]
    settings: list[str]
    detectors: list[str]
    wall_s: float
    n_images: int
    job_hash: str = ""
    out: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[dict]:
        return self.table.to_pylist()


@dataclass
class _Job:
    """What every batch of a job needs: the built modules and the row labels."""

    capture: Capture
    release: Release
    settings: list[Defense]
    detectors: dict[str, Detector]
    region_det: Detector | None
    region_thr: float | None
    panel: dict[str, list[Detector]]
    min_votes: dict[str, int]
    target: str
    options: JobOptions
    labels: RowLabels
    observers: tuple = ()


def run_bench(cfg: DictConfig, progress: bool = True, log=None, out: str | Path | None = None,
              observers: tuple = ()) -> BenchResult:
    """Run one benchmark job described by ``cfg`` (the composed ``conf/bench.yaml``); returns rows and summary.

    Everything is built and validated before the first image is decoded. Results are written chunk by chunk as
    Parquet shards under ``out/shards/<job hash>/`` (a temporary folder when ``out`` is None); a re-run with the
    same ``out`` and configuration computes only the chunks a killed run did not finish. Images and video frames
    whose header declares more than ``loader.max_pixels`` pixels are refused (a failed image, or for a video at
    dataset construction a one-line error) before they are decoded.

    ``observers``: callables ``obs(label, setting, clean, released, gts, batch)`` called for every batch x setting
    this call evaluates, with the label and :class:`~anonlab.types.Defense` of the setting, the captured clean frames
    and the released (defended) frames (both ``uint8 (B, 3, H, W)`` on the job's device), the ground truth in
    those frames and the batch's samples (``anonlab recommend`` measures identification and pixel change so).
    They see only the chunks this call computes: a chunk resumed from ``out`` is not evaluated again.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    opt = read_options(cfg)
    with limit_pixels(opt.max_pixels):
        return _run_bench(cfg, opt, progress, log, out, t0, tuple(observers))


def _run_bench(cfg: DictConfig, opt: JobOptions, progress: bool, log, out: str | Path | None,
               t0: float, observers: tuple = ()) -> BenchResult:
    torch.manual_seed(opt.seed)
    device = opt.device
    dataset: Dataset = build_config(cfg.dataset, "dataset")
    capture, release = build_camera(cfg)
    settings = build_settings(cfg)
    detectors = build_detectors(cfg)
    region_det, region_thr, regions_label = build_region_detector(cfg)
    target = cfg.regions.target
    # kinds without annotations that this job needs: those its detectors are scored on, and the region target
    needed = {d.kind for d in detectors.values()} | {target}
    pseudo = tuple(k for k in dataset.pseudo_kinds if k in needed)
    panel = build_pseudo_panel(cfg, pseudo)
    for m in [capture, release, region_det, *detectors.values(), *itertools.chain.from_iterable(panel.values())]:
        if m is not None:
            m.to(device).eval()
    det_precision = {n: opt.precision if d.set_precision(opt.precision) else "fp32" for n, d in detectors.items()}
    region_reduced = region_det is not None and region_det.set_precision(opt.precision)
    if opt.decode == "device":
        try:
            check_device_decode(device)
        except RuntimeError as e:
            raise BenchError(f"loader.decode=device: {e}") from None
    for s in settings:  # a worn patch sits where its target is: torso patches on persons, masks on faces
        wants = s.worn_on() if s.worn else None
        if wants is not None and wants != target:
            raise BenchError(f"{s.label()} is worn on {wants}s but regions.target={target}; "
                             f"set regions.target={wants}")
    if opt.face_px is not None and "face" in dataset.pseudo_kinds:
        raise BenchError("scene.face_px needs human face annotations; this dataset has none")
    refs = dataset.refs()
    try:
        chunks = plan_chunks(min(len(refs), opt.limit) if opt.limit is not None else len(refs), opt.shard_images,
                             opt.split_index, opt.split_count)
    except ValueError as e:
        raise BenchError(str(e)) from None

    det_cfgs = {n: plain(group_config("detector", n, DETECTORS)) for n in detectors}
    # everything that changes a row, besides the setting and the detector: shards of another value never mix in
    common = (plain(cfg.dataset), camera_config(cfg, capture, release), regions_label, opt.iou, opt.face_px,
              plain(cfg.pseudo_gt) if pseudo else None, device.type, opt.pad_to,
              (plain(cfg.region_detector), opt.precision if region_reduced else "fp32")
              if region_det is not None else None,
              opt.decode if device.type == "cuda" else "cpu")
    hashes = {(s.label(), n): config_hash(common, s.name, s.params(), det_cfgs[n],
                                          (cfg.get("detector_overrides") or {}).get(n), det_precision[n])
              for s in settings for n in detectors}
    # the shards' identity: every row's hash, the chunking, and the images (a folder that changed never reuses)
    # (a non-default pixel cap changes which images fail: it joins the identity, leaving default jobs' hashes as they were)
    # (the user's own files join by size and mtime: a file replaced under its name never reuses; fixed public
    # datasets declare none, so their hashes are as before)
    files = fingerprint(dataset.source_files())
    job_hash = config_hash(sorted(hashes.values()), opt.shard_images, refs[: chunks[-1].stop] if chunks else [],
                           *([opt.max_pixels] if opt.max_pixels != DEFAULT_MAX_PIXELS else []),
                           *([files] if files else []))

    job = _Job(capture, release, settings, detectors, region_det, region_thr, panel,
               {k: int(cfg.pseudo_gt.min_votes[k]) for k in panel}, target, opt,
               RowLabels(dataset.name or type(dataset).__name__, camera_label(capture, release), regions_label,
                         opt.iou, settings, detectors, pseudo, hashes), observers)
    with contextlib.ExitStack() as stack:
        root = Path(out) if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store = ShardStore(root / "shards", job_hash, RESULT_SCHEMA)
        store.clean_temp()
        todo = [c for c in chunks if not store.done(c)]
        if len(todo) < len(chunks):
            log(f"resuming: {len(chunks) - len(todo)} of {len(chunks)} result shards already in {store.dir}")
        n_todo = sum(len(c) for c in todo) * len(settings)
        bar = progress_bar(progress and n_todo > 0, "image x setting")
        with bar or contextlib.nullcontext():
            task = bar.add_task("bench", total=n_todo) if bar else None
            advance = (lambda k: bar.advance(task, k)) if bar else (lambda k: None)
            for chunk in todo:
                failures: list[Failure] = []
                skipped: list[str] = []
                notes: dict[str, str] = {}
                rows: list[dict] = []
                n = 0
                for batch in iter_batches(dataset, range(chunk.start, chunk.stop), opt.batch_size, failures, log,
                                          opt.face_px, skipped, opt.workers, opt.decode_device, opt.pad_to, refs,
                                          notes):
                    rows.extend(evaluate_batch(job, batch, advance))
                    n += len(batch)
                store.write(chunk, rows, {"n_images": n, "skipped_no_face": skipped,
                                          "failures": [vars(f) for f in failures], "reader_notes": notes})
        table, metas = store.read(chunks)

    summary = summarize(table, seed=opt.seed)
    failures = [Failure(**f) for m in metas for f in m.get("failures", [])]
    skipped = [s for m in metas for s in m.get("skipped_no_face", [])]
    reader_notes = {k: v for m in metas for k, v in (m.get("reader_notes") or {}).items()}
    return BenchResult(table, summary, failures, [s.label() for s in settings], list(detectors),
                       time.perf_counter() - t0, sum(m.get("n_images", 0) for m in metas), job_hash,
                       Path(out) if out is not None else None,
                       extra={"skipped_no_face": skipped, "reader_notes": reader_notes, "precision": det_precision,
                              "shards": {"count": len(chunks), "computed": len(todo),
                                         "images_per_shard": opt.shard_images,
                                         "split": [opt.split_index, opt.split_count]}})


#: the camera part of the row hash of a job with neither a capture nor a release stage: the configuration such jobs
#: had when the camera was one object (``camera=none``, ``anonlab.camera.IdentityCamera``). Kept so the rows of
#: camera-less jobs (the default) keep their config_hash: their old result shards resume and old results join.
_NO_CAMERA = {"_target_": "anonlab.camera.IdentityCamera"}


def camera_config(cfg: DictConfig, capture: Capture, release: Release) -> Any:
    """What a row's hash records of the camera: the ``capture`` and ``release`` configs, or :data:`_NO_CAMERA`
    when both stages are ``none`` (the hash of camera-less jobs from before the split into two stages)."""
    if capture.name == "none" and release.name == "none":
        return _NO_CAMERA
    return {"capture": plain(cfg.capture), "release": plain(cfg.release)}


def evaluate_batch(job: _Job, batch: list[Sample], advance) -> list[dict]:
    """capture -> regions -> every defense setting -> release -> every detector; then rows (on the host).

    A redaction (blur, pixelation, ...) edits the recorded footage: it acts on the captured frame. A *worn*
    defense (``Defense.worn``: a patch) is in the scene: it is applied to the input frame on the annotated
    objects of ``regions.target`` (whoever wears it, whatever a detector finds), then the camera records it."""
    images = stack_to_device(batch, job.options.device)
    device = images.device
    size = tuple(images.shape[-2:])
    capture, release = job.capture, job.release
    # no_grad, not inference_mode: a defense may need autograd inside (the ``cloak`` defense runs PGD under
    # enable_grad, which inference_mode would override)
    with torch.no_grad():
        gts_in = [s.gt for s in batch]
        if job.panel:  # consensus on the clean, full-resolution frame, then carried through the camera
            gts_in = _pseudo_gts(images, gts_in, job.panel, job.min_votes, job.options.iou)
        captured = capture.capture(images)
        gts = [_capture_gt(capture, g, size, tuple(captured.shape[-2:])) for g in gts_in]
        if job.region_det is None:
            regions = _gt_detections(gts, job.target, device)
        else:
            regions = job.region_det(captured).above(job.region_thr)
        worn_regions = None
        per_setting: dict[str, dict[str, Detections]] = {}
        n_regions: dict[str, list[int]] = {}
        for setting, label in zip(job.settings, job.labels.labels):
            if setting.worn:
                if worn_regions is None:
                    worn_regions = _gt_detections(gts_in, job.target, device)
                used, recorded = worn_regions, capture.capture(setting(images, worn_regions))
            else:
                used, recorded = regions, setting(captured, regions)
            released = release.release(recorded)
            for observe in job.observers:
                observe(label, setting, captured, released, gts, batch)
            per_setting[label] = {n: d(released).to("cpu") for n, d in job.detectors.items()}
            n_regions[label] = torch.bincount(used.batch_idx, minlength=len(batch)).tolist()
            advance(len(batch))
    return make_rows(job.labels, batch, gts, per_setting, n_regions)


def _gt_detections(gts: list[GroundTruth], kind: str, device: torch.device) -> Detections:
    return Detections.from_list([g.boxes(kind) for g in gts], device=device)


def _capture_gt(capture: Capture, gt: GroundTruth, size: tuple[int, int], captured: tuple[int, int]) -> GroundTruth:
    """``gt`` of an input frame of ``size = (H, W)`` carried through the capture's geometry, normalised again
    (clipped, empty boxes dropped) to the ``captured`` frame's (H, W), as datasets normalise it to the input.
    A capture that keeps the base class's identity ``capture_boxes`` leaves ``gt`` as it is."""
    if type(capture).capture_boxes is CaptureStage.capture_boxes:
        return gt
    return normalize_ground_truth(GroundTruth(
        faces=capture.capture_boxes(gt.faces, size), persons=capture.capture_boxes(gt.persons, size),
        face_ids=gt.face_ids, person_ids=gt.person_ids, ignore_faces=gt.ignore_faces,
        ignore_persons=gt.ignore_persons, pseudo_gt=gt.pseudo_gt,
    ), captured)


def _pseudo_gts(images: torch.Tensor, gts: list[GroundTruth], panel: dict[str, list[Detector]],
                min_votes: dict[str, int], iou: float) -> list[GroundTruth]:
    """Replace the boxes of the panel's kinds with consensus pseudo ground truth; keep the other kinds as
    annotated (boxes, ids, ignore flags). The result is normalised to the frame like every loader's ground truth
    (:func:`~anonlab.datasets.normalize_ground_truth`)."""
    out = [dict(faces=g.faces, persons=g.persons, face_ids=g.face_ids, person_ids=g.person_ids,
                ignore_faces=g.ignore_faces, ignore_persons=g.ignore_persons) for g in gts]
    for kind, dets in panel.items():
        d = pseudo_ground_truth(images, dets, min_votes[kind], iou).to("cpu")
        for i, parts in enumerate(out):
            boxes = d.boxes[d.batch_idx == i]
            parts[f"{kind}s"] = boxes
            parts[f"{kind}_ids"] = None
            parts[f"ignore_{kind}s"] = None
    size = tuple(images.shape[-2:])
    return [normalize_ground_truth(GroundTruth(**parts, pseudo_gt=True), size) for parts in out]
