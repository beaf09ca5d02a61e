"""``anonlab bench``: run the engine and write results.parquet, summary.parquet, summary.md, run.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from anonlab.engine import run_bench
from anonlab.provenance import environment
from anonlab.report.tables import markdown, print_recall_table
from anonlab.store import SUMMARY_SCHEMA, atomic_write, write_table


def write_outputs(result, cfg: DictConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(result.table, out / "results.parquet")
    write_table(result.summary, SUMMARY_SCHEMA, out / "summary.parquet")
    (out / "summary.md").write_text(markdown(result.summary, "anonlab bench"))
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
    (out / "run.json").write_text(json.dumps(run, indent=2, default=str))


def run_and_write(cfg: DictConfig, out_dir: str) -> int:
    """Run one job; returns the exit code (3 when some images could not be used: see run.json's failures)."""
    out = Path(out_dir)
    result = run_bench(cfg, progress=bool(cfg.progress), out=out)
    write_outputs(result, cfg, out)
    print_recall_table(result.summary, title=f"Recall (%) — {result.n_images} images, regions {cfg.regions.source}")
    print(f"wrote {out}/results.parquet ({result.table.num_rows} rows), summary.md, run.json "
          f"in {result.wall_s:.1f} s", file=sys.stderr)
    notes = result.extra.get("reader_notes") or {}
    if notes:
        print(f"note: the reader rotated, rescaled or found damage in {len(notes)} file(s); see {out}/run.json "
              f"(reader_notes)", file=sys.stderr)
    if result.failures:
        print(f"error: {len(result.failures)} image(s) could not be used; see {out}/run.json", file=sys.stderr)
        return 3
    return 0
