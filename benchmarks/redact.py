"""``anonlab redact`` vs deface on a synthetic clip with exact per-frame face boxes.

Clip: Penn-Fudan pedestrians walking over the synthetic plate (:mod:`anonlab.datasets.composite`, its ground-plane
camera), 1280x720, 25 fps; each pedestrian's face box is carried through the paste (faces derived once per source
image by the composite's centerface+mtcnn panel), so every frame has exact face boxes (faces hidden more than half
by nearer people are left out of the scores). The clip is written losslessly (H.264 crf 0) and both tools read the
same frames.

- anonlab: :meth:`anonlab.redact.core.Redactor.video_boxes` (ensemble + ByteTrack + hold/interpolation, default
  options) gives the redaction boxes; the whole command (both passes and the H.264 encode, no verification) is
  timed separately for frames/s.
- deface 1.5: its CenterFace (onnxruntime, CPU) with its CLI defaults (``--thresh 0.2``, ``--mask-scale 1.3``,
  ellipse), frame by frame; timed for detection + ``anonymize_frame`` (no decode or encode: deface's own video
  writer needs imageio-ffmpeg's binary).

Both tools' boxes are turned into pixel masks the same way (1.3 x, inscribed ellipse:
:func:`anonlab.defenses.regions.make_regions`). A face is *covered* in a frame when >= ``--cover`` (0.9) of its
box's pixels are masked. Coverage = covered face-frames / face-frames; flicker = frames where a face is uncovered
between two frames where it is covered (per identity); exposed = face-frames with < 0.5 covered.

Run: ``python benchmarks/redact.py --frames 40 --out benchmarks/redact_cpu.json`` (ANONLAB_SHARED must hold
datasets/pennfudanped_penn).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

DEFACE_THRESH, DEFACE_MASK_SCALE = 0.2, 1.3  # deface CLI defaults


def make_clip(n_frames: int, people: int, seed: int):
    from anonlab.camera.compositor import render_clip, sample_walks
    from anonlab.datasets.composite import CompositeDataset

    root = Path(os.environ.get("ANONLAB_SHARED", "../shared")) / "datasets/pennfudanped_penn/PennFudanPed"
    ds = CompositeDataset(str(root), frame_hw=[720, 1280], max_sources=40, min_person_px=120,
                          camera_height_m=3.0, tilt_deg=10.0, hfov_deg=50.0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with_face = [c for c in ds.bank if not torch.isnan(c.face).any()]  # pedestrians facing the camera
    chosen = [with_face[k] for k in torch.randperm(len(with_face), generator=g)[:people].tolist()]
    walks = sample_walks(ds.camera, [c.aspect for c in chosen], n_frames, 25, g, 1.4, ds.person_height_m, 120)
    frames, faces = [], []
    for frame, truth in render_clip(ds._backgrounds[0], chosen, walks, ds.camera):
        frames.append(frame)
        keep = truth.present & ~torch.isnan(truth.faces).any(1) & (truth.face_occlusion <= 0.5)
        faces.append((truth.faces[keep].float(), truth.identities[keep]))
    return frames, faces


def coverage(per_frame_boxes: list[torch.Tensor], faces, size_hw, cover: float) -> dict:
    from anonlab.defenses.regions import make_regions
    from anonlab.types import Detections

    covered: dict[int, list[tuple[int, bool]]] = {}
    n = tot = ok = exposed = 0
    for f, (boxes, (gt, ids)) in enumerate(zip(per_frame_boxes, faces)):
        d = Detections(boxes.float(), torch.ones(len(boxes)), torch.zeros(len(boxes), dtype=torch.int64),
                       torch.zeros(len(boxes), dtype=torch.int64))
        mask = make_regions(d, 1, size_hw, "ellipse", DEFACE_MASK_SCALE).mask[0, 0]
        for box, i in zip(gt.round().long().tolist(), ids.tolist()):
            x1, y1, x2, y2 = max(0, box[0]), max(0, box[1]), min(size_hw[1], box[2]), min(size_hw[0], box[3])
            if x2 <= x1 or y2 <= y1:
                continue
            frac = mask[y1:y2, x1:x2].float().mean().item()
            tot += 1
            ok += frac >= cover
            exposed += frac < 0.5
            covered.setdefault(i, []).append((f, frac >= cover))
        n += 1
    flicker = 0
    for seq in covered.values():
        flags = [c for _, c in sorted(seq)]
        hits = [k for k, c in enumerate(flags) if c]
        if hits:
            flicker += sum(1 for k in range(hits[0], hits[-1]) if not flags[k])
    return {"face_frames": tot, "coverage": ok / max(1, tot), "exposed_frames": exposed, "flicker_frames": flicker}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cover", type=float, default=0.9)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from anonlab.io.video import VideoReader, VideoWriter
    from anonlab.redact import RedactOptions, redact
    from anonlab.redact.core import Redactor

    frames, faces = make_clip(args.frames, args.people, args.seed)
    size_hw = tuple(frames[0].shape[1:])
    tmp = Path(tempfile.mkdtemp())
    clip = tmp / "in" / "clip.mp4"
    clip.parent.mkdir()
    with VideoWriter(clip, size_hw, 25, crf=0, preset="ultrafast") as w:
        for fr in frames:
            w.write(fr)
    reader = VideoReader(clip)
    decoded = [reader.read(k) for k in range(len(reader))]

    opts = RedactOptions(progress=False)
    ours = Redactor(opts).video_boxes(VideoReader(clip))
    t = time.perf_counter()
    redact([clip], tmp / "out", opts)
    anonlab_fps = len(frames) / (time.perf_counter() - t)

    import onnxruntime
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    with contextlib.redirect_stdout(sys.stderr):
        cf = CenterFace(in_shape=None, backend="onnxrt", override_execution_provider="CPUExecutionProvider")
    theirs = []
    t = time.perf_counter()
    for fr in decoded:
        img = fr.permute(1, 2, 0).contiguous().numpy()
        dets, _ = cf(img, threshold=DEFACE_THRESH)
        anonymize_frame(dets, img.copy(), mask_scale=DEFACE_MASK_SCALE, replacewith="blur", ellipse=True,
                        draw_scores=False, replaceimg=None, mosaicsize=20)
        theirs.append(torch.from_numpy(np.asarray(dets[:, :4], dtype=np.float32)).reshape(-1, 4))
    deface_fps = len(frames) / (time.perf_counter() - t)

    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "clip": {"frames": len(frames), "size_hw": list(size_hw), "fps": 25, "people": args.people,
                 "seed": args.seed, "face_height_px_median": float(torch.cat([f[0] for f in faces])[:, 3].sub(
                     torch.cat([f[0] for f in faces])[:, 1]).median()) if faces else None},
        "cover_threshold": args.cover,
        "anonlab": {**coverage(ours, faces, size_hw, args.cover), "fps_whole_command": anonlab_fps,
                    "options": "default: centerface 0.2 + yunet 0.4 + ultraface 0.5, hold 2, max_gap 15"},
        "deface": {**coverage(theirs, faces, size_hw, args.cover), "fps_detect_and_anonymize": deface_fps},
    }
    import json

    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
