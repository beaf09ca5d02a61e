"""Everything ``anonlab report`` reads from run folders, found, checked and merged before anything is drawn.

A run folder (or a multirun / cluster sweep folder holding many) may hold, at any depth:

* ``results.parquet`` (``anonlab bench``; unfinished jobs: ``shards/<job hash>/part-*.parquet``) with ``run.json``
  beside it: detection rows (schema :data:`anonlab.store.RESULT_SCHEMA`);
* ``patch_eval.json`` (``anonlab patch eval``): the patch transfer rows; the per-condition bench folders below it
  belong to the patch evaluation, not to the detection sections;
* ``identity.parquet`` (unfinished: ``identity_shards/<job hash>/part-*.parquet``): identity-leakage rows (one per
  dataset x recognizer x adversary x defense setting);
* ``leaks.json`` (``anonlab redact``'s verification pass);
* ``recommend.json`` and ``recommend.yaml`` (``anonlab recommend``: the evidence, and the preset when a setting
  qualifies) and the before/after thumbnails recommend.json lists.

Bad input raises :class:`ReportInputError` with one line naming the file or folder and what is missing, before
any output is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from anonlab.store import EVIDENCE_COLUMNS, RESULT_SCHEMA

#: result columns the report reads (the evidence columns are read only for the thumbnail's face box)
RESULT_COLUMNS = tuple(n for n in RESULT_SCHEMA.names if n not in EVIDENCE_COLUMNS)
#: identity.parquet columns the report needs (issue 13, item 4); ``<metric>_lo``/``<metric>_hi`` CI columns are
#: read when present
IDENTITY_COLUMNS = ("dataset", "recognizer", "adversary", "defense", "params", "n_pairs", "n_not_embedded",
                    "accuracy", "auc", "tar_at_far_1e-2", "rank1", "rank5", "config_hash")
#: patch_eval.json row keys (``anonlab.attacks.evaluate.summarize_condition``)
PATCH_KEYS = ("condition", "setting", "short", "defense", "trained_on", "detector", "n_images", "recall",
              "recall_lo", "recall_hi")
#: file names that make a folder a run folder, as listed in the "no results" error
KNOWN = ("results.parquet", "shards/*/part-*.parquet", "identity.parquet", "identity_shards/*/part-*.parquet",
         "patch_eval.json", "leaks.json", "recommend.json", "recommend.yaml")
THUMB_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ReportInputError(ValueError):
    """A run folder the report cannot use (nothing to report, an older schema, an unreadable file): one line."""


@dataclass
class Inputs:
    """Everything found under the run folders, merged. ``results``: detection rows (dicts of
    :data:`RESULT_COLUMNS` plus ``scene``: the job's ``scene.face_px`` from run.json, None when unset), files in
    sorted order; ``runs``: (run.json path, its content); ``patch_evals``: (patch_eval.json path, content);
    ``identity``: identity rows; ``leaks``: (leaks.json path, its list); ``recommends``: (anonlab recommend's
    folder, {"json": recommend.json, "yaml": recommend.yaml} (None where absent), [(frame, before thumbnail, after
    thumbnail)]); ``result_files``: the Parquet files the rows came from."""

    paths: list[Path]
    results: list[dict] = field(default_factory=list)
    result_files: list[Path] = field(default_factory=list)
    runs: list[tuple[Path, dict]] = field(default_factory=list)
    patch_evals: list[tuple[Path, dict]] = field(default_factory=list)
    identity: list[dict] = field(default_factory=list)
    leaks: list[tuple[Path, list]] = field(default_factory=list)
    recommends: list[tuple[Path, dict, list[tuple[str, Path, Path]]]] = field(default_factory=list)


def _files(root: Path, name: str) -> list[Path]:
    if root.is_file():
        return [root] if root.name == name else []
    return sorted(root.rglob(name))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportInputError(f"{path} is not readable JSON ({str(e).splitlines()[0]})") from None


def _schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise ReportInputError(f"{path} is not a readable Parquet file ({str(e).splitlines()[0]})") from None


def _check_columns(path: Path, have: list[str], need: tuple[str, ...], what: str, remedy: str) -> None:
    missing = [c for c in need if c not in have]
    if missing:
        raise ReportInputError(f"{path}: {what} of an older schema, missing column(s) {', '.join(missing)} "
                               f"({remedy})")


def _result_files(root: Path, excluded: list[Path]) -> list[Path]:
    """results.parquet files at or under ``root``, plus the shards of jobs that have none yet, outside
    ``excluded`` folders (patch evaluations)."""
    def outside(f: Path) -> bool:
        return not any(f.is_relative_to(x) for x in excluded)

    files = [f for f in _files(root, "results.parquet") if outside(f)]
    if root.is_dir():
        complete = {f.parent for f in files}
        files += [s for s in sorted(root.rglob("shards/*/part-*.parquet"))
                  if s.parent.parent.parent not in complete and outside(s)]
    return files


def _scene(run_json: dict | None) -> float | None:
    scene = ((run_json or {}).get("config") or {}).get("scene") or {}
    v = scene.get("face_px") if isinstance(scene, dict) else None
    return float(v) if v is not None else None


def _order_paths(paths: list[Path]) -> list[Path]:
    return sorted(set(paths))


def _recommend(folder: Path) -> tuple[Path, dict, list[tuple[str, Path, Path]]]:
    """(folder, {"json": recommend.json or None, "yaml": recommend.yaml or None}, [(frame, before, after)]) of one
    ``anonlab recommend --out`` folder. recommend.json (the evidence) is written whether or not a setting
    qualifies; recommend.yaml (the preset) only when one does."""
    data: dict[str, Any] = {"json": None, "yaml": None}
    if (folder / "recommend.json").is_file():
        data["json"] = _read_json(folder / "recommend.json")
        if not isinstance(data["json"], dict):
            raise ReportInputError(f"{folder / 'recommend.json'} is not an object (expected anonlab recommend's "
                                   f"evidence)")
    if (folder / "recommend.yaml").is_file():
        import yaml

        try:
            data["yaml"] = yaml.safe_load((folder / "recommend.yaml").read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ReportInputError(f"{folder / 'recommend.yaml'} is not readable YAML "
                                   f"({str(e).splitlines()[0]})") from None
    thumbs = []
    for t in (data["json"] or {}).get("thumbnails") or []:
        before, after = folder / str(t.get("before", "")), folder / str(t.get("after", ""))
        if before.is_file() and after.is_file() and before.suffix.lower() in THUMB_SUFFIXES:
            thumbs.append((str(t.get("frame", "")), before, after))
    return folder, data, thumbs


def collect(paths: list[str | os.PathLike]) -> Inputs:
    """Find, check and read every input under ``paths`` (run folders, multirun folders, or single files).

    Raises :class:`ReportInputError` (one line) for a path that does not exist, a path holding none of
    :data:`KNOWN`, results or identity rows missing columns this version needs (an older schema), or a file that
    does not parse. Reads only; writes nothing."""
    roots = [Path(p) for p in paths]
    if not roots:
        raise ReportInputError("no run folder given; give RUN_DIR... (folders written by anonlab bench, patch eval, "
                               "redact or recommend)")
    inp = Inputs(paths=roots)
    seen_results: set[Path] = set()
    for root in roots:
        if not root.exists():
            raise ReportInputError(f"{root} does not exist; give a run folder written by anonlab")
        found = 0
        patch_jsons = _files(root, "patch_eval.json")
        for pj in patch_jsons:
            data = _read_json(pj)
            rows = data.get("rows") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise ReportInputError(f"{pj} has no 'rows' list (expected the output of anonlab patch eval)")
            for r in rows[:1]:
                _check_columns(pj, list(r), PATCH_KEYS, "patch evaluation", "re-run `anonlab patch eval`")
            inp.patch_evals.append((pj, data))
            found += 1
        for f in _result_files(root, [pj.parent for pj in patch_jsons]):
            f = f.resolve()
            if f in seen_results:
                continue
            seen_results.add(f)
            _check_columns(f, _schema(f).names, RESULT_COLUMNS, "results",
                           "written by an older anonlab: re-run `anonlab bench` with this version")
            run_dir = f.parent if f.name == "results.parquet" else f.parent.parent.parent
            rj = run_dir / "run.json"
            run = _read_json(rj) if rj.is_file() else None
            if run is not None and all(p != rj for p, _ in inp.runs):
                inp.runs.append((rj, run))
            scene = _scene(run)
            rows = pq.read_table(f, columns=list(RESULT_COLUMNS)).to_pylist()
            for r in rows:
                r["scene"] = scene
            inp.results += rows
            inp.result_files.append(f)
            found += 1
        id_files = _files(root, "identity.parquet")
        if root.is_dir():  # shards of identity jobs that have no identity.parquet yet
            done = {f.parent for f in id_files}
            id_files += [s for s in sorted(root.rglob("identity_shards/*/part-*.parquet"))
                         if s.parent.parent.parent not in done]
        for f in id_files:
            schema = _schema(f)
            _check_columns(f, schema.names, IDENTITY_COLUMNS, "identity rows",
                           "written by an older anonlab: re-run the identity job with this version")
            inp.identity += pq.read_table(f).to_pylist()
            found += 1
        for f in _files(root, "leaks.json"):
            data = _read_json(f)
            if not isinstance(data, list):
                raise ReportInputError(f"{f} is not a list of leaks (expected anonlab redact's leaks.json)")
            inp.leaks.append((f, data))
            found += 1
        rec_dirs = _order_paths([f.parent for name in ("recommend.json", "recommend.yaml") for f in _files(root, name)])
        for d in rec_dirs:
            inp.recommends.append(_recommend(d))
            found += 1
        if not found:
            raise ReportInputError(f"{root} holds no results: none of {', '.join(KNOWN)} at or under it")
    if not (inp.results or inp.identity or inp.patch_evals or inp.leaks or inp.recommends):
        files = ", ".join(str(f) for f in inp.result_files) or ", ".join(map(str, roots))
        raise ReportInputError(f"no result rows in {files} (every image failed? see run.json's failures)")
    return inp
