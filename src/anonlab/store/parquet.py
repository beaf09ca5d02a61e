"""Row schemas and atomic Parquet writing (temp file + rename: a killed run never leaves a half file)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from anonlab.store.shards import atomic_write

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
        ("config_hash", pa.string()),  # identity of (dataset, camera, regions, setting, detector): the summary's key
        # evidence, so that summaries and AP can be recomputed from merged shards (split jobs, other IoUs):
        ("clean_found", pa.int32()),  # ground-truth boxes this detector found on the clean image
        ("lost", pa.int32()),  # of those, boxes it no longer finds under this setting
        ("gt_boxes", pa.list_(pa.float32())),  # flattened xyxy of the image's ground truth of detector_kind
        ("gt_ignore", pa.list_(pa.bool_())),  # one flag per ground-truth box (ignored boxes never count)
        ("det_boxes", pa.list_(pa.float32())),  # flattened xyxy of every detection >= the detector's score floor
        ("det_scores", pa.list_(pa.float32())),
    ]
)

#: columns a reader can skip when it only wants the counts
EVIDENCE_COLUMNS = ("gt_boxes", "gt_ignore", "det_boxes", "det_scores")

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


#: one row per (identity dataset, recognizer, adversary, defense setting): see :mod:`anonlab.identity.evaluate`
#: and :mod:`anonlab.metrics.identity` (NaN: not measurable, e.g. TAR@FAR 1e-3 with < 1,000 impostor pairs)
IDENTITY_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("recognizer", pa.string()),
        ("adversary", pa.string()),
        ("defense", pa.string()),  # registry name; "none" is the clean baseline
        ("params", pa.string()),  # JSON of the defense's parameters
        ("setting", pa.string()),  # human label, e.g. "gaussian_blur(sigma=4.0)"
        ("adversary_params", pa.string()),  # JSON (the naive attacker's detector and IoU)
        ("pseudo_boxes", pa.bool_()),  # clean face boxes found by a detector (not annotated)
        ("n_no_clean_face", pa.int32()),  # images where no clean face was found (never embedded)
        ("n_images", pa.int32()),
        ("n_identities", pa.int32()),
        ("n_pairs", pa.int32()),
        ("n_genuine", pa.int32()),
        ("n_impostor", pa.int32()),
        ("n_probes", pa.int32()),  # closed-set probes: images whose person has another image
        ("n_not_embedded", pa.int32()),  # probe-side faces not embedded (not found + too small + no clean face)
        ("n_not_found", pa.int32()),  # of those, the attacker's detector did not find the face
        ("n_too_small", pa.int32()),  # of those, shorter side below the recognizer's min_face_px
        ("n_misidentified", pa.int32()),  # embedded probes whose nearest identity is someone else
        ("not_embedded_rate", pa.float32()),
        ("threshold", pa.float32()),  # the recognizer's operating point (distance units); null: none published
        ("accuracy", pa.float32()),  # verification accuracy at threshold
        ("accuracy_lo", pa.float32()),  # 95 % percentile bootstrap over identities
        ("accuracy_hi", pa.float32()),
        ("auc", pa.float32()),
        ("auc_lo", pa.float32()),
        ("auc_hi", pa.float32()),
        ("tar_at_far_1e-1", pa.float32()),
        ("tar_at_far_1e-2", pa.float32()),
        ("tar_at_far_1e-3", pa.float32()),
        ("rank1", pa.float32()),
        ("rank1_lo", pa.float32()),
        ("rank1_hi", pa.float32()),
        ("rank5", pa.float32()),
        ("rank5_lo", pa.float32()),
        ("rank5_hi", pa.float32()),
        ("note", pa.string()),  # e.g. which TAR@FAR the impostor count does not support
        ("config_hash", pa.string()),
    ]
)


def write_table(rows: list[dict], schema: pa.Schema, path: str | os.PathLike) -> Path:
    """Write ``rows`` (dicts with exactly the schema's columns) to ``path`` atomically; returns the path."""
    path = Path(path)
    names = set(schema.names)
    for r in rows[:1]:
        if set(r) != names:
            raise ValueError(f"row columns {sorted(set(r) ^ names)} do not match the {path.name} schema")
    return atomic_write(pa.Table.from_pylist(rows, schema=schema), path)


def read_results(path: str | os.PathLike, columns: list[str] | None = None, partial: bool = False) -> pa.Table:
    """Every job's results at or under ``path`` as one table: a ``results.parquet`` file, a run folder, or a
    multirun / cluster sweep folder (one sub-folder per job).

    ``partial=True`` also reads the finished shards of jobs that have no ``results.parquet`` yet (killed or still
    running). ``columns`` selects columns (e.g. leave out :data:`EVIDENCE_COLUMNS`). The table is Arrow: hand it
    to pandas (``.to_pandas()``), polars or DuckDB (``duckdb.sql("select ... from tbl")``) in a notebook.
    """
    p = Path(path)
    if p.is_file():
        files = [p]
    else:
        files = sorted(p.rglob("results.parquet"))
        if partial:
            complete = {f.parent for f in files}
            files += sorted(s for s in p.rglob("shards/*/part-*.parquet")
                            if s.parent.parent.parent not in complete)
    if not files:
        raise FileNotFoundError(f"no results.parquet at or under {p}"
                                + ("" if partial else " (`anonlab report --partial` / partial=True also read unfinished jobs' shards)"))
    tables = []
    for f in files:
        t = pq.read_table(f, columns=columns).replace_schema_metadata(None)
        tables.append(t)
    return pa.concat_tables(tables, promote_options="default")
