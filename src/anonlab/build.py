"""Building a job's components from its composed configuration: the camera's capture and release stages,
defense settings, the scored detector panel, the region detector and the pseudo ground truth panel. Every
constructor runs here, before any image is read; a bad value is a :class:`BenchError` (one line, exit 2)."""

from __future__ import annotations

import inspect
import itertools
import re
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from anonlab.defenses import DEFENSES
from anonlab.detectors import DETECTORS
from anonlab.types import Capture, Defense, Detector, Release

#: the Hydra configuration tree (one file per registry entry: ``conf/<group>/<name>.yaml``)
CONF_DIR = Path(__file__).resolve().parent / "conf"


class BenchError(ValueError):
    """A bad configuration or input, reported as one line before any work is done."""


def group_config(group: str, name: str, registry) -> DictConfig:
    """Load ``conf/<group>/<name>.yaml``; an unknown name raises the registry's error listing valid names."""
    try:
        registry.get(name)
    except ValueError as e:
        raise BenchError(str(e)) from None
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise BenchError(f"{group} {name!r} is registered but {path} is missing")
    return OmegaConf.load(path)


def build_config(cfg: DictConfig, what: str, error: type[Exception] = BenchError) -> Any:
    """Instantiate a Hydra config; a constructor's own one-line error is re-raised as ``error("<what>: ...")``."""
    try:
        return instantiate(cfg, _convert_="all")
    except MissingMandatoryValue as e:  # a `???` left in the config (e.g. yolo's weights): name the key
        key = e.full_key or "a value"
        raise error(f"{what}: {key} is required and was not given (it is ??? in its config; that file's comment "
                    "says how to give it)") from None
    except Exception as e:  # hydra wraps the constructor's error; surface the original one-liner
        cause = e.__cause__ or e
        unknown = _unknown_parameter(cfg, cause)
        if unknown:
            raise error(f"{what}: {unknown}") from cause
        if isinstance(cause, (ValueError, TypeError, FileNotFoundError, RuntimeError, ModuleNotFoundError)):
            raise error(f"{what}: {cause}") from cause
        raise


def _unknown_parameter(cfg: DictConfig, cause: BaseException) -> str | None:
    """``Pixelate.__init__() got an unexpected keyword argument 'blockz'`` as ``unknown key 'blockz' for
    anonlab.defenses.Pixelate; valid keys: ...`` (the constructor's parameters), or None for any other error."""
    m = re.search(r"unexpected keyword argument '(\w+)'", str(cause)) if isinstance(cause, TypeError) else None
    target = cfg.get("_target_") if isinstance(cfg, DictConfig) else None
    if m is None or not isinstance(target, str):
        return None
    try:
        params = inspect.signature(get_class(target)).parameters.values()
    except (ImportError, ValueError, TypeError):
        return None
    valid = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return f"unknown key {m.group(1)!r} for {target}; valid keys: {', '.join(valid) or 'none (it takes no settings)'}"


def build_camera(cfg: DictConfig) -> tuple[Capture, Release]:
    """The camera's two stages: ``capture`` (``conf/capture/``, before the defense) and ``release``
    (``conf/release/``, after it). A configuration whose ``_target_`` does not implement the stage's protocol
    (:class:`~anonlab.types.Capture`, :class:`~anonlab.types.Release`) is a :class:`BenchError`."""
    stages = []
    for key, protocol in (("capture", Capture), ("release", Release)):
        stage = build_config(cfg[key], key)
        if not isinstance(stage, protocol):
            raise BenchError(f"{key}: {type(stage).__name__} is not a {key} stage (it needs the {protocol.__name__} "
                             f"interface of anonlab.types: {key}() and params()); pick one of conf/{key}/")
        stages.append(stage)
    return stages[0], stages[1]


#: what ``sweep`` holds, for messages (the same words as conf/bench.yaml's comment on it)
SWEEP_FORM = ("a list of defense settings [{name: DEFENSE, PARAM: value or [values]}, ...] (e.g. "
              "sweep='[{name: pixelate, blocks: [16, 8]}]') or null for the single defense setting")


def _expand_grid(item: dict[str, Any]) -> list[dict[str, Any]]:
    """{'name': n, 'a': [1, 2], 'b': 3} -> [{'name': n, 'a': 1, 'b': 3}, {'name': n, 'a': 2, 'b': 3}]."""
    keys = [k for k, v in item.items() if isinstance(v, list) and k != "color"]
    fixed = {k: v for k, v in item.items() if k not in keys}
    return [{**fixed, **dict(zip(keys, combo))} for combo in itertools.product(*(item[k] for k in keys))]


