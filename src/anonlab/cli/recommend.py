"""``anonlab recommend FOOTAGE... [--threat basic|safe-city|adaptive] [--out DIR]``: argument glue for
:mod:`anonlab.recommend`.

Exit codes: 0 a setting qualifies (recommend.yaml written); 2 a bad option, threat model or footage (one ``error:``
line, before any work); 3 a setting qualifies but some frames could not be used (one ``error:`` line each);
4 no setting qualifies (the reason and what to do are printed; recommend.json holds the evidence, no
recommend.yaml is written).
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_BAD_CONFIG, EXIT_PARTIAL, EXIT_NONE = 0, 2, 3, 4


def parser() -> argparse.ArgumentParser:
    from omegaconf import OmegaConf

    from anonlab.build import CONF_DIR
    from anonlab.recommend.core import threat_names

    d = OmegaConf.load(CONF_DIR / "recommend.yaml")
    p = argparse.ArgumentParser(prog="anonlab recommend", description="Find the weakest redaction under which "
                                "no adversary of a threat model finds or identifies the faces of your own footage "
                                "(95 %% intervals), and write it as an `anonlab redact --preset` file.")
    p.add_argument("footage", nargs="+", metavar="FOOTAGE", help="image or video files, or folders (recursive)")
    p.add_argument("--threat", default="basic", metavar="|".join(threat_names()),
                   help="threat model, conf/threat/<name>.yaml (default basic)")
    p.add_argument("--out", default="recommend", metavar="DIR",
                   help="where recommend.yaml, recommend.json and the thumbnails go (default ./recommend)")
    p.add_argument("--persons", action="store_true",
                   help="redact whole persons (judged against person detectors too)")
    p.add_argument("--max-frames", type=int, default=d.max_frames,
                   help=f"frames sampled from the footage, evenly spaced (default {d.max_frames})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"sample offset and bootstrap seed (default {d.seed})")
    p.add_argument("--shape", default=d.shape, choices=("ellipse", "rect"),
                   help=f"redaction region shape, as redact will use it (default {d.shape})")
    p.add_argument("--mask-scale", type=float, default=d.mask_scale,
                   help=f"region enlargement about each face box, as redact will use it (default {d.mask_scale})")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def recommend_cmd(argv: list[str]) -> int:
    from pathlib import Path

    import torch
    from omegaconf import OmegaConf, open_dict

    from anonlab.build import CONF_DIR, BenchError
    from anonlab.recommend import recommend, write_outputs
    from anonlab.recommend.core import PRESET_PARAMS
    from anonlab.recommend.output import print_evidence

    args = parser().parse_args(argv)
    rc = OmegaConf.load(CONF_DIR / "recommend.yaml")
    with open_dict(rc):
        rc.max_frames, rc.seed, rc.shape, rc.mask_scale = args.max_frames, args.seed, args.shape, args.mask_scale
        rc.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        rc.progress = not args.no_progress
    for lad in rc.ladders:  # every candidate must be writable as an `anonlab redact --preset`
        if lad.get("defense") not in PRESET_PARAMS or lad.get("param") != PRESET_PARAMS[lad.defense]:
            print(f"error: {CONF_DIR / 'recommend.yaml'}: ladder {lad.get('defense')}/{lad.get('param')} cannot be "
                  f"written as an `anonlab redact --preset`; valid: "
                  f"{', '.join(f'{d}/{p}' for d, p in PRESET_PARAMS.items())}", file=sys.stderr)
            return EXIT_BAD_CONFIG
    try:
        rec = recommend(args.footage, args.threat, rc, persons=args.persons)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for line in rec.failures:
        print(f"error: {line}", file=sys.stderr)
    if rec.n_frames == 0:
        print("error: no frame of the footage could be read", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print_evidence(rec)
    for item in rec.not_measured:
        print(f"note: not measured: {item}", file=sys.stderr)
    out = Path(args.out)
    written = write_outputs(rec, out)
    if rec.pick is None:
        print(f"NO SETTING QUALIFIES: {rec.why}.\nwhat to do: {rec.advice}.\nevidence: {written['json']}")
        return EXIT_NONE
    print(f"recommended: {rec.pick.short} ({rec.options['shape']}, mask scale {rec.options['mask_scale']:g}) — "
          f"{rec.why}.\nwrote {written['yaml']} (use: anonlab redact --preset "
          f"{written['yaml']} INPUT... --out DIR), {written['json']} and "
          f"{sum(k.startswith('thumb') for k in written)} thumbnail(s) in {rec.wall_s:.1f} s")
    return EXIT_PARTIAL if rec.failures else EXIT_OK
