"""``anonlab recommend``: the weakest redaction that is safe for *this* footage against *this* threat model.

Flow: sample the user's footage (:class:`~anonlab.datasets.footage.FootageDataset`: bounded, evenly spaced, seeded)
-> face (and, with ``persons``, person) pseudo ground truth from the strongest detector panel on the clean frames
(rows flagged ``pseudo_gt``) -> one :func:`anonlab.engine.run_bench` job sweeping every candidate setting (the
ladders of ``conf/recommend.yaml``, with redact's region shape and mask scale) against the threat model's detectors
(``conf/threat/<name>.yaml``); an engine observer (:class:`_Probe`) measures, on the same frames in the same pass,
each setting's pixel change and each face recognizer's identification of the redacted faces -> the pick.

The statistics. Detector recall per (setting, detector) is the engine's pooled recall; its 95 % interval is the
engine's percentile bootstrap over frames, widened to at least the Clopper-Pearson exact interval of the pooled
counts (a bootstrap of 0 of n faces found is [0, 0] for any n; the exact interval says how few faces n is:
0 of 10 has an upper end of 0.31). Identification is rank 1 of the redacted face's embedding among the clean
faces of the whole sample (chance = 1 / faces in that gallery), with the same interval (bootstrap over frames,
widened to Clopper-Pearson). A setting **passes** when every adversary's upper end is <= its bound.

The ordering ("least pixels changed"): a setting's measured mean absolute change of the pixel values (0-255, over
the three channels) inside the ground-truth face boxes of the sample, ties broken by ladder position. The pick:
for every passing setting ``s`` whose one-step-stronger neighbour on its ladder (``margin(s)``; solid is its own)
passes too, ``margin(s)`` is deliverable; the recommendation is the deliverable setting that changes the fewest
pixels. A stronger threat model (more adversaries, or tighter bounds) passes a subset of the settings, so it can
never be given a weaker setting on the same footage.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor

from anonlab.build import CONF_DIR, BenchError
from anonlab.metrics.bootstrap import bootstrap_ratio

#: ladder parameters `anonlab redact --preset` can express (redact's --blocks and --color); a pick on another
#: ladder (e.g. a gaussian_blur sigma ladder, for studies) is reported but no recommend.yaml is written for it
PRESET_PARAMS = {"pixelate": "blocks", "solid": None}
THREAT_DIR = CONF_DIR / "threat"


class RecommendError(BenchError):
    """A bad option, threat model or footage: one line, before any work (exit 2)."""


# ------------------------------------------------------------------------------------------------ statistics

def exact_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of ``k`` successes in ``n`` trials (two-sided ``level``), via scipy's beta
    quantiles (Clopper & Pearson 1934). ``n`` must be > 0."""
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def interval(per_num: list[float], per_den: list[float], seed: int) -> tuple[float | None, float | None, float | None]:
    """(ratio, lo, hi) of ``sum(num) / sum(den)`` over frames: the percentile bootstrap over frames
    (:func:`~anonlab.metrics.bootstrap.bootstrap_ratio`) widened to at least the Clopper-Pearson interval of the
    pooled counts. (None, None, None) when ``sum(den)`` is 0."""
    k, n = int(round(sum(per_num))), int(round(sum(per_den)))
    if n == 0:
        return None, None, None
    blo, bhi = bootstrap_ratio(np.asarray(per_num, float), np.asarray(per_den, float), seed=seed)
    elo, ehi = exact_interval(k, n)
    return k / n, min(blo, elo), max(bhi, ehi)


def faces_needed(bound: float, level: float = 0.95) -> int:
    """The fewest faces for which "none of them found" has an exact upper end <= ``bound``:
    ``1 - (alpha / 2) ** (1 / n) <= bound``."""
    if bound >= 1:
        return 1
    if bound <= 0:
        return math.inf  # type: ignore[return-value]
    return math.ceil(math.log((1 - level) / 2) / math.log(1 - bound))


# ---------------------------------------------------------------------------------------------- threat models

