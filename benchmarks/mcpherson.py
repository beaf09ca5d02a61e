"""McPherson et al. 2016 on AT&T faces: does a mosaic or a blur stop an attacker who trains on redacted faces?

Protocol (McPherson, Shokri & Shmatikov, "Defeating Image Obfuscation with Deep Learning", arXiv 1609.00408, on
the AT&T set): per person, 8 random training images and the other 2 for testing (80 probes of 40 people), per
seed; ``--seeds`` splits. Every image is redacted whole (the crop is the face: box = the full 92 x 112 frame,
the ``att_faces`` dataset's ``face_source: image``). Obfuscations: clean, mosaic 8 px and 16 px blocks
(``pixelate block_px``), Gaussian blur sigma 2, 4, 8 px (``gaussian_blur sigma``).

Attackers, each closed set over the 40 people:

- ``naive``: clean gallery (the 8 clean training images per person), redacted probe, the recognizer's nearest
  neighbour (:func:`anonlab.metrics.identity.identification_ranks`); the off-the-shelf contrast;
- ``restoring``: the same, after :func:`anonlab.identity.restore.restore` (deconvolution / bicubic unmosaic);
- ``parrot``: gallery redacted like the probe, nearest neighbour;
- ``probe``: McPherson's trained attacker on embeddings: :class:`~anonlab.identity.trained.LinearProbe` fitted on
  the recognizer's embeddings of the 8 redacted training images per person;
- ``cnn``: :class:`~anonlab.identity.trained.CNNAttacker`, a small CNN trained from scratch on the redacted
  training pixels (seeded with the split's seed).

Top-1 / top-5 pool the probes of every seed; 95 % intervals are percentile bootstraps over the 40 identities
(:func:`anonlab.metrics.identity.identify`). Chance: 2.5 % top-1, 12.5 % top-5.

Run: ``python benchmarks/mcpherson.py --seeds 3 --out benchmarks/mcpherson.json`` (ANONLAB_SHARED must hold
datasets/att_orl_faces; mobilefacenet needs models/mobilefacenet_foamliu.onnx). One torch thread by default: on a
shared 2-core machine two threads ran the CNN 8x slower.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import emit  # noqa: E402

from anonlab.datasets.identity import AttFaces  # noqa: E402
from anonlab.defenses import DEFENSES  # noqa: E402
from anonlab.identity.restore import restoration, restore  # noqa: E402
from anonlab.identity.trained import (  # noqa: E402
    CNN_EPOCHS,
    CNNAttacker,
    LinearProbe,
    true_ranks,
    whole_image_boxes,
)
from anonlab.metrics.identity import identification_ranks, identify  # noqa: E402
from anonlab.recognizers import RECOGNIZERS  # noqa: E402
from anonlab.types import Detections  # noqa: E402

SETTINGS = [  # the paper's mosaics first: the JSON is rewritten as each setting finishes
    ("mosaic 8 px", "pixelate", {"block_px": 8}),
    ("mosaic 16 px", "pixelate", {"block_px": 16}),
    ("clean", "none", {}),
    ("blur sigma 2 px", "gaussian_blur", {"sigma": 2.0}),
    ("blur sigma 4 px", "gaussian_blur", {"sigma": 4.0}),
    ("blur sigma 8 px", "gaussian_blur", {"sigma": 8.0}),
]
N_TRAIN = 8  # McPherson et al.: 8 random training images per person, the other 2 for testing


def load_att(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    ds = AttFaces(root)
    images = torch.stack([ds.load(i).image for i in range(len(ds))])
    return images, torch.tensor([ds.identity(i) for i in range(len(ds))], dtype=torch.int64)


def split(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """bool (N,): True for the N_TRAIN training images of each person, drawn with a torch.Generator(seed)."""
    g = torch.Generator().manual_seed(seed)
    train = torch.zeros(len(labels), dtype=torch.bool)
    for p in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == p).flatten()
        train[idx[torch.randperm(len(idx), generator=g)[:N_TRAIN]]] = True
    return train


def embed(rec, images: torch.Tensor, batch: int = 50) -> torch.Tensor:
    out = []
    for s in range(0, len(images), batch):
        x = images[s:s + batch]
        boxes, idx = whole_image_boxes(x)
        with torch.no_grad():
            crops, _ = rec.crop(x, boxes, idx)
            out.append(rec.embed(crops))
    return torch.cat(out)


def nn_ranks(rec, gallery: torch.Tensor, g_labels: torch.Tensor, probe: torch.Tensor, p_labels: torch.Tensor):
    d = rec.pairwise_distance(probe, gallery).numpy()
    return identification_ranks(d, p_labels.numpy(), g_labels.numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="number of random 8/2 splits (seeds 0..n-1)")
    ap.add_argument("--recognizers", default="dlib_resnet,mobilefacenet")
    ap.add_argument("--epochs", type=int, default=CNN_EPOCHS, help="small-CNN epochs (the module default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--people", type=int, default=40, help="first N people only (a quick check of the script)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--table", default=None, help="print the markdown table of this result JSON and exit")
    args = ap.parse_args()
    if args.table:
        import json

        print(markdown(json.loads(Path(args.table).read_text())))
        return
    torch.set_num_threads(args.threads)
    shared = Path(os.environ.get("ANONLAB_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    images, labels = load_att(str(shared / "datasets" / "att_orl_faces"))
    keep = labels < args.people
    images, labels = images[keep], labels[keep]
    boxes, bidx = whole_image_boxes(images)
    dets = Detections(boxes, torch.ones(len(images)), torch.zeros(len(images), dtype=torch.int64), bidx)

    recs = {}
    for name in [r for r in args.recognizers.split(",") if r]:
        try:
            recs[name] = RECOGNIZERS.build(name)
        except Exception as e:  # a recognizer whose weights are absent is reported, not fatal
            print(f"skipping recognizer {name}: {e}", file=sys.stderr)

    t0 = time.perf_counter()
    ranks: dict[tuple[str, str], list[np.ndarray]] = {}
    probes: dict[tuple[str, str], list[np.ndarray]] = {}
    cnn_fit_s: list[float] = []
    notes: dict[str, dict] = {}
    splits = [split(labels, seed) for seed in range(args.seeds)]

    def add(setting: str, attacker: str, r: np.ndarray, p: torch.Tensor) -> None:
        ranks.setdefault((setting, attacker), []).append(np.asarray(r, dtype=np.float64))
        probes.setdefault((setting, attacker), []).append(p.numpy())

    clean_emb = {r: embed(rec, images) for r, rec in recs.items()}
    for label, dname, params in SETTINGS:  # one setting at a time: the JSON grows as each one finishes
        defense = DEFENSES.build(dname, **params)
        redacted = defense(images, dets)
        restored = restore(redacted, dets, defense)
        notes[label] = {"defense": defense.label(), "restoration": restoration(defense)}
        emb = {r: clean_emb[r] if dname == "none" else embed(rec, redacted) for r, rec in recs.items()}
        emb_rest = {r: emb[r] if torch.equal(restored, redacted) else embed(rec, restored) for r, rec in recs.items()}
        for seed, train in enumerate(splits):
            ytr, yte = labels[train], labels[~train]
            for r, rec in recs.items():
                e, er, ec = emb[r], emb_rest[r], clean_emb[r]
                add(label, f"naive {r}", nn_ranks(rec, ec[train], ytr, e[~train], yte), yte)
                add(label, f"restoring {r}", nn_ranks(rec, ec[train], ytr, er[~train], yte), yte)
                add(label, f"parrot {r}", nn_ranks(rec, e[train], ytr, e[~train], yte), yte)
                probe = LinearProbe().fit(e[train], ytr)
                add(label, f"linear probe {r}", true_ranks(probe, probe.scores(e[~train]), yte).numpy(), yte)
            t = time.perf_counter()
            cnn = CNNAttacker(seed=seed, epochs=args.epochs).fit(redacted[train], ytr)
            cnn_fit_s.append(time.perf_counter() - t)
            add(label, "small CNN", true_ranks(cnn, cnn.scores(redacted[~train]), yte).numpy(), yte)
            print(f"{label} seed {seed}: done ({time.perf_counter() - t0:.0f} s, CNN fit {cnn_fit_s[-1]:.0f} s)",
                  file=sys.stderr)
        rows = []
        for (setting, attacker), rs in ranks.items():
            res = identify(np.concatenate(rs), np.concatenate(probes[setting, attacker]), n_boot=args.n_boot)
            per_seed = [float((x <= 1).mean()) for x in rs]
            rows.append({"obfuscation": setting, "attacker": attacker, "n_probes": res.n_probes,
                         "top1": res.rank1, "top1_ci": list(res.rank1_ci), "top5": res.rank5,
                         "top5_ci": list(res.rank5_ci), "top1_per_seed": per_seed})
        doc = {
            "benchmark": "mcpherson",
            "date": datetime.date.today().isoformat(),
            "device": f"cpu ({platform.machine()}, {args.threads} torch thread(s), 2 cores shared with other jobs)",
            "torch": torch.__version__,
            "dataset": f"att_faces ({len(torch.unique(labels))} people x 10, 92x112 grey; whole image = face box)",
            "protocol": f"{N_TRAIN} random training / 2 test images per person, seeds 0..{args.seeds - 1}; CIs: 95 % "
                        f"percentile bootstrap over identities ({args.n_boot} resamples), probes of all seeds pooled",
            "cnn_epochs": args.epochs,
            "cnn_fit_s_median": float(np.median(cnn_fit_s)),
            "recognizers": list(recs),
            "settings_done": notes,
            "wall_s": time.perf_counter() - t0,
            "rows": rows,
        }
        if args.out:
            emit_quiet(doc, args.out)
    emit(doc, args.out)


def markdown(doc: dict) -> str:
    """The RESULTS.md table of a result JSON: one row per attacker, one column per obfuscation; each cell
    ``top-1 / top-5`` in % with the 95 % intervals under it."""
    attackers = list(dict.fromkeys(r["attacker"] for r in doc["rows"]))
    settings = list(dict.fromkeys(r["obfuscation"] for r in doc["rows"]))
    cell = {(r["obfuscation"], r["attacker"]): r for r in doc["rows"]}

    def fmt(r: dict) -> str:
        p = lambda v: f"{100 * v:.0f}"  # noqa: E731
        return (f"{p(r['top1'])} / {p(r['top5'])}<br>[{p(r['top1_ci'][0])}–{p(r['top1_ci'][1])}] / "
                f"[{p(r['top5_ci'][0])}–{p(r['top5_ci'][1])}]")

    lines = ["| attacker | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    lines += [f"| {a} | " + " | ".join(fmt(cell[s, a]) if (s, a) in cell else "–" for s in settings) + " |"
              for a in attackers]
    return "\n".join(lines)


def emit_quiet(doc: dict, out: str) -> None:
    import json

    Path(out).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
