"""Defense-only and detector-only throughput: per-frame loop vs batched, measured side by side in one run.

    python benchmarks/throughput.py --device cpu --out benchmarks/out/throughput_cpu.json
    python benchmarks/throughput.py --device cuda --frames 256 --batch 32 --out benchmarks/out/throughput_cuda.json

Frames are bus.jpg (shipped by ultralytics) resized to the chosen size, with the default dataset's face
boxes scaled along, so defenses work on realistic regions. Each figure is the best of ``--repeats`` timed
passes after one warm-up pass; CUDA timings synchronize before reading the clock. Writes JSON (device,
versions, date, frames/s and batched/loop ratios) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _report import timeit

from anonlab.datasets import DATASETS
from anonlab.defenses import BoxBlur, GaussianBlur, Pixelate, SolidFill
from anonlab.detectors import DETECTORS
from anonlab.provenance import environment
from anonlab.types import Detections

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "d1": (576, 704), "480p": (480, 640)}


def frames_and_boxes(n: int, size_hw: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, Detections]:
    ds = DATASETS.build("default")
    sample = next(s for s in ds if len(s.gt.faces) >= 3)
    h0, w0 = sample.image.shape[-2:]
    img = F.interpolate(sample.image[None].float(), size=size_hw, mode="bilinear", antialias=True).round().to(torch.uint8)
    scale = torch.tensor([size_hw[1] / w0, size_hw[0] / h0] * 2)
    boxes = sample.gt.faces * scale
    frames = img.expand(n, -1, -1, -1).contiguous().to(device)
    dets = Detections.from_list([boxes] * n, device=device)
    return frames, dets



def opencv_per_frame_blur(frames: torch.Tensor, dets: Detections) -> None:
    """deface's way: numpy frame, cv2.blur per box on the crop (kernel = half the box), in place on a copy."""
    import cv2

    host = frames.cpu().numpy().transpose(0, 2, 3, 1)
    boxes = dets.boxes.cpu().round().long().numpy()
    idx = dets.batch_idx.cpu().numpy()
    for i in range(host.shape[0]):
        f = host[i].copy()
        for x1, y1, x2, y2 in boxes[idx == i]:
            f[y1:y2, x1:x2] = cv2.blur(f[y1:y2, x1:x2], (max(1, (x2 - x1) // 2), max(1, (y2 - y1) // 2)))


def bench_defenses(frames, dets, batch: int, repeats: int) -> dict:
    device = frames.device
    n = frames.shape[0]
    out = {}
    defenses = {
        "gaussian_blur(sigma=8)": GaussianBlur(sigma=8),
        "gaussian_blur(sigma_rel=0.5)": GaussianBlur(sigma_rel=0.5),
        "box_blur(kernel_rel=0.5)": BoxBlur(kernel_rel=0.5),
        "pixelate(blocks=8)": Pixelate(blocks=8),
        "solid": SolidFill(),
    }
    per_frame = [dets.for_image(i).with_batch_offset(-i) for i in range(n)]
    for name, d in defenses.items():
        def loop():
            for i in range(n):
                d(frames[i : i + 1], per_frame[i])

        def batched():
            for s in range(0, n, batch):
                sel = (dets.batch_idx >= s) & (dets.batch_idx < s + batch)
                d(frames[s : s + batch], dets.select(sel).with_batch_offset(-s))

        t_loop, t_batch = timeit(loop, device, repeats), timeit(batched, device, repeats)
        out[name] = {"loop_fps": n / t_loop, "batched_fps": n / t_batch, "batched_over_loop": t_loop / t_batch}
    t_cv = timeit(lambda: opencv_per_frame_blur(frames, dets), device, repeats)
    out["opencv_per_frame_box_blur (deface-style, host)"] = {"loop_fps": n / t_cv}
    return out


def bench_detectors(frames, names: list[str], batch: int, repeats: int) -> dict:
    device = frames.device
    n = frames.shape[0]
    out = {}
    for name in names:
        try:
            det = DETECTORS.build(name).to(device).eval()
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            out[name] = {"skipped": str(e)}
            continue

        @torch.inference_mode()
        def loop():
            for i in range(n):
                det(frames[i : i + 1])

        @torch.inference_mode()
        def batched():
            for s in range(0, n, batch):
                det(frames[s : s + batch])

        t_loop, t_batch = timeit(loop, device, repeats), timeit(batched, device, repeats)
        out[name] = {"loop_fps": n / t_loop, "batched_fps": n / t_batch, "batched_over_loop": t_loop / t_batch,
                     "capabilities": sorted(det.capabilities)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", default="720p", choices=sorted(SIZES))
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--detectors", default="centerface,yunet,ultraface,yolox_nano,mtcnn,haar")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/out/throughput_<device>.json)")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    frames, dets = frames_and_boxes(args.frames, SIZES[args.size], device)
    result = {
        "benchmark": "throughput",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "frames": args.frames, "batch": args.batch, "size_hw": SIZES[args.size], "boxes_per_frame": len(dets) // args.frames,
        "env": environment(device),
        "defenses": bench_defenses(frames, dets, args.batch, args.repeats),
        "detectors": bench_detectors(frames, [d for d in args.detectors.split(",") if d], args.batch, args.repeats),
    }
    text = json.dumps(result, indent=2, default=lambda o: float(o) if isinstance(o, np.floating) else str(o))
    out = Path(args.out or f"benchmarks/out/throughput_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
