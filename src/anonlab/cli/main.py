"""``anonlab`` command: ``bench`` (Hydra), ``redact``, ``recommend``, ``list``, ``weights``.

Exit codes: 0 success; 1 a bug (traceback); 2 a bad configuration or input (one ``error:`` line naming the key or
file, before any work: see :mod:`anonlab.cli.config_check`); 3 the run finished but some images could not be used
(unreadable, a size that differs from the annotation, too small a face to rescale: listed in run.json's failures).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# OpenMP worker threads sleep when idle instead of spinning (libgomp reads this once, when torch loads it; set here,
# before any torch import, unless the user chose a policy). With the default active wait, torch's 2 threads spin on
# a shared 2-core machine and small convolutions ran 3-15x slower (UltraFace on 112 x 92 frames, batch 1: 0.05 s per
# frame passive vs 0.2-0.9 s active at load average 6; benchmarks/RESULTS.md, identity smoke section).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EXIT_OK, EXIT_BAD_CONFIG, EXIT_PARTIAL = 0, 2, 3
_status = {"code": EXIT_OK}


def _bench_task(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from anonlab.build import BenchError
    from anonlab.cli.bench import run_and_write

    overrides = list(HydraConfig.get().overrides.task)
    if _names_group(overrides, "defense") and not _names_group(overrides, "sweep"):
        # choosing or changing `defense` on the command line runs that setting alone (plus the clean baseline)
        with open_dict(cfg):
            cfg.sweep = None
    try:
        code = run_and_write(cfg, HydraConfig.get().runtime.output_dir)
    except BenchError as e:
        if os.environ.get("ANONLAB_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        code = EXIT_BAD_CONFIG
    _status["code"] = max(_status["code"], code)


def _names_group(overrides: list[str], group: str) -> bool:
    """True if any Hydra override sets ``group`` or a key below it (``defense=x``, ``defense.sigma=2``)."""
    keys = (o.lstrip("+~").split("=", 1)[0] for o in overrides)
    return any(k == group or k.startswith(group + ".") for k in keys)


def check_config(config_name: str, argv: list[str]) -> int | None:
    """Compose ``config_name`` with ``argv`` as Hydra will (every job of a multirun); on a configuration problem
    print one ``error:`` line naming the key and return :data:`EXIT_BAD_CONFIG`, before any work; else None."""
    from anonlab.build import CONF_DIR
    from anonlab.cli.config_check import config_error

    problem = config_error(CONF_DIR, config_name, argv)
    if problem is None:
        return None
    print(f"error: {problem}", file=sys.stderr)
    return EXIT_BAD_CONFIG


def bench(argv: list[str]) -> int:
    """Hand the remaining arguments to Hydra (overrides, -m, --help, --cfg job, ...) once they compose."""
    import hydra

    from anonlab.build import CONF_DIR

    bad = check_config("bench", argv)
    if bad is not None:
        return bad
    sys.argv = ["anonlab bench", *argv]
    hydra.main(config_path=str(CONF_DIR), config_name="bench", version_base="1.3")(_bench_task)()
    return _status["code"]


def list_components(as_json: bool) -> int:
    from anonlab.camera import CAPTURES, RELEASES
    from anonlab.datasets import DATASETS
    from anonlab.defenses import DEFENSES
    from anonlab.detectors import DETECTORS
    from anonlab.recognizers import RECOGNIZERS

    data = {
        "detectors": [{"name": n, "kind": DETECTORS.get(n).kind,
                       "capabilities": sorted(DETECTORS.get(n).capabilities),
                       "default_threshold": DETECTORS.get(n).default_threshold} for n in DETECTORS.names()],
        "defenses": [{"name": n} for n in DEFENSES.names()],
        "datasets": [{"name": n} for n in DATASETS.names()],
        "captures": [{"name": n} for n in CAPTURES.names()],
        "releases": [{"name": n} for n in RELEASES.names()],
        "recognizers": [{"name": n, "kind": RECOGNIZERS.get(n).kind, "embedding_dim": RECOGNIZERS.get(n).embedding_dim,
                         "distance": RECOGNIZERS.get(n).distance, "threshold": RECOGNIZERS.get(n).threshold}
                        for n in RECOGNIZERS.names()],
    }
    if as_json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    for d in data["detectors"]:
        print(f"detector  {d['name']:<14} {d['kind']:<7} thr={d['default_threshold']:<5} {','.join(d['capabilities'])}")
    for group in ("defenses", "datasets", "captures", "releases"):
        for d in data[group]:
            print(f"{group[:-1]:<9} {d['name']}")
    for d in data["recognizers"]:
        print(f"recognizer {d['name']:<13} {d['kind']:<7} {d['embedding_dim']}-d {d['distance']} thr={d['threshold']}")
    return EXIT_OK


def weights_cmd(args: argparse.Namespace) -> int:
    from anonlab import weights

    if args.weights_cmd == "list":
        for spec in weights.KNOWN.values():
            try:
                found, path = weights.find(spec)
                where = f"found: {found} {path}"
            except FileNotFoundError:
                how = f"`anonlab weights fetch {spec.name}`" if spec.source_url else "not downloadable: see origin"
                where = f"found: missing ({how})"
            except ValueError as e:
                where = f"found: bad checksum ({e})"
            shipped = f"packaged, licence text {spec.licence_file}" if spec.packaged else "not packaged"
            print(f"{spec.name:<12} {spec.file}  licence: {spec.licence} ({shipped})")
            print(f"{'':<12} origin: {spec.origin or spec.source_url}")
            print(f"{'':<12} {where}")
        return EXIT_OK
    path = weights.fetch(args.name, dest_dir=args.dest, url=args.url)
    print(path)
    return EXIT_OK


def report_cmd(args: argparse.Namespace) -> int:
    """Merge every results.parquet under DIR (one run or a multirun) and print/write recall tables; with
    ``--summary``, also the summary recomputed over all of them (split jobs merge into one job's summary)."""
    from pathlib import Path

    from anonlab.metrics.summary import summarize
    from anonlab.report.tables import markdown, markdown_by
    from anonlab.store import SUMMARY_SCHEMA, read_results, write_table

    if args.html or args.md:
        from anonlab.report.html import write_report

        page, md = write_report(args.path, args.html, args.md)
        print("wrote " + " and ".join(str(p) for p in (page, md) if p is not None), file=sys.stderr)
        return EXIT_OK
    if len(args.path) > 1:
        raise ValueError(f"tables read one folder; got {len(args.path)} (--html/--md merge several)")
    args.path = args.path[0]
    for flag, where in (("--out", args.out), ("--summary", args.summary)):  # before any work or printing
        if where is not None and Path(where).is_dir():
            raise ValueError(f"{flag} {where} is a folder; give a file path")
    table = read_results(args.path, partial=args.partial)
    text = markdown_by(table.to_pylist(), args.by)
    if args.summary:
        summary = summarize(table)
        path = write_table(summary, SUMMARY_SCHEMA, args.summary)
        if len({(r["setting"], r["detector"]) for r in summary}) == len(summary):
            md = markdown(summary, f"anonlab report {args.path}")
        else:
            md = (f"# anonlab report {args.path}\n\nThe merged jobs differ in more than the defense setting and the "
                  f"detector (dataset, camera, regions, face size, ...): see {path} (one row per config_hash).\n")
        path.with_suffix(".md").write_text(md)
        text += "\n" + md
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return EXIT_OK


def datasets_cmd(args: argparse.Namespace) -> int:
    from anonlab.datasets import fetch as fetch_mod

    if args.datasets_cmd == "list":
        for name, src in sorted(fetch_mod.SOURCES.items()):
            print(f"{name:<11} {src.licence}")
        return EXIT_OK
    print(fetch_mod.fetch(args.name, dest=args.dest, url=args.url, sha256=args.sha256))
    return EXIT_OK


def _fetch_args(p: argparse.ArgumentParser, what: str) -> argparse.ArgumentParser:
    """The arguments every ``fetch`` action takes (both go through :mod:`anonlab.download`)."""
    p.add_argument("name", help=f"{what} name (see `anonlab {what} list`)")
    p.add_argument("--dest", default=None, help="target folder (default: the user cache)")
    p.add_argument("--url", default=None, help="override the download URL (e.g. a mirror)")
    return p


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="anonlab",
        description="Measure how well anonymization (blur, pixelation, masks, ...) defeats off-the-shelf face and "
        "person detectors.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("bench", add_help=False, help="run a benchmark (Hydra overrides; `anonlab bench --help`)")
    sub.add_parser("patch", add_help=False, help="train or evaluate adversarial patches (`anonlab patch --help`)")
    sub.add_parser("redact", add_help=False, help="redact faces in photos, folders and videos (`anonlab redact --help`)")
    sub.add_parser("recommend", add_help=False, help="the weakest redaction that is safe for your footage against a "
                   "threat model (`anonlab recommend --help`)")
    lp = sub.add_parser("list", help="list registered detectors, defenses, datasets, capture and release stages, recognizers")
    lp.add_argument("--json", action="store_true", help="machine-readable output")
    wp = sub.add_parser("weights", help="list or download model weights (downloads only when asked)")
    wsub = wp.add_subparsers(dest="weights_cmd", required=True, metavar="ACTION")
    wsub.add_parser("list", help="known weights: upstream origin, licence, where found (package/env/shared/cache)")
    _fetch_args(wsub.add_parser("fetch", help="download official weights, verify the pinned sha256"), "weights")
    rp = sub.add_parser("report", help="recall tables from the results under a run (or multirun) folder; "
                        "--html: one offline page with every section")
    rp.add_argument("path", nargs="+", help="a run folder, a multirun folder, or a results.parquet (several with "
                    "--html/--md: bench, identity, patch eval, redact and recommend folders, merged)")
    rp.add_argument("--html", default=None, metavar="OUT",
                    help="write one self-contained HTML page (offline: everything inline) and OUT.md beside it")
    rp.add_argument("--md", default=None, metavar="OUT", help="write the Markdown summary for CI here")
    rp.add_argument("--by", default="setting", help="column to tabulate against (e.g. face_px, image, regions)")
    rp.add_argument("--out", default=None, help="also write the Markdown here")
    rp.add_argument("--partial", action="store_true",
                    help="also read the finished shards of unfinished (killed or running) jobs")
    rp.add_argument("--summary", default=None, metavar="PARQUET",
                    help="write the summary recomputed over every merged result here (and its .md beside it)")
    dp = sub.add_parser("datasets", help="list or download public datasets (downloads only when asked)")
    dsub = dp.add_subparsers(dest="datasets_cmd", required=True, metavar="ACTION")
    dsub.add_parser("list", help="datasets that can be fetched, with their licences")
    dfp = _fetch_args(dsub.add_parser("fetch", help="download an official archive into the cache, verify sha256, "
                                                    "extract"), "datasets")
    dfp.add_argument("--sha256", default=None, help="expected sha256 where none is pinned")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return bench(argv[1:])
    if argv and argv[0] == "patch":
        from anonlab.cli.patch import patch

        return patch(argv[1:])
    if argv and argv[0] == "redact":
        from anonlab.cli.redact import redact_cmd

        return redact_cmd(argv[1:])
    if argv and argv[0] == "recommend":
        from anonlab.cli.recommend import recommend_cmd

        return recommend_cmd(argv[1:])
    args = parser().parse_args(argv)
    try:
        if args.cmd == "list":
            return list_components(args.json)
        if args.cmd == "datasets":
            return datasets_cmd(args)
        if args.cmd == "report":
            return report_cmd(args)
        return weights_cmd(args)
    except (ValueError, FileNotFoundError, ConnectionError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG


if __name__ == "__main__":
    sys.exit(main())