def threat_names() -> list[str]:
    return sorted(p.stem for p in THREAT_DIR.glob("*.yaml"))


def load_threat(name: str) -> DictConfig:
    """``conf/threat/<name>.yaml`` merged over the model it ``extends`` (recursively). Unknown name:
    :class:`RecommendError` listing the valid ones; a ``requires`` entry (an adversary this build lacks): one line."""
    path = THREAT_DIR / f"{name}.yaml"
    if not path.is_file():
        raise RecommendError(f"unknown threat model {name!r}; valid: {', '.join(threat_names())}")
    cfg = OmegaConf.load(path)
    base = cfg.pop("extends", None)
    return OmegaConf.merge(load_threat(base), cfg) if base is not None else cfg


@dataclass(frozen=True)
class Candidate:
    """One setting of a ladder: ``defense`` with ``param = value`` (None for solid), at ``step`` (0 = weakest) of a
    ladder of ``steps``; ``label`` is the engine's setting label."""

    defense: str
    param: str | None
    value: Any
    ladder: int
    step: int
    steps: int
    label: str = ""

    @property
    def short(self) -> str:
        """The label without the region shape and scale every candidate shares, e.g. ``pixelate(blocks=8)``."""
        return self.defense if self.param is None else f"{self.defense}({self.param}={self.value})"

    def preset(self, shape: str, mask_scale: float, persons: bool) -> dict:
        """The ``anonlab redact --preset`` mapping (keys = redact's long options with ``-`` -> ``_``)."""
        out: dict[str, Any] = {"defense": self.defense}
        if self.param is not None:
            out[self.param] = self.value
        out.update(shape=shape, mask_scale=float(mask_scale), persons=bool(persons))
        return out


# ------------------------------------------------------------------------------------------ engine observer

class _Probe:
    """Engine observer (:func:`anonlab.engine.run_bench` ``observers``): per setting, the absolute pixel change
    inside the ground-truth face boxes; per recognizer, the clean faces' embeddings (the gallery, from the clean
    baseline ``none``) and each setting's redacted embeddings at the same boxes; thumbnails of the first frames."""

    def __init__(self, recognizers: dict[str, Any], thumbnails: int, thumb_px: int) -> None:
        self.recognizers = recognizers
        self.change: dict[str, list[float]] = {}  # label -> [sum |diff|, values counted]
        self.gallery: dict[str, dict[tuple[str, int], Tensor]] = {n: {} for n in recognizers}
        self.probes: dict[str, dict[str, dict[tuple[str, int], Tensor]]] = {n: {} for n in recognizers}
        self.too_small: dict[str, int] = {n: 0 for n in recognizers}
        self.thumbs: dict[str, dict[str, Tensor]] = {}  # image id -> label -> uint8 (3, h, w)
        self.n_thumbs, self.thumb_px = thumbnails, thumb_px

    def __call__(self, label: str, setting, clean: Tensor, released: Tensor, gts, batch) -> None:
        acc = self.change.setdefault(label, [0.0, 0.0])
        for i, gt in enumerate(gts):
            for x1, y1, x2, y2 in gt.faces.round().int().tolist():
                if x2 > x1 and y2 > y1:
                    a = clean[i, :, y1:y2, x1:x2].float()
                    acc[0] += float((released[i, :, y1:y2, x1:x2].float() - a).abs().sum())
                    acc[1] += a.numel()
            sid = batch[i].image_id
            if sid in self.thumbs or len(self.thumbs) < self.n_thumbs:
                self.thumbs.setdefault(sid, {})[label] = _thumb(released[i], self.thumb_px)
        if setting.name == "none":
            for name, rec in self.recognizers.items():
                for key, emb in self._embed(rec, clean, gts, batch, count_small=name).items():
                    self.gallery[name][key] = emb
        else:
            for name, rec in self.recognizers.items():
                keep = {k for k in self.gallery[name] if k[0] in {s.image_id for s in batch}}
                got = self._embed(rec, released, gts, batch, only=keep)
                self.probes[name].setdefault(label, {}).update(got)

    def _embed(self, rec, images: Tensor, gts, batch, only=None, count_small: str | None = None) -> dict:
        boxes, idx, keys = [], [], []
        for i, gt in enumerate(gts):
            for j, b in enumerate(gt.faces.tolist()):
                key = (batch[i].image_id, j)
                if only is not None and key not in only:
                    continue
                if min(b[2] - b[0], b[3] - b[1]) < rec.min_face_px:
                    if count_small is not None:
                        self.too_small[count_small] += 1
                    continue
                boxes.append(b)
                idx.append(i)
                keys.append(key)
        if not boxes:
            return {}
        host = images.cpu()
        with torch.inference_mode():
            crops, _ = rec.crop(host, torch.tensor(boxes, dtype=torch.float32), torch.tensor(idx))
            emb = rec.embed(crops).cpu()
        return dict(zip(keys, emb))


