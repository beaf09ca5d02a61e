"""Patch evaluation through the benchmark engine: each trained patch and its two controls (noise and grey patches of
the same size and placement) in one sweep, on images not used in training, under several conditions (exact
placement, the training pose/colour ranges, wider held-out ranges, release encodings), against a list of person
detectors. With patches trained on several detectors the result is a transfer matrix (patch of A x detector B).
Every number comes from :func:`anonlab.engine.run_bench` (recall with a 95 % bootstrap interval, disappearance).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from anonlab.datasets.base import Dataset
from anonlab.defenses.patch import PoseRanges, resolve_patch_path
from anonlab.types import Sample

TRANSFORM_CHOICES = ("none", "train", "held_out")


class HeldOutDataset(Dataset):
    """``base`` without the images whose ids are in ``exclude`` (the images a patch was trained on)."""

    def __init__(self, base: Dataset, exclude: list[str] | None = None) -> None:
        self.base = base
        skip = set(exclude or [])
        self._index = [i for i, r in enumerate(base.refs()) if r not in skip]
        self._refs = [base.refs()[i] for i in self._index]
        self.name = f"{base.name or type(base).__name__}:held_out" if skip else base.name
        self.pseudo_kinds = base.pseudo_kinds
        self.sequential = base.sequential

    def refs(self) -> list[str]:
        return list(self._refs)

    def load(self, index: int) -> Sample:
        return self.base.load(self._index[index])


@dataclass
class PatchInfo:
    """A trained patch file and its training metadata (the JSON written beside it; empty for a bare PNG)."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def trained_on(self) -> str:
        return str(self.meta.get("detector", "?"))

    @classmethod
    def load(cls, path: str | Path) -> PatchInfo:
        p = resolve_patch_path(path)
        j = p.with_suffix(".json")
        return cls(p, json.loads(j.read_text()) if j.is_file() else {})


def sweep_items(patches: list[PatchInfo], pose: dict[str, float]) -> list[dict[str, Any]]:
    """Bench sweep entries: every patch, then the noise and grey controls sized like the first patch, all with the
    first patch's placement (target, size, center_y) and the pose ranges ``pose``."""
    first = patches[0].meta
    place = {"target": first.get("target", "torso"), **first.get("placement", {})}
    items = [{"name": "patch", "path": str(p.path), **place, **pose} for p in patches]
    items += [{"name": n, "path": str(patches[0].path), **place, **pose} for n in ("noise_patch", "grey_patch")]
    return items


def condition_pose(choice: str, patches: list[PatchInfo], held_out: dict[str, float]) -> dict[str, float]:
    """Pose ranges for a condition: ``none`` (exact placement), ``train`` (the first patch's training EOT pose and
    colour ranges), ``held_out`` (the configured wider ranges)."""
    if choice == "none":
        return {}
    if choice == "train":
        eot = patches[0].meta.get("transforms", {})
        return {k: float(eot[k]) for k in PoseRanges.__dataclass_fields__ if k in eot}
    if choice == "held_out":
        PoseRanges(**held_out)  # validates
        return {k: float(v) for k, v in held_out.items()}
    raise ValueError(f"unknown transforms {choice!r}; valid: {', '.join(TRANSFORM_CHOICES)}")


def bench_config(cfg: DictConfig, patches: list[PatchInfo], condition: dict[str, Any], conf_dir: Path) -> DictConfig:
    """The composed ``bench`` config of one condition: held-out images, person regions from ground truth, the
    patch + controls sweep, the detectors to evaluate."""
    overrides = [str(o) for o in condition.get("bench", [])]
    bench = compose_bench(overrides, conf_dir)
    pose = condition_pose(str(condition.get("transforms", "none")), patches, _plain(cfg.held_out_transforms))
    with open_dict(bench):
        bench.dataset = eval_dataset(cfg, patches)
        bench.regions.source = "gt"
        bench.regions.target = "person" if patches[0].meta.get("target", "torso") == "torso" else "face"
        bench.detectors = list(cfg.detectors)
        bench.detector_overrides = _plain(cfg.get("detector_overrides") or {})
        bench.sweep = sweep_items(patches, pose)
        for k in ("device", "seed", "batch_size", "limit"):
            bench[k] = cfg[k]
        bench.progress = bool(cfg.progress)
    return bench


def compose_bench(overrides: list[str], conf_dir: Path) -> DictConfig:
    """Compose ``bench`` with ``overrides``, inside a running Hydra app (the ``anonlab patch`` command) or not."""
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="bench", overrides=overrides)
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir)):
        return compose(config_name="bench", overrides=overrides)


