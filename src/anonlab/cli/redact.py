"""``anonlab redact INPUT... --out DIR``: argument glue for :mod:`anonlab.redact`.

Exit codes: 0 done, nothing leaks; 2 a bad option or an unsafe output location (one ``error:`` line, before any
work); 3 some inputs could not be read (one ``error:`` line each; the others are written); 4 the verification
panel found something in the output (see DIR/leaks.json and DIR/leaks.png).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

EXIT_OK, EXIT_BAD_CONFIG, EXIT_PARTIAL, EXIT_LEAK = 0, 2, 3, 4


def _pairs(text: str, flag: str) -> tuple[tuple[str, float], ...]:
    """``"centerface:0.2,yunet:0.4"`` -> ((name, threshold), ...); a name alone keeps its config's threshold."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, thr = item.partition(":")
        if thr:
            try:
                value = float(thr)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{flag}: threshold {thr!r} of {name} is not a number") from None
            if not 0.0 <= value <= 1.0:
                raise argparse.ArgumentTypeError(f"{flag}: threshold {value} of {name} is outside [0, 1]")
            out.append((name, value))
        else:
            out.append((name, None))
    return tuple(out)


def _fmt(pairs) -> str:
    return ",".join(f"{n}:{t}" for n, t in pairs)


class _Parser(argparse.ArgumentParser):
    """argparse's parser with its errors on one line (argparse prints the whole usage block above them)."""

    def error(self, message: str):
        print(f"error: {message} (see anonlab redact --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIG)


def parser() -> argparse.ArgumentParser:
    from anonlab.redact import DEFAULT_FACES, DEFAULT_PERSONS, REDACTIONS
    from anonlab.redact.core import DEFAULT_ROI
    from anonlab.redact.verify import DEFAULT_PANEL

    p = _Parser(prog="anonlab redact", description="Redact faces and heads (or whole persons) in "
                                "photos, folders and videos; outputs are upright, carry no metadata, and are checked "
                                "by an independent detector panel.", epilog=PRESET_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, or folders (walked recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (the input layout is kept)")
    p.add_argument("--faces", default=_fmt(DEFAULT_FACES), metavar="DET:THR,...",
                   help=f"face detector ensemble, union of all (default {_fmt(DEFAULT_FACES)}; '' for none; on CPU "
                   "centerface runs on onnxruntime)")
    p.add_argument("--heads", action=argparse.BooleanOptionalAction, default=True,
                   help="also redact the head region of every person the person detectors find, for faces too "
                   "small or turned away for the face detectors (default on)")
    p.add_argument("--persons", action="store_true", help="redact whole persons instead of their heads (whole-body "
                   "redaction)")
    p.add_argument("--person-detectors", default=_fmt(DEFAULT_PERSONS), metavar="DET:THR,...",
                   help=f"person detectors used by --heads and --persons (default {_fmt(DEFAULT_PERSONS)})")
    p.add_argument("--defense", default="solid", choices=REDACTIONS, help="how regions are redacted (default solid)")
    p.add_argument("--color", default=None, help="solid: R,G,B (default 0,0,0)")
    p.add_argument("--blocks", type=int, default=None, help="pixelate: blocks per region side (default 8)")
    p.add_argument("--shape", default="ellipse", choices=("ellipse", "rect"), help="region shape (default ellipse)")
    p.add_argument("--mask-scale", type=float, default=1.3, help="box enlargement about its centre (default 1.3)")
    p.add_argument("--hold", type=int, default=4, help="video: frames a detection is held before and after (4)")
    p.add_argument("--max-gap", type=int, default=15, help="video: longest miss of a track that is interpolated (15)")
    p.add_argument("--grow", type=float, default=0.05, help="video: held-box growth per frame, fraction (0.05)")
    p.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="video: run the full-frame face ensemble on every Nth frame, track faces between (default 1)")
    p.add_argument("--persons-every", type=int, default=1, metavar="N",
                   help="video: run the person detectors (--heads, --persons) on every Nth frame, hold their regions "
                   "between (default 1)")
    p.add_argument("--roi", default=_fmt(DEFAULT_ROI), metavar="DET:THR,...",
                   help=f"detector re-run on windows around small and tracked faces (default {_fmt(DEFAULT_ROI)}; "
                   "'' for none)")
    p.add_argument("--refine-below", type=float, default=24.0, metavar="PX",
                   help="faces whose shorter side is below PX are re-detected at higher resolution (default 24)")
    p.add_argument("--audio", default="drop", choices=("drop", "keep"), help="audio track (default drop)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality of output videos, 0-51 (default 18)")
    p.add_argument("--x264-preset", default="veryfast", choices=("ultrafast", "superfast", "veryfast", "faster",
                   "fast", "medium", "slow", "slower", "veryslow"), help="H.264 speed preset (default veryfast)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="quality of JPEG outputs (default 95)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--same-folder", action="store_true",
                   help="allow --out to be an input folder: outputs are written as NAME.redacted.EXT beside inputs")
    p.add_argument("--no-verify", action="store_true", help="skip the verification pass")
    p.add_argument("--verify-with", default=_fmt(DEFAULT_PANEL), metavar="DET:THR,...",
                   help=f"verification panel; must not overlap the ensemble (default {_fmt(DEFAULT_PANEL)})")
    p.add_argument("--identity", default="dlib_resnet", metavar="REC,...",
                   help="verification: recognizers that try to match each face the panel finds to the clean input "
                   "(default dlib_resnet; '' for none)")
    p.add_argument("--verify-stride", type=int, default=1, help="verify every Nth video frame (default 1)")
    p.add_argument("--batch", type=int, default=8, help="frames per detector call (default 8)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads while redacting (default 0 = torch's default, all cores; 1 is faster on "
                   "cores shared with other jobs)")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--preset", metavar="FILE", help="YAML of option values (see below); explicit flags override it")
    return p


PRESET_HELP = """preset file (--preset FILE; `anonlab recommend` writes them):
  a YAML mapping; keys are the long option names above without '--' and with '-' -> '_', values what the option
  takes (flags: true/false; detector lists also as {name: threshold}; color also as [R, G, B]), e.g.
      faces: {centerface: 0.2, yunet: 0.4, ultraface: 0.5}
      defense: pixelate
      blocks: 8
      mask_scale: 1.3
      hold: 2
      detect_every: 1
  flags given on the command line override the preset; an unknown key is an error (exit 2); inputs, out,
  overwrite and same_folder cannot be preset. Loader: anonlab.redact.core.load_preset."""


def _allowed(p: argparse.ArgumentParser) -> dict:
    """Preset keys of ``p``: dest -> (type, choices), for :func:`anonlab.redact.core.load_preset`."""
    out = {}
    for a in p._actions:
        if not a.option_strings or a.dest == "help":
            continue
        kind = bool if isinstance(a, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)) else (a.type or str)
        out[a.dest] = (kind, tuple(a.choices) if a.choices else None)
    return out


#: exit status after Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_INTERRUPTED = 130


def redact_cmd(argv: list[str]) -> int:
    """``anonlab redact`` (see the module docstring); Ctrl-C ends it with one line and :data:`EXIT_INTERRUPTED`:
    the outputs finished before it stay, the one being written is removed (its ``finally``)."""
    try:
        return _redact_cmd(argv)
    except KeyboardInterrupt:
        print("error: interrupted: outputs finished before stay under their names, the file being written was "
              "removed, and leaks.json is not up to date", file=sys.stderr)
        return EXIT_INTERRUPTED


def _redact_cmd(argv: list[str]) -> int:
    import torch

    from anonlab.redact import RedactError, RedactOptions, TemporalOptions, redact
    from anonlab.redact.core import (
        CPU_BACKENDS,
        PRESET_FORBIDDEN,
        check_device,
        load_preset,
    )

    p = parser()
    pre = _Parser(prog="anonlab redact", add_help=False)
    pre.add_argument("--preset")
    known, _ = pre.parse_known_args(argv)
    if known.preset is not None:
        try:
            values = load_preset(known.preset, {k: v for k, v in _allowed(p).items() if k not in PRESET_FORBIDDEN})
        except RedactError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_CONFIG
        p.set_defaults(**values)  # explicit flags are parsed over these
    args = p.parse_args(argv)
    try:
        faces = _pairs(args.faces, "--faces")
        people = _pairs(args.person_detectors, "--person-detectors")
        persons = people if args.persons else ()
        heads = people if args.heads and not args.persons else ()
        roi = _pairs(args.roi, "--roi")
        panel = _pairs(args.verify_with, "--verify-with") if not args.no_verify else ()
    except argparse.ArgumentTypeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.persons and not people:
        print("error: --persons redacts what the person detectors find, but --person-detectors is empty",
              file=sys.stderr)
        return EXIT_BAD_CONFIG
    params: dict = {}
    if args.color is not None:
        if args.defense != "solid":
            print("error: --color applies to --defense solid only", file=sys.stderr)
            return EXIT_BAD_CONFIG
        try:
            params["color"] = [int(c) for c in args.color.split(",")]
        except ValueError:
            print(f"error: --color must be R,G,B integers, got {args.color!r}", file=sys.stderr)
            return EXIT_BAD_CONFIG
    if args.blocks is not None:
        if args.defense != "pixelate":
            print("error: --blocks applies to --defense pixelate only", file=sys.stderr)
            return EXIT_BAD_CONFIG
        params["blocks"] = args.blocks
    # (one network under two backends is one detector: centerface runs as centerface_ort on the CPU)
    same = {backend: name for name, backend in CPU_BACKENDS.items()}
    used = {same.get(n, n) for n, _ in faces + persons + heads + (roi if faces else ())}
    overlap = {n for n, _ in panel if same.get(n, n) in used}
    if overlap:
        print(f"error: --verify-with {', '.join(sorted(overlap))} also redacts; the panel must be independent",
              file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.verify_stride < 1:
        print(f"error: --verify-stride must be >= 1, got {args.verify_stride}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        temporal = TemporalOptions(args.hold, args.max_gap, args.grow)
    except ValueError as e:  # named by its flag: "max_gap must be ..." -> "--max-gap must be ..."
        text = str(e)
        key = text.partition(" ")[0]
        flag = f"--{key.replace('_', '-')}" if key in {f.name for f in fields(TemporalOptions)} else key
        print(f"error: {flag}{text[len(key):]}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        opts = RedactOptions(faces=faces, persons=persons, heads=heads, defense=args.defense, defense_params=params,
                             shape=args.shape, mask_scale=args.mask_scale,
                             temporal=temporal,
                             roi=roi, refine_below=args.refine_below,
                             detect_every=args.detect_every, persons_every=args.persons_every, audio=args.audio,
                             crf=args.crf, x264_preset=args.x264_preset,
                             threads=args.threads or None, jpeg_quality=args.jpeg_quality,
                             overwrite=args.overwrite,
                             same_folder=args.same_folder, batch=args.batch, device=device,
                             progress=not args.no_progress)
        check_device(device)  # (before the panel's models are moved there)
        checks = None
        if panel:
            from anonlab.redact.verify import build_recognizers, panel_checks

            checks = panel_checks(panel, device)  # built (and checked) before any file is touched
            recognizers = build_recognizers([n for n in args.identity.split(",") if n.strip()], device)
        report = redact(args.inputs, args.out, opts)
    except (RedactError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for line in report.failures:
        print(f"error: {line}", file=sys.stderr)
    for src, note in report.notes.items():
        print(f"note: {src}: {note}", file=sys.stderr)
    fps = report.frames / report.seconds if report.seconds > 0 else 0.0
    print(f"redacted {len(report.outputs)} file(s), {report.frames} frame(s) in {report.seconds:.1f} s "
          f"({fps:.1f} frames/s) into {args.out}")
    code = EXIT_PARTIAL if report.failures else EXIT_OK
    from pathlib import Path

    from anonlab.redact.verify import earlier_leaks, write_leaks

    earlier = earlier_leaks(Path(args.out), set(report.outputs.values()))
    if earlier:
        print(f"note: {Path(args.out) / 'leaks.json'} keeps {len(earlier)} earlier finding(s) in "
              f"{len({x['file'] for x in earlier})} file(s) this run did not write", file=sys.stderr)
    if checks is None and (Path(args.out) / "leaks.json").exists():
        write_leaks(Path(args.out), [], [], earlier)  # (findings about the files written now are out of date)
    if checks is not None:
        from anonlab.redact.verify import IdentityStats, verify

        stats = IdentityStats()
        from anonlab.redact.core import torch_threads

        with torch_threads(opts.threads):
            leaks, crops, failures = verify(list(report.outputs.values()), checks, device, args.verify_stride,
                                            args.batch, sources={v: k for k, v in report.outputs.items()},
                                            recognizers=recognizers, stats=stats)
        if recognizers and stats.checked + stats.skipped:
            print(f"identity check: {stats.checked} face(s) matched against the clean input, {stats.matched} "
                  f"identified, {stats.skipped} skipped (smaller than the recognizer's min_face_px, or no clean frame "
                  "of the same size)",
                  file=sys.stderr)
        for line in failures:
            print(f"error: {line}", file=sys.stderr)
        path, sheet = write_leaks(Path(args.out), leaks, crops, earlier)
        if failures:
            code = max(code, EXIT_PARTIAL)
        if leaks:
            print(f"LEAK: the verification panel found {len(leaks)} region(s) in "
                  f"{len({x.file for x in leaks})} file(s): see {path} and {sheet}", file=sys.stderr)
            return EXIT_LEAK
        print(f"verified: no leak found by {', '.join(n for n, _ in panel)} (see {path})")
    return code
