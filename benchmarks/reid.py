"""Body re-ID of PETS09 pedestrians, clean and with faces redacted, plus the re-ID recognizer's throughput.

    python benchmarks/reid.py --out benchmarks/reid_cpu.json
    python benchmarks/reid.py --device cuda --backend torch --out benchmarks/out/reid_cuda.json

Identification and verification as :mod:`anonlab.identity.reid` defines them (tracks split in time; conditions
clean / faces solid / faces blurred / whole body solid; galleries redacted and clean), with
``person_reid_0287`` on the 480x360 video of ``$ANONLAB_SHARED/datasets/pets09_s2l1_vtest``. Throughput: real
PETS09 person boxes, crop + embed, a per-box loop (one box per call) against batches of ``--batch`` boxes, for both
backends; best of ``--repeats`` timed passes after a warm-up (CUDA synchronised). Writes JSON and prints a
markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit, timeit

from anonlab.datasets.mot import MOTDataset
from anonlab.defenses.regions import HEAD_FRACTION
from anonlab.identity import reid
from anonlab.provenance import environment
from anonlab.recognizers import RECOGNIZERS
from anonlab.weights import shared_root


def throughput(crops: reid.TrackCrops, device: torch.device, n: int, batch: int, repeats: int) -> list[dict]:
    images = crops.images.to(device)
    boxes, bidx = crops.boxes[:n].to(device), crops.batch_idx[:n].to(device)
    rows = []
    for backend in reid_backends(device):
        rec = RECOGNIZERS.build("person_reid_0287", backend=backend).to(device)

        def loop(rec=rec) -> None:
            for i in range(len(boxes)):
                c, _ = rec.crop(images, boxes[i : i + 1], bidx[i : i + 1])
                rec.embed(c)

        def batched(rec=rec) -> None:
            for s in range(0, len(boxes), batch):
                c, _ = rec.crop(images, boxes[s : s + batch], bidx[s : s + batch])
                rec.embed(c)

        t_loop, t_batch = timeit(loop, device, repeats), timeit(batched, device, repeats)
        rows.append({"backend": backend, "persons": len(boxes), "batch": batch,
                     "loop_persons_per_s": len(boxes) / t_loop, "batched_persons_per_s": len(boxes) / t_batch,
                     "batched_over_loop": t_loop / t_batch})
    return rows


def reid_backends(device: torch.device) -> list[str]:
    import onnxruntime as ort

    want = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    return ["torch", "onnxruntime"] if want in ort.get_available_providers() else ["torch"]


def fmt(r: dict, key: str) -> str:
    return f"{r[key]:.3f} [{r[key + '_lo']:.3f}–{r[key + '_hi']:.3f}]"


def table(rows: list[dict]) -> str:
    header = ("| condition | gallery | rank-1 [95 % CI] | rank-5 [95 % CI] | AUC [95 % CI] | ids | probes | "
              "pairs same / diff | not embedded |")
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['condition']} (`{r['defense']}`) | {r['gallery']} | {fmt(r, 'rank1')} | "
                     f"{fmt(r, 'rank5')} | {fmt(r, 'auc')} | {r['n_ids']} | {r['n_probes']} | "
                     f"{r['n_pairs_same']} / {r['n_pairs_diff']} | {r['n_not_embedded']} |")
    r = rows[0]
    lines.append(f"\nChance: rank-1 {r['chance_rank1']:.3f}, rank-5 {r['chance_rank5']:.3f}, AUC 0.5.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--root", default=None, help="MOT sequence (default: $ANONLAB_SHARED/datasets/pets09_s2l1_vtest)")
    p.add_argument("--stride", type=int, default=5, help="keep every n-th MOT frame")
    p.add_argument("--per-track", type=int, default=4)
    p.add_argument("--window", type=float, default=0.4)
    p.add_argument("--min-gap", type=int, default=50, help="MOT frames between gallery and probe windows")
    p.add_argument("--backend", default="onnxruntime", choices=("torch", "onnxruntime"))
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--persons", type=int, default=64, help="boxes timed for throughput")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/out/reid_<device>.json)")
    args = p.parse_args()
    device = torch.device(args.device)
    load_before = os.getloadavg()  # the machine is shared: a high load average slows every figure
    root = args.root or str(shared_root() / "datasets" / "pets09_s2l1_vtest")
    t0 = time.perf_counter()
    ds = MOTDataset(root, stride=args.stride, source="video")
    split, crops = reid.load_tracks(ds, args.per_track, args.window, args.min_gap)
    t_load = time.perf_counter() - t0
    rec = RECOGNIZERS.build("person_reid_0287", backend=args.backend).to(device)
    on_dev = reid.TrackCrops(crops.images.to(device), crops.persons.to(device), crops.boxes.to(device),
                             crops.batch_idx.to(device), crops.ids, crops.gallery, crops.frames, crops.missing)
    t0 = time.perf_counter()
    rows = reid.evaluate(rec, on_dev, n_boot=args.n_boot)
    t_eval = time.perf_counter() - t0
    widths = (crops.boxes[:, 2] - crops.boxes[:, 0])
    doc = {
        "benchmark": "reid", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "env": environment(device), "cpu_count": os.cpu_count(), "args": vars(args), "root": root,
        "split": {"tracks_used": len({pid for _, pid in split.probes}), "tracks_skipped": list(split.skipped),
                  "gallery_boxes": len(split.gallery), "probe_boxes": len(split.probes), "missing": crops.missing,
                  "frames": len(crops.frames), "box_width_px_median": float(widths.median()),
                  "box_width_px_min": float(widths.min())},
        "head_fraction": HEAD_FRACTION, "face_blur_sigma_rel": reid.FACE_BLUR_SIGMA_REL,
        "rows": rows, "seconds": {"load": t_load, "evaluate": t_eval},
    }
    if not args.skip_throughput:
        doc["throughput"] = throughput(crops, device, args.persons, args.batch, args.repeats)
    doc["loadavg_1_5_15min"] = {"start": load_before, "end": os.getloadavg()}
    emit(doc, args.out or f"benchmarks/out/reid_{device.type}.json")
    print(table(rows))
    for r in doc.get("throughput", []):
        print(f"{r['backend']}: loop {r['loop_persons_per_s']:.1f} persons/s, batched ({r['batch']}) "
              f"{r['batched_persons_per_s']:.1f} persons/s, ratio {r['batched_over_loop']:.2f}")


if __name__ == "__main__":
    main()