def _thumb(image: Tensor, px: int) -> Tensor:
    h, w = image.shape[-2:]
    s = min(1.0, px / max(h, w))
    if s == 1.0:
        return image.cpu()
    size = (max(1, round(h * s)), max(1, round(w * s)))
    return torch.nn.functional.interpolate(image[None].float().cpu(), size=size, mode="bilinear",
                                           antialias=True)[0].round().clamp(0, 255).to(torch.uint8)


# -------------------------------------------------------------------------------------------------- results

@dataclass
class Adversary:
    """One adversary's measurement on one setting: ``value`` (recall or identification rate), 95 % ``lo``/``hi``,
    ``bound`` on ``hi``, counts ``k`` of ``n``; ``passed`` = ``hi <= bound``; None where nothing could be measured
    (no faces)."""

    name: str
    kind: str  # "detector" | "identification"
    k: int
    n: int
    value: float | None
    lo: float | None
    hi: float | None
    bound: float

    @property
    def passed(self) -> bool | None:
        return None if self.hi is None else self.hi <= self.bound + 1e-12


@dataclass
class Row:
    candidate: Candidate
    change: float  # mean |pixel change| in face boxes, 0-255
    adversaries: list[Adversary]

    @property
    def passed(self) -> bool:
        return bool(self.adversaries) and all(a.passed for a in self.adversaries)


@dataclass
class Recommendation:
    """A finished ``anonlab recommend``: ``rows`` (the evidence: every candidate, weakest first), ``pick`` (the
    recommended candidate) or None with ``why`` and ``advice``; ``n_frames``/``n_faces`` of the sample;
    ``failures`` (frames that could not be used, one line each); ``thumbs`` (image id -> setting label -> uint8
    (3, h, w)); ``not_measured`` (adversaries of the threat model this build cannot measure)."""

    threat: str
    rows: list[Row]
    pick: Candidate | None
    via: Candidate | None
    why: str
    advice: str
    n_frames: int
    n_faces: int
    n_persons: int
    failures: list[str]
    thumbs: dict[str, dict[str, Tensor]]
    not_measured: list[str]
    options: dict[str, Any]
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def preset(self) -> dict | None:
        o = self.options
        return None if self.pick is None else self.pick.preset(o["shape"], o["mask_scale"], o["persons"])

    def to_json(self) -> dict:
        return {
            "threat": self.threat, "n_frames": self.n_frames, "n_faces": self.n_faces, "n_persons": self.n_persons,
            "pseudo_gt": True, "options": self.options, "not_measured": self.not_measured,
            "ordering": "mean absolute pixel change (0-255) inside the pseudo ground-truth face boxes",
            "interval": "95 %: percentile bootstrap over frames widened to the Clopper-Pearson exact interval",
            "recommendation": self.preset(), "recommended_setting": self.pick.label if self.pick else None,
            "weakest_passing_setting": self.via.label if self.via else None,
            "why": self.why, "advice": self.advice, "failures": self.failures, "wall_s": round(self.wall_s, 2),
            "candidates": [{
                "setting": r.candidate.label, "defense": r.candidate.defense, "param": r.candidate.param,
                "value": r.candidate.value, "ladder_step": r.candidate.step, "pixel_change": round(r.change, 3),
                "passed": r.passed,
                "adversaries": [{"name": a.name, "kind": a.kind, "k": a.k, "n": a.n, "value": a.value, "lo": a.lo,
                                 "hi": a.hi, "bound": a.bound, "passed": a.passed} for a in r.adversaries],
            } for r in self.rows],
        }


