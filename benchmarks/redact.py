"""``anonlab redact`` vs deface: coverage, flicker, frames/s and memory, one run, same inputs, same machine.

Inputs:

- a synthetic clip: Penn-Fudan pedestrians walking over the synthetic plate (:mod:`anonlab.datasets.composite`, its
  ground-plane camera), 1280x720, 25 fps; each pedestrian's face box is carried through the paste (faces derived
  once per source image by the composite's centerface+mtcnn panel), so every frame has exact face boxes and track
  ids (faces hidden more than half by nearer people are left out of the scores); also upscaled to 1920x1080
  (bilinear, boxes x1.5) for frames/s at 1080p;
- PETS09 S2L1 (``datasets/pets09_s2l1_vtest/vtest.avi``, 480x360, 10 fps, its first ``--pets-frames``): face pseudo
  ground truth from the strongest panel at 4x upscale (``--pets-upscale``) (:func:`anonlab.metrics.pseudo_gt.consensus` of MTCNN 0.9,
  CenterFace 0.5 and YuNet 0.6, two votes; biased towards CenterFace- and YuNet-like faces, which both tools
  use), identities by ByteTrack over those boxes.

Each input is written losslessly (H.264 crf 0) and both tools read the same frames.

- anonlab: :meth:`anonlab.redact.core.Redactor.video` (one decode, ensemble + ROI re-detection + ByteTrack + hold,
  redact, H.264 encode; models built beforehand) timed for frames/s, its boxes scored; with the
  default options and with ``--faces centerface:0.2,yunet:0.4 --detect-every 8`` (speed); the verification pass (default panel, every
  ``--verify-stride``-th frame) timed separately.
- deface 1.5: its CenterFace (onnxruntime, CPU) with its CLI defaults (``--thresh 0.2``, ``--mask-scale 1.3``,
  ellipse), frame by frame; timed for detection + ``anonymize_frame`` (no decode or encode: deface's own video
  writer needs imageio-ffmpeg's binary), so its frames/s is an upper bound of its whole command's.

Both tools' boxes become pixel masks as each tool draws them (1.3 x, inscribed ellipse, for both at the defaults:
:func:`anonlab.defenses.regions.make_regions`). A face is *covered* in a frame when >= ``--cover`` (0.9) of its
box's pixels are masked. Coverage = covered face-frames / face-frames; flicker = frames where a face is uncovered
between two frames where it is covered (per identity); exposed = face-frames with < 0.5 covered.

Memory: peak RSS (``resource.getrusage`` in a child process) of ``Redactor.video`` on the synthetic clip's first
``--rss-frames`` frames and on 10 copies of them one after the other.

Run: ``python benchmarks/redact.py --out benchmarks/redact_cpu.json`` (ANONLAB_SHARED must hold
datasets/pennfudanped_penn and datasets/pets09_s2l1_vtest); ``--device cuda`` for the GPU figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from anonlab.redact.score import coverage, walking_clip

DEFACE_THRESH, DEFACE_MASK_SCALE = 0.2, 1.3  # deface CLI defaults
#: the speed configuration: full-frame detection on every 8th frame (ROI tracking between), CenterFace + YuNet
SPEED_EVERY, SPEED_FACES = 8, (("centerface", 0.2), ("yunet", 0.4))


def make_clip(n_frames: int, people: int, seed: int):
    root = Path(os.environ.get("ANONLAB_SHARED", "../shared")) / "datasets/pennfudanped_penn/PennFudanPed"
    return walking_clip(root, n_frames, people, seed)


def write_clip(path: Path, frames, fps: float) -> Path:
    from anonlab.io.video import VideoWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, tuple(frames[0].shape[1:]), fps, crf=0, preset="ultrafast") as w:
        for fr in frames:
            w.write(fr)
    return path


def run_anonlab(clip: Path, out_dir: Path, opts, faces, panel=None, stride: int = 1) -> dict:
    """Time ``Redactor.video`` on ``clip`` and score its boxes; with ``panel``, also time the verification."""
    from anonlab.io.video import VideoReader
    from anonlab.redact.core import Redactor

    r = Redactor(opts)
    n = len(VideoReader(clip))
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / "clip.mp4"
    t = time.perf_counter()
    r.video(clip, dst, lambda k: None)
    t_redact = time.perf_counter() - t
    size_hw = VideoReader(clip).size_hw
    row = {"frames": n, "fps_redact": n / t_redact}
    if faces is not None:
        row.update(coverage(r.last_boxes, faces, size_hw, ARGS.cover, opts.shape, opts.mask_scale))
    if panel is not None:
        from anonlab.redact.core import torch_threads
        from anonlab.redact.verify import verify

        t = time.perf_counter()
        with torch_threads(opts.threads):
            leaks, _, _ = verify([dst], panel, opts.device, stride=stride, batch=opts.batch)
        t_verify = time.perf_counter() - t
        row.update({"verify_stride": stride, "fps_verify_alone": len(range(0, n, stride)) / t_verify,
                    "fps_redact_and_verify": n / (t_redact + t_verify), "leaks": len(leaks)})
    return row


def run_deface(frames, faces) -> dict:
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    with contextlib.redirect_stdout(sys.stderr):
        cf = CenterFace(in_shape=None, backend="onnxrt", override_execution_provider="CPUExecutionProvider")
    theirs = []
    t = time.perf_counter()
    for fr in frames:
        img = fr.permute(1, 2, 0).contiguous().numpy()
        dets, _ = cf(img, threshold=DEFACE_THRESH)
        anonymize_frame(dets, img.copy(), mask_scale=DEFACE_MASK_SCALE, replacewith="blur", ellipse=True,
                        draw_scores=False, replaceimg=None, mosaicsize=20)
        theirs.append(torch.from_numpy(np.asarray(dets[:, :4], dtype=np.float32)).reshape(-1, 4))
    row = {"frames": len(frames), "fps_detect_and_anonymize": len(frames) / (time.perf_counter() - t)}
    if faces is not None:
        row.update(coverage(theirs, faces, tuple(frames[0].shape[1:]), ARGS.cover, "ellipse", DEFACE_MASK_SCALE))
    return row


def pets_clip(n_frames: int):
    """The first ``n_frames`` of vtest.avi and their face pseudo ground truth (boxes, track ids) per frame."""
    from anonlab.build import build_config, group_config
    from anonlab.detectors import DETECTORS
    from anonlab.io.video import VideoReader
    from anonlab.metrics.pseudo_gt import consensus
    from anonlab.redact.temporal import Tracker

    src = Path(os.environ.get("ANONLAB_SHARED", "../shared")) / "datasets/pets09_s2l1_vtest/vtest.avi"
    reader = VideoReader(src)
    frames = [reader.read(k) for k in range(min(n_frames, len(reader)))]
    panel = []
    for name, thr in (("mtcnn", 0.9), ("centerface", 0.5), ("yunet", 0.6)):
        cfg = group_config("detector", name, DETECTORS)
        cfg.threshold = thr
        if "max_side" in cfg:
            cfg.max_side = 32 * -(-480 * ARGS.pets_upscale // 32)  # the upscaled frame at full resolution
        panel.append((thr, build_config(cfg, name).to(ARGS.device).eval()))
    tracker = Tracker(reader.fps, 15, 0.5)
    faces = []
    for fr in frames:
        up = torch.nn.functional.interpolate(fr[None].float(), scale_factor=ARGS.pets_upscale, mode="bicubic",
                                             align_corners=False).round().clamp(0, 255).to(torch.uint8)
        with torch.inference_mode():
            dets = consensus([det(up.to(ARGS.device)).above(thr).to("cpu") for thr, det in panel], 1, 2)
        boxes, ids = tracker.update(dets.boxes / ARGS.pets_upscale, dets.scores)
        faces.append((boxes, ids))
    return frames, faces, reader.fps


def peak_rss(clip: Path, every: int) -> tuple[float, float]:
    """Peak RSS (MiB) of a child process that redacts ``clip`` (``Redactor.video``, the speed configuration):
    (peak once the models are built, before the video; peak at the end)."""
    code = (f"import resource, sys; from pathlib import Path; from anonlab.redact.core import RedactOptions, Redactor;"
            f"r = Redactor(RedactOptions(progress=False, detect_every={every}, faces={SPEED_FACES!r}, "
            f"device={ARGS.device!r}));"
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss);"
            f"r.video(Path({str(clip)!r}), Path({str(clip.with_name('rss_out.mp4'))!r}), lambda k: None);"
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = (int(v) / 1024 for v in out.stdout.strip().splitlines()[-2:])
    return before, after


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cover", type=float, default=0.9)
    ap.add_argument("--frames-1080", type=int, default=20, help="frames of the upscaled (frames/s) clips")
    ap.add_argument("--pets-frames", type=int, default=40)
    ap.add_argument("--rss-frames", type=int, default=20)
    ap.add_argument("--verify-stride", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: synthetic (needs Penn-Fudan), 1080p, pets, upscaled (PETS frames/s "
                    "at 720p/1080p, run when synthetic is skipped), rss")
    ap.add_argument("--pets-upscale", type=int, default=4,
                    help="upscale of the PETS pseudo ground truth (default 4: vtest.avi is a 480x360 re-encode, "
                    "0.625 of the 768x576 original, so its faces are 3-9 px; 2x left the panel none in 20 frames)")
    ap.add_argument("--out", default=None)
    ARGS = args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from anonlab.redact import RedactOptions
    from anonlab.redact.verify import DEFAULT_PANEL, panel_checks

    tmp = Path(tempfile.mkdtemp())
    default = RedactOptions(progress=False, device=args.device)
    speed = RedactOptions(progress=False, device=args.device, detect_every=SPEED_EVERY, faces=SPEED_FACES)
    panel = panel_checks(DEFAULT_PANEL, args.device)
    import onnxruntime

    doc = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
           "device": f"{args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
           + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""),
           "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
           "cover_threshold": args.cover,
           "options": {"default": "centerface 0.2 (onnxruntime on CPU) + yunet 0.4 + ultraface 0.5, ROI yunet 0.4 "
                                  "under 24 px, hold 2, max_gap 15", "speed": f"--faces centerface:0.2,yunet:0.4 --detect-every {SPEED_EVERY}"},
           "x264_preset": default.x264_preset}

    def emit():
        text = json.dumps(doc, indent=1)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return text

    def upscaled(src, n, hw, src_faces=None):
        """The first ``n`` frames of ``src`` resized (bilinear) to ``hw``, with their face boxes scaled."""
        out = [torch.nn.functional.interpolate(f[None].float(), size=hw, mode="bilinear", antialias=False)
               .round().clamp(0, 255).to(torch.uint8)[0] for f in src[:n]]
        sx, sy = hw[1] / src[0].shape[2], hw[0] / src[0].shape[1]
        scale = torch.tensor([sx, sy, sx, sy])
        return out, [(b * scale, i) for b, i in src_faces[:n]] if src_faces is not None else None

    def speed_section(name, frames_, faces_):
        clip_ = write_clip(tmp / name / "clip.mp4", frames_, 25)
        doc[name] = {"frames": len(frames_), "size_hw": list(frames_[0].shape[1:]),
                     "deface": run_deface(frames_, faces_),
                     "anonlab_default": run_anonlab(clip_, tmp / name / "o1", default, faces_),
                     "anonlab_speed": run_anonlab(clip_, tmp / name / "o2", speed, faces_)}
        print(emit(), flush=True)

    frames = None
    if "synthetic" not in skip:
        frames, faces = make_clip(args.frames, args.people, args.seed)
        clip = write_clip(tmp / "in" / "clip.mp4", frames, 25)
        hs = torch.cat([f[0] for f in faces])
        doc["synthetic_720p"] = {
            "clip": {"frames": len(frames), "size_hw": list(frames[0].shape[1:]), "fps": 25, "people": args.people,
                     "seed": args.seed, "face_height_px_median": float((hs[:, 3] - hs[:, 1]).median())},
            "deface": run_deface(frames, faces),
            "anonlab_default": run_anonlab(clip, tmp / "o1", default, faces, panel, args.verify_stride),
            "anonlab_speed": run_anonlab(clip, tmp / "o2", speed, faces, panel, args.verify_stride)}
        print(emit(), flush=True)
        if "1080p" not in skip:
            speed_section("synthetic_1080p", *upscaled(frames, args.frames_1080, (1080, 1920), faces))
    if "pets" not in skip:
        pframes, pfaces, pfps = pets_clip(args.pets_frames)
        pclip = write_clip(tmp / "inpets" / "clip.mp4", pframes, pfps)
        ph = torch.cat([f[0] for f in pfaces]) if pfaces else torch.zeros(0, 4)
        doc["pets09_s2l1"] = {
            "clip": {"frames": len(pframes), "size_hw": list(pframes[0].shape[1:]), "fps": pfps,
                     "pseudo_gt_faces": len(ph), "face_height_px_median": float((ph[:, 3] - ph[:, 1]).median())
                     if len(ph) else None},
            "deface": run_deface(pframes, pfaces),
            "anonlab_default": run_anonlab(pclip, tmp / "o5", default, pfaces),
            "anonlab_speed": run_anonlab(pclip, tmp / "o6", speed, pfaces)}
        print(emit(), flush=True)
        if frames is None and "upscaled" not in skip:  # no Penn-Fudan (the device run): frames/s on PETS frames upscaled, no coverage
            for hw in ((720, 1280), (1080, 1920)):
                speed_section(f"pets_upscaled_{hw[0]}p", *upscaled(pframes, args.frames_1080, hw))
    if "rss" not in skip and frames is not None:
        short = frames[:args.rss_frames]
        a = write_clip(tmp / "rss" / "short.mp4", short, 25)
        b = write_clip(tmp / "rss" / "long.mp4", short * 10, 25)
        (ms, rs), (ml, rl) = peak_rss(a, SPEED_EVERY), peak_rss(b, SPEED_EVERY)
        doc["peak_rss_mib"] = {"frames_short": len(short), "frames_long": 10 * len(short), "short": rs, "long": rl,
                               "ratio": rl / rs, "models_built_short": ms, "models_built_long": ml,
                               "options": "the speed configuration"}
        print(emit(), flush=True)


ARGS = None

if __name__ == "__main__":
    main()
