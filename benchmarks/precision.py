"""Reduced precision: recall and speed of each torch detector at fp32 vs bf16 / fp16 autocast, in one run.

    python benchmarks/precision.py --device cpu --precisions fp32 bf16 --out benchmarks/out/precision_cpu.json
    python benchmarks/precision.py --device cuda --batch 16 --precisions fp32 fp16 bf16 --out benchmarks/out/precision_cuda.json

For each dataset (the embedded default; the shared WIDER FACE Parade subset for face detectors and Penn-Fudan
for person detectors when ../shared is present) and each precision, runs ``anonlab bench`` with the clean
baseline and one blur (sigma = 0.25 x face height), and reports recall at the detector's threshold, AP, and the
difference to fp32 in points. The issue's rule: use a reduced precision for a detector only where recall stays
within 0.5 points of fp32.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from _report import emit, run_job

from anonlab.provenance import environment
from anonlab.weights import shared_root

FACE = ["centerface", "yunet", "ultraface"]
PERSON = ["yolox_nano"]


def jobs(limit: int | None) -> list[tuple[str, list[str], list[str]]]:
    """(name, dataset overrides, detectors)."""
    out = [("default", ["dataset=default"], FACE + PERSON)]
    root = shared_root()  # $ANONLAB_SHARED or ../shared; its datasets are used when present
    if (root / "datasets/widerface_val_parade_subset").is_dir():
        out.append(("wider_parade", ["dataset=wider_face", f"dataset.root={root}/datasets/widerface_val_parade_subset",
                                     "pseudo_gt.person=[yolox_nano]"], FACE))
    if (root / "datasets/pennfudanped_penn/PennFudanPed").is_dir():
        out.append(("pennfudan", ["dataset=pennfudan", f"dataset.root={root}/datasets/pennfudanped_penn/PennFudanPed",
                                  "regions.target=person"], PERSON))
    if limit:
        out = [(n, o + [f"limit={limit}"], d) for n, o, d in out]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--limit", type=int, default=None, help="images per dataset (default: all)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.precisions[0] != "fp32":
        sys.exit("error: --precisions must start with fp32 (the reference)")
    results = []
    for name, ds_over, dets in jobs(args.limit):
        ref: dict[tuple[str, str], dict] = {}
        for prec in args.precisions:
            overrides = [*ds_over, f"device={args.device}", f"batch_size={args.batch}", f"precision={prec}",
                         f"detectors=[{','.join(dets)}]", "progress=false",
                         "sweep=[{name: gaussian_blur, sigma: null, sigma_rel: 0.25}]"]
            res, wall = run_job(overrides)
            for r in res.summary:
                key = (r["setting"], r["detector"])
                row = {"dataset": name, "precision": prec, "setting": r["setting"], "detector": r["detector"],
                       "n_images": r["n_images"], "n_gt": r["n_gt"], "recall": r["recall"], "ap": r["ap"],
                       "job_wall_s": round(wall, 1)}
                if prec == "fp32":
                    ref[key] = row
                else:
                    base = ref[key]
                    row["recall_delta_pts"] = (None if r["recall"] is None or base["recall"] is None
                                               else round(100 * (r["recall"] - base["recall"]), 2))
                    row["ap_delta_pts"] = (None if r["ap"] is None or base["ap"] is None
                                           else round(100 * (r["ap"] - base["ap"]), 2))
                results.append(row)
                print(json.dumps(row), file=sys.stderr)
    doc = {"benchmark": "precision", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "device": args.device, "batch": args.batch, "rows": results, "environment": environment(args.device)}
    emit(doc, args.out)


if __name__ == "__main__":
    main()