def eval_dataset(cfg: DictConfig, patches: list[PatchInfo]) -> dict[str, Any]:
    """Dataset config for evaluation: ``cfg.dataset`` (or the first patch's training dataset), wrapped to leave out
    every image that any of the patches was trained on when it is the same dataset."""
    base = _plain(cfg.get("dataset")) or patches[0].meta.get("dataset")
    if not base:
        raise ValueError("no dataset: give dataset=NAME (the patch has no training JSON naming one)")
    # the same dataset class (paths may be spelled differently): leave out its training images by id
    same = [p for p in patches if (p.meta.get("dataset") or {}).get("_target_") == base.get("_target_")]
    exclude = sorted({i for p in same for i in p.meta.get("train_images", [])})
    if any(p.meta.get("train_images") for p in patches) and not exclude:
        print(f"warning: evaluating on {base.get('_target_')}, not the patches' training dataset: no image is "
              f"left out", file=sys.stderr)
    return {"_target_": f"{__name__}.HeldOutDataset", "base": base, "exclude": exclude}


def _plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if OmegaConf.is_config(x) else x


def summarize_condition(name: str, summary: list[dict], patches: list[PatchInfo]) -> list[dict]:
    """Summary rows of one condition, tagged with the condition and the detector each patch was trained on."""
    trained = {str(p.path): p.trained_on for p in patches}
    out = []
    for r in summary:
        on = trained.get(json.loads(r["params"]).get("path")) if r["defense"] == "patch" else None
        stem = Path(json.loads(r["params"]).get("path", "")).stem
        short = {"none": "clean", "patch": f"patch {stem}"}.get(r["defense"], r["defense"])
        out.append({"condition": name, "setting": r["setting"], "short": short, "defense": r["defense"],
                    "params": r["params"],
                    "trained_on": on,
                    "detector": r["detector"], "n_images": r["n_images"], "n_gt": r["n_gt"], "recall": r["recall"],
                    "recall_lo": r["recall_lo"], "recall_hi": r["recall_hi"], "disappearance": r["disappearance"]})
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def markdown_tables(rows: list[dict], conditions: dict[str, dict]) -> str:
    """One table per condition: settings (clean, each patch with the detector it was trained on, controls) x
    detectors; cells ``recall % [95 % CI] (disappearance %)``."""
    lines = []
    for cond, spec in conditions.items():
        sub = [r for r in rows if r["condition"] == cond]
        if not sub:
            continue
        dets = list(dict.fromkeys(r["detector"] for r in sub))
        sets = list(dict.fromkeys(r["setting"] for r in sub))
        short = {r["setting"]: r["short"] for r in sub}
        n_img = max(r["n_images"] for r in sub)
        pose = json.loads(next(r["params"] for r in sub if r["defense"] != "none"))
        ranges = ", ".join(f"{k} {pose[k]:g}" for k in PoseRanges.__dataclass_fields__ if pose.get(k))
        desc = f"transforms={spec.get('transforms', 'none')}" + (f" ({ranges})" if ranges else "") + (
            f", bench overrides {list(spec.get('bench', []))}" if spec.get("bench") else "")
        lines += [f"### {cond} ({desc}; {n_img} held-out images)", "",
                  "| setting | trained on | " + " | ".join(dets) + " |", "|---|---|" + "---|" * len(dets)]
        for s in sets:
            cells, on = [], ""
            for d in dets:
                r = next((x for x in sub if x["setting"] == s and x["detector"] == d), None)
                if r is None:
                    cells.append("")
                    continue
                on = r["trained_on"] or on
                cells.append(f"{_pct(r['recall'])} [{_pct(r['recall_lo'])}-{_pct(r['recall_hi'])}] "
                             f"({_pct(r['disappearance'])})")
            lines.append(f"| {short[s]} | {on or '-'} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Cells: person recall % [95 % bootstrap CI over images] (disappearance %: share of the persons found "
                 "on the clean image that are no longer found). Rows with a `trained on` detector and columns of "
                 "other detectors form the transfer matrix.")
    return "\n".join(lines) + "\n"


def evaluate(cfg: DictConfig, conf_dir: Path, progress: bool = False, log=None, on_result=None) -> list[dict]:
    """Run every condition of ``cfg`` (the composed ``conf/patch/eval.yaml``) through ``run_bench``; returns the
    tagged summary rows. ``on_result(name, bench_cfg, result)`` is called after each condition (e.g. to write it)."""
    from anonlab.engine import run_bench

    paths = list(cfg.patches) if not isinstance(cfg.patches, str) else [cfg.patches]
    if not paths:
        raise ValueError("patches is empty; give patches=[PNG, ...] (from `anonlab patch train`)")
    patches = [PatchInfo.load(p) for p in paths]
    stems = [p.path.stem for p in patches]
    if len(set(stems)) != len(stems):
        raise ValueError(f"patch file names must differ (they label the settings), got {stems}")
    targets = {p.meta.get("target", "torso") for p in patches}
    if len(targets) > 1:
        raise ValueError(f"all patches must share a target to be compared in one sweep, got {sorted(targets)}")
    rows = []
    for name, spec in (_plain(cfg.conditions) or {}).items():
        bench = bench_config(cfg, patches, spec, conf_dir)
        result = run_bench(bench, progress=progress, log=log)
        if on_result is not None:
            on_result(name, bench, result)
        rows += summarize_condition(name, result.summary, patches)
    return rows