# ------------------------------------------------------------------------------------------------- the run

def compose_job(footage: list[str], threat: DictConfig, rc: DictConfig, persons: bool) -> tuple[DictConfig,
                                                                                           list[Candidate]]:
    """The engine job (``conf/bench.yaml`` composed, then filled in) and the candidates in sweep order."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="bench", overrides=["dataset=footage"])
    cands: list[Candidate] = []
    sweep = []
    for li, lad in enumerate(rc.ladders):
        values = list(lad["values"])
        if not values:
            raise RecommendError(f"ladders[{li}] ({lad.get('defense')}): values is empty")
        for si, v in enumerate(values):
            c = Candidate(str(lad["defense"]), lad.get("param"), v, li, si, len(values))
            item = {"name": c.defense, "shape": rc.shape, "mask_scale": float(rc.mask_scale)}
            if c.param is not None:
                item[c.param] = v
            sweep.append(item)
            cands.append(c)
    face = list(threat.detectors.face)
    person = list(threat.detectors.person) if persons else []
    with open_dict(cfg):
        cfg.dataset.paths = [str(p) for p in footage]
        cfg.dataset.max_frames = rc.max_frames
        cfg.dataset.seed = rc.seed
        cfg.seed = rc.seed
        cfg.device = rc.device
        cfg.batch_size = rc.batch_size
        cfg.detectors = face + person
        cfg.detector_overrides = {k: v for k, v in (threat.get("detector_overrides") or {}).items()
                                  if k in face + person}
        cfg.sweep = sweep
        cfg.regions = {"source": "gt", "target": "person" if persons else "face", "threshold": None}
        cfg.pseudo_gt = rc.pseudo_gt
        cfg.progress = bool(rc.get("progress", True))
        cfg.out = None
    return cfg, cands


def recommend(footage: list[str], threat_name: str | DictConfig, rc: DictConfig | None = None,
              persons: bool = False, log=None) -> Recommendation:
    """Recommend a setting for ``footage`` (files or folders) against ``conf/threat/<threat_name>.yaml`` (or a
    threat model given as a config of that form); ``rc``:
    ``conf/recommend.yaml`` (with any overrides). Raises :class:`RecommendError` (one line) for a bad threat model,
    option or footage before any frame is evaluated."""
    import time

    from anonlab.build import build_config, build_settings, group_config
    from anonlab.engine import run_bench
    from anonlab.recognizers import RECOGNIZERS

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    rc = rc if rc is not None else OmegaConf.load(CONF_DIR / "recommend.yaml")
    if isinstance(threat_name, str):
        threat = load_threat(threat_name)
    else:
        threat, threat_name = threat_name, str(threat_name.get("name", "custom"))
    if threat.get("requires"):
        raise RecommendError(f"threat model {threat_name} needs {'; '.join(threat.requires)}; use --threat "
                             f"safe-city or basic")
    for key in ("max_frames", "thumbnails", "thumb_px", "batch_size"):
        v = rc.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "thumbnails" else 1):
            raise RecommendError(f"{key} must be an integer >= {0 if key == 'thumbnails' else 1}, got {v!r}")
    if rc.shape not in ("ellipse", "rect"):
        raise RecommendError(f"shape must be ellipse or rect, got {rc.shape!r}")
    if isinstance(rc.mask_scale, bool) or not isinstance(rc.mask_scale, (int, float)) or rc.mask_scale < 1:
        raise RecommendError(f"mask_scale must be a number >= 1, got {rc.mask_scale!r}")
    bounds = threat.bounds
    for key in ("recall", "identification_margin"):
        v = bounds.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise RecommendError(f"threat {threat_name}: bounds.{key} must be a number in [0, 1], got {v!r}")
    from anonlab.redact import REDACTIONS

    for lad in rc.ladders:
        if lad.get("defense") not in REDACTIONS:
            raise RecommendError(f"ladder defense {lad.get('defense')!r} is not a redaction; valid: "
                                 f"{', '.join(REDACTIONS)}")
        if (lad.get("param") is None) != (lad.defense == "solid"):
            raise RecommendError(f"ladder {lad.defense}: param must be "
                                 f"{'null' if lad.defense == 'solid' else 'a parameter of the defense'}, got "
                                 f"{lad.get('param')!r}")

    try:
        cfg, cands = compose_job(footage, threat, rc, persons)
        dataset = build_config(cfg.dataset, "footage")  # checks the footage before anything else is built
    except (FileNotFoundError, ValueError) as e:
        raise RecommendError(str(e).splitlines()[0]) from None
    settings = build_settings(cfg)[1:]
    if len(settings) != len(cands):
        raise RecommendError("two ladder steps give the same setting; make every ladder value distinct")
    cands = [Candidate(c.defense, c.param, c.value, c.ladder, c.step, c.steps, s.label())
             for c, s in zip(cands, settings)]
    recognizers = {}
    for spec in threat.get("identification") or []:
        if spec.get("attack") != "located":
            raise RecommendError(f"threat {threat_name}: identification attack {spec.get('attack')!r} is not in "
                                 f"this build; valid: located")
        name = spec.recognizer
        recognizers[name] = build_config(group_config("recognizer", name, RECOGNIZERS), f"recognizer {name}").eval()
    probe = _Probe(recognizers, int(rc.thumbnails), int(rc.thumb_px))
    del dataset
    result = run_bench(cfg, progress=bool(cfg.progress), log=log, observers=(probe,))
    return decide(threat_name, threat, rc, persons, cands, result, probe, time.perf_counter() - t0)


def decide(threat_name: str, threat: DictConfig, rc: DictConfig, persons: bool, cands: list[Candidate], result,
           probe: _Probe, wall_s: float) -> Recommendation:
    """Score every candidate against the threat model's bounds and pick (module docstring)."""
    seed = int(rc.seed)
    rows_by = {}
    for r in result.rows:
        rows_by.setdefault((r["setting"], r["detector"]), []).append(r)
    kind = "person" if persons else "face"
    face_dets = [d for d in result.detectors if d in set(threat.detectors.face)]
    n_faces = sum(r["n_gt"] for r in rows_by.get(("none", face_dets[0]), [])) if face_dets else 0
    person_dets = [d for d in result.detectors if d not in face_dets]
    n_persons = sum(r["n_gt"] for r in rows_by.get(("none", person_dets[0]), [])) if person_dets else 0
    rbound = float(threat.bounds.recall)
    margin = float(threat.bounds.identification_margin)
    out_rows = []
    for c in cands:
        advs = []
        for d in result.detectors:
            rs = rows_by.get((c.label, d), [])
            val, lo, hi = interval([r["tp"] for r in rs], [r["n_gt"] for r in rs], seed)
            advs.append(Adversary(d, "detector", sum(r["tp"] for r in rs), sum(r["n_gt"] for r in rs), val, lo, hi,
                                  rbound))
        for name, rec in probe.recognizers.items():
            gal = probe.gallery[name]
            got = probe.probes[name].get(c.label, {})
            keys = sorted(gal)
            hits: dict[str, list[int]] = {}
            if keys:
                g = torch.stack([gal[k] for k in keys])
                for key in keys:
                    hit = 0
                    if key in got:
                        dist = rec.pairwise_distance(got[key][None], g)[0]
                        hit = int(keys[int(dist.argmin())] == key)
                    hits.setdefault(key[0], []).append(hit)
            num = [sum(v) for v in hits.values()]
            den = [len(v) for v in hits.values()]
            val, lo, hi = interval(num, den, seed)
            chance = 1 / len(keys) if keys else 1.0
            advs.append(Adversary(f"{name} (located)", "identification", sum(num), sum(den), val, lo, hi,
                                  min(1.0, chance + margin)))
        acc = probe.change.get(c.label, [0.0, 0.0])
        out_rows.append(Row(c, acc[0] / acc[1] if acc[1] else 0.0, advs))
    out_rows.sort(key=lambda r: (r.change, r.candidate.ladder, r.candidate.step))
    pick, via = choose(out_rows)
    if pick is not None:
        why = (f"{via.candidate.short} is the weakest setting under which every adversary stays below its bound"
               + (f"; {pick.candidate.short} is one strength step stronger, as margin" if pick is not via else
                  " (a solid fill has no stronger step)"))
        advice = ""
    else:
        why, advice = _explain(out_rows, n_faces if not persons else n_persons, kind, rbound, margin)
    options = {"max_frames": int(rc.max_frames), "seed": seed, "shape": str(rc.shape),
               "mask_scale": float(rc.mask_scale), "persons": bool(persons), "bounds": {
                   "recall": rbound, "identification_margin": margin},
               "detectors": list(result.detectors), "recognizers": list(probe.recognizers),
               "pseudo_gt": OmegaConf.to_container(rc.pseudo_gt)}
    return Recommendation(threat_name, out_rows, pick and pick.candidate, via and via.candidate, why, advice, result.n_images, n_faces, n_persons,
                          [f"{f.image}: {f.error}" for f in result.failures], probe.thumbs,
                          list(threat.get("not_measured") or []), options, wall_s,
                          extra={"too_small_to_embed": probe.too_small})


