"""A whole sweep job's wall time: N 1080p frames x 10 defense settings x 4 detectors through ``anonlab bench``.

    python benchmarks/sweep.py --device cuda --frames 1000 --batch 32 --out benchmarks/out/sweep_cuda.json
    python benchmarks/sweep.py --device cpu --frames 4 --batch 1 --detectors centerface,yolox_nano     # a look

Target (issue 16): the 10-setting x 4-detector sweep of 1,000 frames in < 60 s on one H200.

Frames: ultralytics' bus.jpg (810 x 1080) tiled across 1920 x 1080 and shifted by 97 px per frame (``--unique``
distinct JPEGs at quality 90, hard-linked up to ``--frames`` files) in a temporary ``folder`` dataset. Its COCO
ground truth is the default dataset's bus.jpg boxes moved with each tile; a box cut by the frame edge becomes an
ignore box. Settings: gaussian_blur sigma_rel 0.1/0.25/0.5, box_blur kernel_rel 0.1/0.25/0.5, pixelate 16/8/4
blocks and a solid ellipse (10; the clean baseline ``none`` is evaluated too, as in every job). The wall time is
the whole job (decode, capture, 11 settings x detectors, matching, AP, result shards), after one warm-up job on
one batch that loads the detectors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import torch
from _report import emit, run_job
from torchvision.io import encode_jpeg

from anonlab.datasets.default import DATA_DIR
from anonlab.io.images import read_image
from anonlab.provenance import environment
from anonlab.weights import package_file

SWEEP = ("[{name: gaussian_blur, sigma: null, sigma_rel: [0.1, 0.25, 0.5]}, {name: box_blur, kernel_rel: [0.1, 0.25, 0.5]},"
         " {name: pixelate, blocks: [16, 8, 4]}, {name: solid, shape: ellipse}]")
N_SETTINGS = 10
SIZE_HW = (1080, 1920)
SHIFT_PX = 97


def make_dataset(root: Path, frames: int, unique: int) -> Path:
    """Write the frames and their COCO file under ``root``; returns the COCO path."""
    bus = read_image(package_file("ultralytics", "assets", "bus.jpg"))  # (3, 1080, 810)
    h, w = SIZE_HW
    w0 = bus.shape[-1]
    if bus.shape[-2] != h:
        raise ValueError(f"bus.jpg is {tuple(bus.shape[-2:])}, expected height {h}")
    coco = json.loads((DATA_DIR / "annotations.json").read_text())
    bus_id = next(i["id"] for i in coco["images"] if i["file_name"] == "bus.jpg")
    boxes = [a for a in coco["annotations"] if a["image_id"] == bus_id]
    strip = torch.cat([bus] * (-(-(w + w0) // w0)), dim=2)
    images, anns = [], []
    for k in range(frames):
        off = (k % unique) * SHIFT_PX % w0
        name = f"{k:05d}.jpg"
        if k < unique:
            (root / name).write_bytes(encode_jpeg(strip[:, :, off: off + w].contiguous(), quality=90).numpy().tobytes())
        else:
            os.link(root / f"{k % unique:05d}.jpg", root / name)
        images.append({"id": k + 1, "file_name": name, "width": w, "height": h})
        for tile in range(strip.shape[-1] // w0):
            for a in boxes:
                x, y, bw, bh = a["bbox"]
                x0, x1 = x + tile * w0 - off, x + bw + tile * w0 - off
                c0, c1 = max(x0, 0), min(x1, w)
                if c1 - c0 < 1:
                    continue
                cut = (c0, c1) != (x0, x1)
                anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": a["category_id"],
                             "bbox": [c0, y, c1 - c0, bh], "iscrowd": 0, "ignore": int(bool(a["ignore"]) or cut)})
    path = root / "coco.json"
    path.write_text(json.dumps({"images": images, "categories": coco["categories"], "annotations": anns}))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--unique", type=int, default=16, help="distinct JPEGs (the rest are hard links)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=4, help="loader.workers: background decode threads")
    p.add_argument("--decode", default=None, choices=["cpu", "device"],
                   help="loader.decode (default: device, i.e. nvJPEG, on CUDA; cpu otherwise)")
    p.add_argument("--detectors", default="centerface,yunet,ultraface,yolox_nano")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    decode = args.decode or ("device" if args.device.startswith("cuda") else "cpu")
    dets = args.detectors.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        coco = make_dataset(Path(tmp), args.frames, min(args.unique, args.frames))
        common = ["dataset=folder", f"dataset.root={tmp}", f"dataset.annotations={coco}", f"device={args.device}",
                  f"batch_size={args.batch}", f"loader.workers={args.workers}", f"loader.decode={decode}",
                  f"detectors=[{','.join(dets)}]", "progress=false", f"sweep={SWEEP}"]
        _, warm = run_job([*common, f"limit={min(args.batch, args.frames)}"])
        res, wall = run_job(common)
    settings = len(res.settings)
    doc = {"benchmark": "sweep", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           **environment(args.device), "frames": args.frames, "frame_hw": list(SIZE_HW), "unique_jpegs": args.unique,
           "batch": args.batch, "loader_workers": args.workers, "decode": decode, "detectors": dets,
           "settings": res.settings, "n_settings_with_clean": settings, "rows": res.table.num_rows,
           "failures": len(res.failures), "warmup_job_s": round(warm, 2), "wall_s": round(wall, 2),
           "frames_per_s": round(args.frames / wall, 2),
           "frame_setting_detector_evals_per_s": round(args.frames * settings * len(dets) / wall, 1),
           "target": f"{N_SETTINGS} settings x 4 detectors x 1000 frames in < 60 s",
           "summary": res.summary}
    emit(doc, args.out)


if __name__ == "__main__":
    main()
