"""Face recognizer embedding throughput (faces/s): per-face loop vs batched, measured side by side in one run.

    python benchmarks/recognizers.py --device cpu --out benchmarks/out/recognizers_cpu.json
    python benchmarks/recognizers.py --device cuda --faces 512 --batch 128 --out benchmarks/out/recognizers_cuda.json

Crops are real: the faces CenterFace finds in skimage's astronaut and ultralytics' zidane.jpg, aligned by each
recognizer's own ``crop`` and repeated to ``--faces``. Timed: ``embed`` only (the loop calls it once per face, the
batched path once per ``--batch`` faces), then ``crop`` of the same faces from their frames (alignment, landmarks
included; one call per frame); for recognizers that declare ``differentiable``, also one ``cloak`` PGD step
(forward + backward) per face batch. Each figure is the best of ``--repeats`` timed passes after a warm-up; CUDA
timings synchronize before reading the clock. A recognizer whose weights or package are missing is recorded as
skipped with the reason. Writes JSON (device, versions, date, faces/s, batched/loop ratios) and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt

import torch
from _report import emit, timeit

from anonlab.detectors import DETECTORS
from anonlab.io.images import read_image
from anonlab.provenance import environment
from anonlab.recognizers import RECOGNIZERS
from anonlab.weights import package_file

IMAGES = (("skimage", "data", "astronaut.png"), ("ultralytics", "assets", "zidane.jpg"))



def faces(device: torch.device):
    """[(image uint8 (1, 3, H, W), Detections)] for the test photos, faces found by CenterFace."""
    det = DETECTORS.build("centerface").to(device)
    out = []
    for parts in IMAGES:
        img = read_image(package_file(parts[0], *parts[1:]))[None].to(device)
        with torch.no_grad():
            out.append((img, det(img).above(det.threshold)))
    return out


def bench_one(name: str, frames, n: int, batch: int, device: torch.device, repeats: int) -> dict:
    try:
        rec = RECOGNIZERS.build(name).to(device)
    except (FileNotFoundError, ModuleNotFoundError, ImportError) as e:
        return {"skipped": str(e).splitlines()[0]}
    crops = torch.cat([rec.crop(img, d.boxes, d.batch_idx)[0] for img, d in frames])
    crops = crops.repeat((n + len(crops) - 1) // len(crops), 1, 1, 1)[:n].contiguous()
    n_frame_faces = sum(len(d) for _, d in frames)

    def loop():
        for i in range(n):
            rec.embed(crops[i : i + 1])

    def batched():
        for i in range(0, n, batch):
            rec.embed(crops[i : i + batch])

    def crop_all():
        for img, d in frames:
            rec.crop(img, d.boxes, d.batch_idx)

    t_loop, t_batch = timeit(loop, device, repeats), timeit(batched, device, repeats)
    t_crop = timeit(crop_all, device, repeats)
    row = {"faces": n, "batch": batch, "loop_faces_per_s": n / t_loop, "batched_faces_per_s": n / t_batch,
           "batched_over_loop": t_loop / t_batch, "crop_faces_per_s": n_frame_faces / t_crop,
           "input_size_hw": list(rec.input_size_hw), "embedding_dim": rec.embedding_dim}
    if "differentiable" in getattr(rec, "capabilities", ()):
        x = crops[:batch].float() / 255

        def pgd_step():
            xi = x.clone().requires_grad_(True)
            rec.embed_float(xi).norm(dim=1).sum().backward()

        row["grad_step_faces_per_s"] = len(x) / timeit(pgd_step, device, repeats)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--faces", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--recognizers", default="mobilefacenet,dlib_resnet,facenet")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--out", default=None, help="JSON path (also printed)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    frames = faces(device)
    rows = {name: bench_one(name, frames, a.faces, a.batch, device, a.repeats)
            for name in a.recognizers.split(",") if name}
    emit({"benchmark": "recognizers", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
          "env": environment(device), "recognizers": rows}, a.out)


if __name__ == "__main__":
    main()
