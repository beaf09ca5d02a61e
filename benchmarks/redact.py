"""``anonlab redact`` vs deface: coverage, flicker, frames/s and memory, one run, same inputs, same machine.

Inputs:

- a synthetic clip: Penn-Fudan pedestrians walking over the synthetic plate (:mod:`anonlab.datasets.composite`, its
  ground-plane camera), 1280x720, 25 fps; each pedestrian's face box is carried through the paste (faces derived
  once per source image by the composite's centerface+mtcnn panel), so every frame has exact face boxes and track
  ids (faces hidden more than half by nearer people are left out of the scores); also upscaled to 1920x1080
  (bilinear, boxes x1.5) for frames/s at 1080p;
- PETS09 S2L1 (``datasets/pets09_s2l1_vtest/vtest.avi``, a 480x360 re-encode of the 768x576 original, 10 fps):
  ``--pets-frames`` (300) frames from ``--pets-start`` (frame 101; frames 1-100 chose the head region of
  :data:`anonlab.redact.core.HEAD_REGION`), upscaled ``--pets-upscale`` (2x, bilinear, to 960x720: faces of
  ~9-13 px as in the original). Two ground truths: **heads** of the annotated pedestrians (MOTChallenge tracks,
  :func:`anonlab.redact.score.heads_of_persons`; PETS has no face boxes and its faces are too small for a face
  panel), with the track ids, so flicker is measured on real walks; and the **face pseudo ground truth** the issue
  names, the strongest panel (:func:`anonlab.metrics.pseudo_gt.consensus` of MTCNN 0.9, CenterFace 0.5 and YuNet
  0.6, two votes) at 2x the clip, on every ``--pets-pseudo-stride``-th frame (it finds few faces at this size).
  anonlab runs with its defaults, the speed configuration, and faces only (``--no-heads``).

Each input is written losslessly (H.264 crf 0) and both tools read the same frames.

- anonlab: :meth:`anonlab.redact.core.Redactor.video` (one decode, ensemble + head regions of NanoDet-m's persons +
  ROI re-detection + ByteTrack + hold, redact, H.264 encode; models built beforehand) timed for frames/s, its boxes
  scored; with the
  default options and with ``--faces centerface:0.2,yunet:0.4 --detect-every 8 --persons-every 2`` (speed); the verification pass (default panel, every
  ``--verify-stride``-th frame) timed separately.
- deface 1.5: its CenterFace (onnxruntime, CPU) with its CLI defaults (``--thresh 0.2``, ``--mask-scale 1.3``,
  ellipse), frame by frame; timed for detection + ``anonymize_frame`` alone (an upper bound of its command's
  frames/s) and end to end with its writer's settings (:func:`run_deface`).

Both tools' boxes become pixel masks as each tool draws them (1.3 x, inscribed ellipse, for both at the defaults:
:func:`anonlab.defenses.regions.make_regions`). A face is *covered* in a frame when >= ``--cover`` (0.9) of its
box's pixels are masked. Coverage = covered face-frames / face-frames; flicker = frames where a face is uncovered
between two frames where it is covered (per identity); exposed = face-frames with < 0.5 covered; per identity, the
worst single-frame exposure (largest unmasked fraction of its box), averaged, and the identities exposed at least
once (:func:`anonlab.redact.score.coverage`).

Memory: the peak resident set (sampled in a child process, :func:`peak_rss`) of building the models and
``Redactor.video`` on the synthetic clip's first ``--rss-frames`` frames and on 10 copies of them one after the
other.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from anonlab.redact.score import coverage, walking_clip

DEFACE_THRESH, DEFACE_MASK_SCALE = 0.2, 1.3  # deface CLI defaults
#: the speed configuration: full-frame detection on every 8th frame (ROI tracking between), CenterFace + YuNet
SPEED_EVERY, SPEED_FACES = 8, (("centerface", 0.2), ("yunet", 0.4))
#: ... and the person detector (head regions) on every 2nd frame: on PETS09 frames 101-160 (2x) the speed setting
#: covered 98.5 / 98.0 / 94.2 / 83.2 % of head-frames with persons every 1 / 2 / 4 / 8 frames, at 6.0 / 10.2 / 14.3 /
#: 16.1 frames/s (2026-11-30, loaded cores). Those frames are among the scored ones (101-400): this one choice was
#: made on them
SPEED_PERSONS_EVERY = 2


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


def score(boxes, truths, size_hw, shape: str, mask_scale: float) -> dict:
    """Coverage of per-frame redaction ``boxes`` against ``truths``: per-frame faces (scores at the top level) or
    ``{name: (frame indices or None for all, per-frame faces)}`` (one sub-dict each)."""
    if isinstance(truths, dict):
        return {name: coverage(boxes if idx is None else [boxes[k] for k in idx], f, size_hw, ARGS.cover, shape,
                               mask_scale) for name, (idx, f) in truths.items()}
    return coverage(boxes, truths, size_hw, ARGS.cover, shape, mask_scale)


def run_anonlab(clip: Path, out_dir: Path, opts, faces, panel=None, stride: int = 1) -> dict:
    """Time ``Redactor.video`` on ``clip`` and score its boxes; with ``panel``, also time the verification."""
    from anonlab.io.video import VideoReader
    from anonlab.redact.core import Redactor

    r = Redactor(opts, record_boxes=True)
    n = len(VideoReader(clip))
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / "clip.mp4"
    t = time.perf_counter()
    r.video(clip, dst, lambda k: None)
    t_redact = time.perf_counter() - t
    size_hw = VideoReader(clip).size_hw
    row = {"frames": n, "fps_redact": n / t_redact}
    if faces is not None:
        row.update(score(r.last_boxes, faces, size_hw, opts.shape, opts.mask_scale))
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


def run_deface(frames, faces, clip: Path | None = None) -> dict:
    """deface's CenterFace + ``anonymize_frame`` on ``frames`` (``fps_detect_and_anonymize``: no decode or encode,
    an upper bound of its command's frames/s) and, with ``clip`` (the same frames, written losslessly), end to end
    as its command runs: decode, detect, anonymize, encode with deface's writer settings (imageio-ffmpeg's libx264
    at its default quality 5 = CRF 25, x264's default preset ``medium``), here with PyAV, the encoder in a thread
    as deface's is in an ffmpeg subprocess (``fps_end_to_end``; deface's own reader and writer need
    imageio-ffmpeg's ffmpeg binary, absent offline)."""
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    from anonlab.io.video import VideoReader, VideoWriter

    with contextlib.redirect_stdout(sys.stderr):
        cf = CenterFace(in_shape=None, backend="onnxrt", override_execution_provider="CPUExecutionProvider")

    def one(fr):
        img = fr.permute(1, 2, 0).contiguous().numpy()
        dets, _ = cf(img, threshold=DEFACE_THRESH)
        out = img.copy()  # (anonymize_frame draws in place)
        anonymize_frame(dets, out, mask_scale=DEFACE_MASK_SCALE, replacewith="blur", ellipse=True,
                        draw_scores=False, replaceimg=None, mosaicsize=20)
        return dets, out

    theirs = []
    t = time.perf_counter()
    for fr in frames:
        dets, _ = one(fr)
        theirs.append(torch.from_numpy(np.asarray(dets[:, :4], dtype=np.float32)).reshape(-1, 4))
    row = {"frames": len(frames), "fps_detect_and_anonymize": len(frames) / (time.perf_counter() - t)}
    if clip is not None:
        reader = VideoReader(clip)
        t = time.perf_counter()
        # deface's writer is an ffmpeg subprocess, encoding while the next frame is detected: here a thread (PyAV
        # releases the GIL), one frame behind, as anonlab's encoder thread is one batch behind
        with VideoWriter(clip.with_name("deface_out.mp4"), reader.size_hw, reader.rate or 25, crf=25,
                         preset="medium") as w, ThreadPoolExecutor(1) as encoder:
            pending = None
            for k in range(len(reader)):
                _, out = one(reader.read(k))
                if pending is not None:
                    pending.result()
                pending = encoder.submit(w.write, torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1))
            if pending is not None:
                pending.result()
        row["fps_end_to_end"] = len(reader) / (time.perf_counter() - t)
        reader.close()
    if faces is not None:
        row.update(score(theirs, faces, tuple(frames[0].shape[1:]), "ellipse", DEFACE_MASK_SCALE))
    return row


