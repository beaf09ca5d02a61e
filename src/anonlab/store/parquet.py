"""Row schemas and atomic Parquet writing (temp file + rename: a killed run never leaves a half file)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: one row per (image, defense setting, detector)
RESULT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("image", pa.string()),
        ("camera", pa.string()),
        ("defense", pa.string()),  # registry name; "none" is the clean baseline
        ("params", pa.string()),  # JSON of the defense's parameters
        ("setting", pa.string()),  # human label, e.g. "gaussian_blur(sigma_rel=0.5)"
        ("regions", pa.string()),  # "gt:face" (oracle) or "detector:centerface@0.2"
        ("detector", pa.string()),
        ("detector_kind", pa.string()),  # face | person: which ground truth it is scored against
        ("threshold", pa.float32()),
        ("n_gt", pa.int32()),
        ("n_det", pa.int32()),
        ("tp", pa.int32()),
        ("fp", pa.int32()),
        ("fn", pa.int32()),
        ("recall", pa.float32()),  # null when n_gt == 0
        ("precision", pa.float32()),  # null when n_det == 0
        ("disappearance", pa.float32()),  # null when the detector found nothing on the clean image
        ("n_regions", pa.int32()),  # boxes the defense was applied to
        ("pseudo_gt", pa.bool_()),
        ("iou", pa.float32()),
        ("face_px", pa.float32()),  # median height of the image's annotated faces as evaluated; null if none
        ("config_hash", pa.string()),
    ]
)

#: one row per (defense setting, detector): totals over the dataset and AP (pycocotools)
SUMMARY_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("camera", pa.string()),
        ("defense", pa.string()),
        ("params", pa.string()),
        ("setting", pa.string()),
        ("regions", pa.string()),
        ("detector", pa.string()),
        ("detector_kind", pa.string()),
        ("n_images", pa.int32()),
        ("n_gt", pa.int32()),
        ("tp", pa.int32()),
        ("fp", pa.int32()),
        ("fn", pa.int32()),
        ("recall", pa.float32()),
        ("recall_lo", pa.float32()),  # 95 % percentile-bootstrap interval over images (1000 resamples)
        ("recall_hi", pa.float32()),
        ("ap", pa.float32()),
        ("disappearance", pa.float32()),
        ("pseudo_gt", pa.bool_()),
        ("config_hash", pa.string()),
    ]
)


def write_table(rows: list[dict], schema: pa.Schema, path: str | os.PathLike) -> Path:
    """Write ``rows`` (dicts with exactly the schema's columns) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = set(schema.names)
    for r in rows[:1]:
        if set(r) != names:
            raise ValueError(f"row columns {sorted(set(r) ^ names)} do not match the {path.name} schema")
    table = pa.Table.from_pylist(rows, schema=schema)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_results(path: str | os.PathLike) -> pa.Table:
    """Read ``results.parquet`` (a file) or every ``results.parquet`` under a directory (multirun) as one table."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(p.rglob("results.parquet"))
    if not files:
        raise FileNotFoundError(f"no results.parquet at or under {p}")
    return pa.concat_tables([pq.read_table(f) for f in files])
