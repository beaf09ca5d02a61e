"""``anonlab bench``: run the engine and write results.parquet, summary.parquet, summary.md, run.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from anonlab.build import build_settings
from anonlab.engine import run_bench
from anonlab.io.atomic import write_text
from anonlab.loader import Failure
from anonlab.provenance import environment
from anonlab.report.tables import (
    identity_markdown,
    identity_side_by_side,
    markdown,
    print_identity_table,
    print_recall_table,
)
from anonlab.store import IDENTITY_SCHEMA, SUMMARY_SCHEMA, atomic_write, write_table


def write_outputs(result, cfg: DictConfig, out: Path, md_extra: str = "") -> None:
    """results.parquet, summary.parquet, summary.md (plus ``md_extra``) and run.json into ``out``, each written
    atomically (:mod:`anonlab.io.atomic`)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(result.table, out / "results.parquet")
    write_table(result.summary, SUMMARY_SCHEMA, out / "summary.parquet")
    write_text(out / "summary.md", markdown(result.summary, "anonlab bench") + md_extra)
    run = {
        **environment(cfg.device),
        "seed": int(cfg.seed),
        "wall_time_s": round(result.wall_s, 3),
        "n_images": result.n_images,
        "job_hash": result.job_hash,
        "settings": result.settings,
        "detectors": result.detectors,
        "failures": [{"image": f.image, "error": f.error} for f in result.failures],
        **result.extra,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_text(out / "run.json", json.dumps(run, indent=2, default=str))


def run_and_write(cfg: DictConfig, out_dir: str) -> int:
    """Run one job; returns the exit code (3 when some images could not be used: see run.json's failures).
    With ``identity.datasets`` set, the same defense settings are then attacked by recognizers
    (:mod:`anonlab.identity.evaluate`): ``identity.parquet`` beside ``results.parquet``, and a detection vs
    identification table printed and appended to summary.md. Both jobs are built and checked before either runs."""
    from anonlab.identity.evaluate import build_identity, run_identity
    from anonlab.job import read_options

    out = Path(out_dir)
    device = read_options(cfg).device  # checked (one line, exit 2) before anything is built on it
    plan = build_identity(cfg, build_settings(cfg), device)
    result = run_bench(cfg, progress=bool(cfg.progress), out=out)
    if plan is not None:
        ident = run_identity(plan, build_settings(cfg), out)
        write_table(ident.rows, IDENTITY_SCHEMA, out / "identity.parquet")
        side = identity_side_by_side(ident.rows, result.summary)
        result.extra["identity"] = {"wall_time_s": round(ident.wall_s, 3), "shards": {"count": ident.total,
                                    "computed": ident.computed}, "rows": len(ident.rows)}
        result.failures = result.failures + [Failure(**f) for f in ident.failures]
    write_outputs(result, cfg, out, "\n" + identity_markdown(side) if plan is not None else "")
    print_recall_table(result.summary, title=f"Recall (%) — {result.n_images} images, regions {cfg.regions.source}")
    print(f"wrote {out}/results.parquet ({result.table.num_rows} rows), summary.md, run.json "
          f"in {result.wall_s:.1f} s", file=sys.stderr)
    if plan is not None:
        print_identity_table(side, title=f"Detection vs identification (strongest of {', '.join(plan.adversaries)})")
        print(f"wrote {out}/identity.parquet ({len(ident.rows)} rows) in {ident.wall_s:.1f} s", file=sys.stderr)
    notes = result.extra.get("reader_notes") or {}
    if notes:
        print(f"note: the reader rotated, rescaled, dropped transparency or later frames, or found damage in "
              f"{len(notes)} file(s); see {out}/run.json (reader_notes)", file=sys.stderr)
    if result.failures:
        print(f"error: {len(result.failures)} image(s) could not be used; see {out}/run.json", file=sys.stderr)
        return 3
    return 0