def pets_clip(start: int, n_frames: int, up: float, pseudo_stride: int):
    """PETS09 S2L1 frames ``start`` .. ``start + n_frames - 1`` (0-based) of vtest.avi upscaled ``up`` x (bilinear),
    their frame rate, and two ground truths (per frame: ``(boxes float32 (K, 4) xyxy pixels of the upscaled
    frame, ids int64 (K,))``):

    - ``heads``: the head of every annotated pedestrian (MOTChallenge tracks, ignore rows left out; ids are the
      track ids), :func:`anonlab.redact.score.heads_of_persons`;
    - ``pseudo_faces``: on every ``pseudo_stride``-th frame only, the face pseudo ground truth of the strongest
      panel at 2x the upscaled frame (:func:`anonlab.metrics.pseudo_gt.consensus` of MTCNN 0.9, CenterFace 0.5 and
      YuNet 0.6, two votes); ids are unique per face (no tracks: the frames are not consecutive).
    Returned as ``frames, fps, {"heads": (None, faces), "pseudo_faces": (frame indices, faces)}``."""
    from anonlab.build import build_config, group_config
    from anonlab.datasets.mot import read_mot_gt, read_seqinfo
    from anonlab.detectors import DETECTORS
    from anonlab.io.video import VideoReader
    from anonlab.metrics.pseudo_gt import consensus
    from anonlab.redact.score import heads_of_persons

    root = Path(os.environ.get("ANONLAB_SHARED", "../shared")) / "datasets/pets09_s2l1_vtest"
    reader = VideoReader(root / "vtest.avi")
    gt = read_mot_gt(root / "gt/gt.txt")
    scale = up * reader.size_hw[1] / read_seqinfo(root / "seqinfo.ini").size_hw[1]  # 2 x 0.625
    frames, heads = [], []
    for k in range(start, min(len(reader), start + n_frames)):
        fr = reader.read(k)
        frames.append(torch.nn.functional.interpolate(fr[None].float(), scale_factor=up, mode="bilinear")
                      .round().clamp(0, 255).to(torch.uint8)[0])
        boxes, ids, ignore = gt.get(k + 1, (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64),
                                            torch.zeros(0, dtype=torch.bool)))
        heads.append((heads_of_persons(boxes[~ignore] * scale), ids[~ignore]))
    panel = []
    for name, thr in (("mtcnn", 0.9), ("centerface", 0.5), ("yunet", 0.6)):
        cfg = group_config("detector", name, DETECTORS)
        cfg.threshold = thr
        if "max_side" in cfg:
            cfg.max_side = 32 * -(-2 * max(frames[0].shape[1:]) // 32)  # the 2x frame at full resolution
        panel.append((thr, build_config(cfg, name).to(ARGS.device).eval()))
    idx, pseudo, next_id = list(range(0, len(frames), pseudo_stride)), [], 0
    for k in idx:
        up2 = torch.nn.functional.interpolate(frames[k][None].float(), scale_factor=2, mode="bicubic")
        up2 = up2.round().clamp(0, 255).to(torch.uint8).to(ARGS.device)
        with torch.inference_mode():
            dets = consensus([det(up2).above(thr).to("cpu") for thr, det in panel], 1, 2)
        pseudo.append((dets.boxes / 2, torch.arange(next_id, next_id + len(dets.boxes))))
        next_id += len(dets.boxes)
    return frames, reader.fps, {"heads": (None, heads), "pseudo_faces": (idx, pseudo)}


def peak_rss(clip: Path, every: int) -> tuple[float, float]:
    """Memory of a child process that builds the models and redacts ``clip`` (``Redactor.video``, the speed
    configuration), MiB: the largest resident set sampled every 5 ms (``/proc/self/statm``) from before the models
    are built to the end, and while the video alone is redacted. (Not ``ru_maxrss``: Linux keeps it across
    ``fork`` + ``exec``, so a child reports at least its parent's peak, this benchmark's own gigabytes.)"""
    code = (f"import threading, time, os; from pathlib import Path;"
            f"from anonlab.redact.core import RedactOptions, Redactor\n"
            f"page = os.sysconf('SC_PAGE_SIZE'); top = [0]; done = threading.Event()\n"
            f"def sample():\n"
            f"    while not done.is_set():\n"
            f"        top[0] = max(top[0], int(open('/proc/self/statm').read().split()[1]) * page); time.sleep(0.005)\n"
            f"t = threading.Thread(target=sample); t.start()\n"
            f"r = Redactor(RedactOptions(progress=False, detect_every={every}, faces={SPEED_FACES!r}, "
            f"persons_every={SPEED_PERSONS_EVERY}, device={ARGS.device!r}))\n"
            f"built = top[0]; top[0] = 0\n"
            f"r.video(Path({str(clip)!r}), Path({str(clip.with_name('rss_out.mp4'))!r}), lambda k: None)\n"
            f"done.set(); t.join()\n"
            f"print(max(built, top[0]) // 1024); print(top[0] // 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    whole, during = (int(v) / 1024 for v in out.stdout.strip().splitlines()[-2:])
    return whole, during


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cover", type=float, default=0.9)
    ap.add_argument("--frames-1080", type=int, default=20, help="frames of the upscaled (frames/s) clips")
    ap.add_argument("--pets-start", type=int, default=100,
                    help="first PETS frame (0-based; default 100: frames 0-99 chose the head region geometry)")
    ap.add_argument("--pets-frames", type=int, default=300)
    ap.add_argument("--pets-pseudo-stride", type=int, default=10,
                    help="face pseudo ground truth (the panel at 2x) on every Nth PETS frame (default 10)")
    ap.add_argument("--rss-frames", type=int, default=40,
                    help="frames of the short memory clip (the long one is 10x); more than the look-ahead buffer of "
                    "the speed setting (23 frames + 2 batches), or the short clip never fills it")
    ap.add_argument("--verify-stride", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: synthetic (needs Penn-Fudan), 1080p, pets, upscaled (PETS frames/s "
                    "at 720p/1080p, run when synthetic is skipped), rss")
    ap.add_argument("--pets-upscale", type=float, default=2.0,
                    help="upscale of the PETS clip (default 2: vtest.avi is a 480x360 re-encode of the 768x576 "
                    "original; 2x gives 960x720 with faces of ~9-13 px, the original's 8-15 px)")
    ap.add_argument("--out", default=None)
    ARGS = args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from anonlab.redact import RedactOptions
    from anonlab.redact.verify import DEFAULT_PANEL, panel_checks

    tmp = Path(tempfile.mkdtemp())
    default = RedactOptions(progress=False, device=args.device)
    speed = RedactOptions(progress=False, device=args.device, detect_every=SPEED_EVERY, faces=SPEED_FACES,
                          persons_every=SPEED_PERSONS_EVERY)
    speed_faces = replace(speed, heads=())
    panel = panel_checks(DEFAULT_PANEL, args.device)
    import onnxruntime

    doc = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
           "device": f"{args.device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
           + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""),
           "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
           "cover_threshold": args.cover,
           "options": {"default": "centerface 0.2 (onnxruntime on CPU) + yunet 0.4 + ultraface 0.5, head regions of "
                                  "nanodet_m 0.2 persons on every frame, ROI yunet 0.4 under 24 px, hold 4, max_gap 15",
                       "speed": f"--faces centerface:0.2,yunet:0.4 --detect-every {SPEED_EVERY} "
                                f"--persons-every {SPEED_PERSONS_EVERY}",
                       "faces_only": "the default with --no-heads",
                       "speed_faces_only": "the speed setting with --no-heads (near footage: faces of 10 px and more)"},
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
                     "deface": run_deface(frames_, faces_, clip_),
                     "anonlab_default": run_anonlab(clip_, tmp / name / "o1", default, faces_),
                     "anonlab_speed": run_anonlab(clip_, tmp / name / "o2", speed, faces_),
                     "anonlab_speed_faces_only": run_anonlab(clip_, tmp / name / "o3", speed_faces, faces_)}
        print(emit(), flush=True)

    frames = None
    if "synthetic" not in skip:
        frames, faces = make_clip(args.frames, args.people, args.seed)
        clip = write_clip(tmp / "in" / "clip.mp4", frames, 25)
        hs = torch.cat([f[0] for f in faces])
        doc["synthetic_720p"] = {
            "clip": {"frames": len(frames), "size_hw": list(frames[0].shape[1:]), "fps": 25, "people": args.people,
                     "seed": args.seed, "face_height_px_median": float((hs[:, 3] - hs[:, 1]).median())},
            "deface": run_deface(frames, faces, clip),
            "anonlab_default": run_anonlab(clip, tmp / "o1", default, faces, panel, args.verify_stride),
            "anonlab_speed": run_anonlab(clip, tmp / "o2", speed, faces, panel, args.verify_stride),
            "anonlab_speed_faces_only": run_anonlab(clip, tmp / "o3", speed_faces, faces),
            # deface again after anonlab: the load of shared cores drifts; ratios are taken against the faster one
            "deface_repeat": run_deface(frames, faces, clip)}
        print(emit(), flush=True)
        if "1080p" not in skip:
            speed_section("synthetic_1080p", *upscaled(frames, args.frames_1080, (1080, 1920), faces))
    if "pets" not in skip:
        pframes, pfps, truths = pets_clip(args.pets_start, args.pets_frames, args.pets_upscale, args.pets_pseudo_stride)
        pclip = write_clip(tmp / "inpets" / "clip.mp4", pframes, pfps)
        heads = torch.cat([f[0] for f in truths["heads"][1]])
        pseudo = torch.cat([f[0] for f in truths["pseudo_faces"][1]])
        doc["pets09_s2l1"] = {
            "clip": {"frames": len(pframes), "first_frame": args.pets_start + 1, "upscale": args.pets_upscale,
                     "size_hw": list(pframes[0].shape[1:]), "fps": pfps, "head_frames": len(heads),
                     "head_height_px_median": float((heads[:, 3] - heads[:, 1]).median()),
                     "pseudo_face_frames_scored": len(truths["pseudo_faces"][0]), "pseudo_faces": len(pseudo)},
            "deface": run_deface(pframes, truths, pclip),
            "anonlab_default": run_anonlab(pclip, tmp / "o5", default, truths),
            "anonlab_speed": run_anonlab(pclip, tmp / "o6", speed, truths),
            "anonlab_faces_only": run_anonlab(pclip, tmp / "o7", replace(default, heads=()), truths)}
        print(emit(), flush=True)
        if frames is None and "upscaled" not in skip:  # no Penn-Fudan (the device run): frames/s on PETS frames upscaled, no coverage
            for hw in ((720, 1280), (1080, 1920)):
                speed_section(f"pets_upscaled_{hw[0]}p", *upscaled(pframes, args.frames_1080, hw))
    if "rss" not in skip and frames is not None:
        short = frames[:args.rss_frames]
        a = write_clip(tmp / "rss" / "short.mp4", short, 25)
        b = write_clip(tmp / "rss" / "long.mp4", short * 10, 25)
        (ws, ds), (wl, dl) = peak_rss(a, SPEED_EVERY), peak_rss(b, SPEED_EVERY)
        doc["peak_rss_mib"] = {"frames_short": len(short), "frames_long": 10 * len(short), "short": ws, "long": wl,
                               "ratio": wl / ws, "during_video_short": ds, "during_video_long": dl,
                               "ratio_during_video": dl / ds, "options": "the speed configuration",
                               "measured": "resident set sampled every 5 ms in a child process, from before the "
                                           "models are built (short/long) and while the video alone is redacted"}
        print(emit(), flush=True)


ARGS = None

if __name__ == "__main__":
    main()
