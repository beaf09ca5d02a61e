"""Streaming: peak memory of one ``anonlab bench`` job on a video of N frames vs 10 N frames.

    python benchmarks/memory.py --frames 40 --out benchmarks/out/memory_cpu.json
    python benchmarks/memory.py --video ../shared/datasets/pets09_s2l1_vtest/vtest.avi --frames 60 --device cuda

Each length runs in a fresh Python process (the job: ``dataset=video``, CenterFace on the frames, the clean
baseline + one blur setting, CenterFace pseudo ground truth); the process reports its peak resident set size
(``ru_maxrss``) and, on CUDA, ``torch.cuda.max_memory_allocated``. Without ``--video`` the video is synthetic:
bus.jpg (shipped by ultralytics) panned across a 640x360 frame, H.264, written to a temp folder. Target
(issue #6): 10x longer video -> peak RSS within 10 %.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import emit, run_job


def synthetic_video(path: Path, n: int, size_hw: tuple[int, int] = (360, 640), fps: int = 25) -> Path:
    import av
    import numpy as np
    import torch.nn.functional as F

    from anonlab.datasets import DATASETS

    img = DATASETS.build("default").load(0).image  # bus.jpg
    h, w = size_hw
    big = F.interpolate(img[None].float(), size=(h, int(img.shape[2] * h / img.shape[1]) + w),
                        mode="bilinear", antialias=True)[0].round().byte().permute(1, 2, 0).numpy()
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for k in range(n):
            x = (k * 3) % (big.shape[1] - w)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[:, x:x + w]), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def child(args: argparse.Namespace) -> None:
    """One job in this process; prints a JSON line with peak memory."""
    import torch

    overrides = ["dataset=video", f"dataset.path={args.video}", f"dataset.max_frames={args.frames}",
                 f"device={args.device}", f"batch_size={args.batch}", "detectors=[centerface]",
                 "pseudo_gt.face=[centerface]", "pseudo_gt.min_votes.face=1", "progress=false",
                 "sweep=[{name: gaussian_blur, sigma: null, sigma_rel: 0.25}]", f"store.shard_images={args.shard}"]
    res, wall = run_job(overrides)
    print(json.dumps({
        "frames": res.n_images, "rows": res.table.num_rows, "wall_s": round(wall, 2),
        "fps": round(res.n_images / wall, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cuda_max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if args.device.startswith("cuda") else None,
    }))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=40, help="N: the short run; the long run has 10 N frames")
    p.add_argument("--video", default=None, help="a video file (default: a synthetic one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--shard", type=int, default=64, help="store.shard_images")
    p.add_argument("--out", default=None, help="write the JSON here too")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    from anonlab.provenance import environment

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(args.video) if args.video else synthetic_video(Path(tmp) / "pan.mp4", 10 * args.frames)
        runs = []
        for n in (args.frames, 10 * args.frames):
            cmd = [sys.executable, __file__, "--child", "--frames", str(n), "--video", str(video), "--device",
                   args.device, "--batch", str(args.batch), "--shard", str(args.shard)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.exit(f"error: the {n}-frame run failed:\n{proc.stderr[-2000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), file=sys.stderr)
    result = {
        "benchmark": "memory", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "video": "synthetic pan of bus.jpg, 640x360 H.264" if args.video is None else str(args.video),
        "runs": runs, "rss_ratio_10x": round(runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 3),
        "environment": environment(args.device),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