def build_settings(cfg: DictConfig) -> list[Defense]:
    """The defense settings of this job: the clean baseline ``none`` first, then ``sweep`` (expanded) if given,
    else the single ``defense`` group choice, each followed by the controls it brings (``controls()``).
    Every setting is validated here, before any image is read."""
    specs: list[tuple[DictConfig, str]] = []  # each setting's config and what an error about it names
    sweep = cfg.get("sweep")
    if sweep is not None and not isinstance(sweep, (list, ListConfig)):  # sweep=5 iterated, sweep=abc per letter
        raise BenchError(f"sweep must be {SWEEP_FORM}, got {sweep!r}")
    if sweep:
        for i, item in enumerate(sweep):
            item = OmegaConf.to_container(item, resolve=True) if OmegaConf.is_config(item) else item
            if not isinstance(item, dict) or "name" not in item:
                raise BenchError(f"sweep item {i} must be a mapping with a 'name' (a defense): "
                                 f"{{name: DEFENSE, PARAM: value or [values]}}; got {item!r}")
            base = group_config("defense", item["name"], DEFENSES)
            for key, values in item.items():  # an empty list would expand to no setting at all, silently
                if isinstance(values, list) and not values:
                    raise BenchError(f"sweep item {item['name']}: {key} is an empty list; give at least one value")
            for combo in _expand_grid({k: v for k, v in item.items() if k != "name"}):
                specs.append((OmegaConf.merge(base, combo), f"sweep item {i} ({item['name']})"))
    else:
        specs.append((cfg.defense, "defense"))
    settings = [DEFENSES.get("none")()]
    seen = {settings[0].label(): settings[0]}
    for spec, what in specs:
        d = build_config(spec, what)
        # a defense that brings its own controls (a patch: a noise and a grey patch placed alike) runs with them
        for s in [d, *d.controls()]:
            other = seen.get(s.label())
            if other is None:
                seen[s.label()] = s
                settings.append(s)
            elif (other.name, other.params_json()) != (s.name, s.params_json()):
                raise BenchError(f"two defense settings share the label {s.label()!r} ({other.params_json()} and "
                                 f"{s.params_json()}); rename one (e.g. a patch file) so results stay apart")
    return settings


def build_detectors(cfg: DictConfig) -> dict[str, Detector]:
    """The detector panel: each name in ``detectors`` built from ``conf/detector/<name>.yaml`` merged with
    ``detector_overrides.<name>``."""
    names = [cfg.detectors] if isinstance(cfg.detectors, str) else list(cfg.detectors)  # detectors=centerface too
    if not names:
        raise BenchError("detectors is empty; give at least one, e.g. detectors=[centerface]")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # one model twice is one model: never collapsed (or, in a pseudo GT panel, counted as two votes) silently
        raise BenchError(f"detectors names {', '.join(twice)} twice: {names}")
    overrides = cfg.get("detector_overrides") or {}
    for bad in set(overrides) - set(names):
        raise BenchError(f"detector_overrides names {bad!r}, which is not in detectors={names}")
    out = {}
    for name in names:
        dcfg = OmegaConf.merge(group_config("detector", name, DETECTORS), overrides.get(name, {}))
        out[name] = build_config(dcfg, f"detector {name}")
    return out


def build_region_detector(cfg: DictConfig) -> tuple[Detector | None, float | None, str]:
    """The region source: ground truth of ``regions.target`` (oracle), or the ``region_detector`` group choice
    (``conf/region_detector/``, the same files as ``conf/detector/``) at ``regions.threshold`` (default: its own
    threshold) — the realistic pipeline where missed faces stay visible."""
    r = cfg.regions
    if r.target not in ("face", "person"):
        raise BenchError(f"regions.target must be face or person, got {r.target!r}")
    if r.source == "gt":
        return None, None, f"gt:{r.target}"
    if r.source != "detector":
        raise BenchError(f"regions.source must be gt or detector, got {r.source!r}")
    det = build_config(cfg.region_detector, "region_detector")
    if det.kind != r.target:
        raise BenchError(f"regions.target={r.target} but region_detector={det.name} finds {det.kind}s")
    thr = det.threshold if r.get("threshold") is None else r.threshold
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0.0 <= thr <= 1.0:
        raise BenchError(f"regions.threshold must be a score in [0, 1] or null, got {thr!r}")
    thr = float(thr)
    return det, thr, f"detector:{det.name}@{thr:g}"


def build_pseudo_panel(cfg: DictConfig, kinds: tuple[str, ...]) -> dict[str, list[Detector]]:
    """Detectors whose consensus stands in for missing annotations of ``kinds`` (``pseudo_gt.<kind>``)."""
    panel = {}
    for kind in kinds:
        names = list(cfg.pseudo_gt.get(kind) or [])
        if not names:
            raise BenchError(f"the dataset has no {kind} annotations and pseudo_gt.{kind} is empty; "
                             f"name detectors, e.g. pseudo_gt.{kind}=[{'centerface' if kind == 'face' else 'yolox_nano'}]")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:  # a detector agreeing with itself is one vote, not two
            raise BenchError(f"pseudo_gt.{kind} names {', '.join(twice)} twice: {names}; each vote must be another "
                             "detector")
        votes = OmegaConf.select(cfg, f"pseudo_gt.min_votes.{kind}", default=None)
        if isinstance(votes, bool) or not isinstance(votes, int) or not 1 <= votes <= len(names):
            raise BenchError(f"pseudo_gt.min_votes.{kind} must be an integer in [1, {len(names)}] (the panel "
                             f"pseudo_gt.{kind} has {len(names)} detectors), got {votes!r}")
        dets = []
        for name in names:
            d = build_config(group_config("detector", name, DETECTORS), f"pseudo_gt detector {name}")
            if d.kind != kind:
                raise BenchError(f"pseudo_gt.{kind} lists {name!r}, which finds {d.kind}s")
            dets.append(d)
        panel[kind] = dets
    return panel

