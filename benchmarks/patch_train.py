"""Patch-training throughput: images per second of a full training step (EOT paste, detector forward and backward,
Adam), and of its two parts measured alone in the same run (the differentiable paste; the detector forward+backward
on already-pasted frames).

    python benchmarks/patch_train.py --device cpu --steps 10 --out benchmarks/out/patch_train_cpu.json
    python benchmarks/patch_train.py --device cuda --batch 32 --steps 50 --out benchmarks/out/patch_train_cuda.json

Frames: the default dataset's bus.jpg and zidane.jpg (shipped by ultralytics), letterboxed to ``--max-side``, repeated
to fill the batch; the patch goes on their 8 annotated persons (each repeat of a frame carries its persons). Each
figure is the best of ``--repeats`` timed runs of ``--steps`` steps after ``--warmup`` steps; CUDA timings synchronize
before reading the clock. Writes JSON (device, versions, date, images/s, shares) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from anonlab.attacks.eot import EOT
from anonlab.attacks.objectives import detection_loss
from anonlab.attacks.train import PatchTrainer, load_frames
from anonlab.build import build_detectors
from anonlab.datasets import DATASETS
from anonlab.provenance import environment

EOT_DEFAULT = {"jitter": 0.1, "scale": 0.2, "rotation_deg": 15.0, "perspective": 0.08, "brightness": 0.1,
               "contrast": 0.2, "noise": 0.03, "blur_sigma": [0.0, 1.0]}


def timed(fn, steps: int, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` runs of ``steps`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--detector", default="yolox_nano")
    ap.add_argument("--objective", default="obj_cls")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-side", type=int, default=416)
    ap.add_argument("--patch", type=int, default=300, help="patch side, pixels")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)

    frames, boxes, owner = load_frames(DATASETS.build("default"), ["bus.jpg", "zidane.jpg"], "person", args.max_side)
    reps = -(-args.batch // frames.shape[0])
    n = frames.shape[0]
    frames = frames.repeat(reps, 1, 1, 1)[: args.batch]
    keep = [(owner + k * n, boxes) for k in range(reps)]
    owner = torch.cat([o for o, _ in keep])
    boxes = torch.cat([b for _, b in keep])
    boxes, owner = boxes[owner < args.batch], owner[owner < args.batch]
    detector = build_detectors(OmegaConf.create({"detectors": [args.detector]}))[args.detector].to(device)
    trainer = PatchTrainer(detector, args.objective, frames.to(device), boxes.to(device), owner.to(device),
                           (args.patch, args.patch), eot=EOT.from_dict(EOT_DEFAULT), batch_size=args.batch)
    all_idx = torch.arange(args.batch, device=device)
    pasted = trainer.render(all_idx, randomize=True).detach()

    def paste() -> None:
        trainer.render(all_idx, randomize=True).sum().backward()

    def detector_fwd_bwd() -> None:
        x = pasted.clone().requires_grad_(True)
        detection_loss(trainer.scores(x)).backward()

    for _ in range(args.warmup):
        trainer.step()
        paste()
        detector_fwd_bwd()
    t_step = timed(trainer.step, args.steps, device, args.repeats)
    t_paste = timed(paste, args.steps, device, args.repeats)
    t_det = timed(detector_fwd_bwd, args.steps, device, args.repeats)
    images = args.steps * args.batch
    result = {
        "benchmark": "patch_train", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **environment(device),
        "detector": args.detector, "objective": args.objective, "batch": args.batch, "steps": args.steps,
        "repeats": args.repeats, "frame_hw": [args.max_side, args.max_side], "patch_hw": [args.patch, args.patch],
        "persons_per_batch": int(boxes.shape[0]), "eot": EOT_DEFAULT,
        "train_step_images_per_s": round(images / t_step, 3),
        "paste_fwd_bwd_images_per_s": round(images / t_paste, 3),
        "detector_fwd_bwd_images_per_s": round(images / t_det, 3),
        "paste_share_of_step": round(t_paste / t_step, 3),
        "detector_share_of_step": round(t_det / t_step, 3),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