def choose(rows: list[Row]) -> tuple[Row | None, Row | None]:
    """(recommended, weakest passing) rows of ``rows`` (sorted weakest first), or (None, None): for every passing
    row whose one-step-stronger neighbour on its ladder passes too (solid is its own), that neighbour is
    deliverable; the deliverable row with the least pixel change (ties: ladder, step) is recommended. A subset
    of the passing rows (a stronger threat model) can only move the result to an equal or stronger row."""
    by_pos = {(r.candidate.ladder, r.candidate.step): r for r in rows}
    best = None
    for r in rows:
        m = r if r.candidate.defense == "solid" else by_pos.get((r.candidate.ladder, r.candidate.step + 1))
        if r.passed and m is not None and m.passed:
            key = (m.change, m.candidate.ladder, m.candidate.step)
            if best is None or key < best[0]:
                best = (key, m, r)
    return (best[1], best[2]) if best else (None, None)


def _explain(rows: list[Row], n: int, kind: str, rbound: float, margin: float) -> tuple[str, str]:
    """Why no setting qualifies, and what to do, from the evidence."""
    if n == 0:
        return (f"the detector panel found no {kind} in the sampled frames, so nothing can be measured",
                f"give footage in which {kind}s are visible (or more frames: --max-frames)")
    strongest = rows[-1]  # the most pixels changed
    failing = [a for a in strongest.adversaries if not a.passed]
    need = faces_needed(rbound)
    small = [a for a in failing if a.k == 0]
    if small and all(a.k == 0 for a in failing):
        return (f"too few {kind}s for a tight interval: even under {strongest.candidate.short}, where no adversary "
                f"succeeds, {n} {kind}(s) leave a 95 % upper end of {max(a.hi for a in failing):.2f} above the bound",
                f"sample more footage with {kind}s (about {need} or more; --max-frames, more files) or loosen the "
                f"bound in conf/threat/ (recall {rbound}, identification margin {margin})")
    names = ", ".join(f"{a.name} {a.k}/{a.n}" for a in failing)
    return (f"even {strongest.candidate.short} leaves {kind}s found or identified ({names}): the {kind}s may be "
            f"larger than the redacted region or the pseudo ground truth boxes too small",
            "raise --mask-scale, redact whole bodies (--persons), or check the frames in the thumbnails")
