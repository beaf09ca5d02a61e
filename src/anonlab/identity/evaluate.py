"""The identity evaluation: for each identity dataset x recognizer x defense setting x adversary, how well does the
attacker still verify and identify the redacted people? One row per combination in ``identity.parquet``
(:data:`anonlab.store.IDENTITY_SCHEMA`), written as resumable shards (one per dataset x recognizer x setting).

Steps for one dataset and recognizer (all on ``device``; images of one size are batched):

1. the person's **clean face box** in every image: the annotated box (``face_source = image``) or the largest face
   the ``locator`` detector finds on the clean image at its threshold (``pseudo_boxes`` rows); an image without one
   has no face to attack and is "not embedded" on every side;
2. **clean embeddings** (the gallery of ``naive`` and ``located``); a box whose shorter side is below the
   recognizer's ``min_face_px`` is not embedded;
3. per setting, the images **redacted** at the clean boxes; embeddings of the redacted face at its clean box
   (``located`` probes, ``parrot`` gallery and probes) and at the box the ``naive`` attacker's detector finds;
4. distances in the recognizer's metric (``+inf`` for a face not embedded), then verification over the pairs (the
   dataset's declared pairs, else every pair ``i < j``; ``i`` is the gallery side, ``j`` the probe) and closed-set
   identification (every image whose person has another image is a probe; the gallery is every other image),
   with 95 % bootstrap intervals over identities (:mod:`anonlab.metrics.identity`);
5. ``restoring`` embeds the restored probe (:func:`anonlab.identity.restore.restore`) at its clean box (the
   redacted probe's embeddings where the defense has no inverse: :func:`~anonlab.identity.restore.restorable`);
   ``trained`` / ``trained_cnn`` split each person's images into training and probe images
   (:func:`split_per_person`) and report closed-set top-1 / top-5 only (:func:`score_trained`); the CNN sees pixels
   only, so it is fitted once per dataset and setting and its row repeated for every recognizer.

Constants: :data:`BATCH` (images per forward pass, a memory bound, no effect on results) and
:data:`CNN_CROP_HW` (AT&T's native crop size). Errors: a bad configuration is a :class:`~anonlab.build.BenchError`
from :func:`build_identity`, before any image is read; an unreadable image is listed in ``failures`` (exit 3) and
its person has no face there.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torchvision.ops import box_iou
from torchvision.transforms.v2 import functional as TF

from anonlab.build import BenchError, build_config, group_config
from anonlab.datasets import DATASETS
from anonlab.datasets.identity import IdentityDataset, Pair
from anonlab.detectors import DETECTORS
from anonlab.identity.adversaries import ADVERSARIES, Adversary
from anonlab.identity.restore import restorable, restore
from anonlab.metrics.identity import identification_ranks, identify, verify
from anonlab.provenance import config_hash, plain
from anonlab.recognizers import RECOGNIZERS
from anonlab.store import IDENTITY_SCHEMA, Chunk, ShardStore
from anonlab.types import Defense, Detections, Detector, SampleError

#: images per forward pass of the defenses and detectors (images of one size only)
BATCH = 16
#: the trained CNN attacker's face crops (H, W): AT&T's native 112 x 92 (the CNN itself resizes to half that)
CNN_CROP_HW = (112, 92)


@dataclass
class IdentityPlan:
    """An identity job, built and checked before any image is read (:func:`build_identity`)."""

    datasets: dict[str, IdentityDataset]
    dataset_cfgs: dict[str, Any]
    recognizers: dict[str, Any]
    adversaries: dict[str, Adversary]
    adversary_cfgs: dict[str, Any]
    locator: Detector
    detectors: dict[str, Detector]  # the naive attackers' detectors, by conf/detector name
    n_boot: int
    seed: int
    device: torch.device
    max_side: int = 0
    common: Any = None
    units: list[tuple[str, str, int]] = field(default_factory=list)  # (dataset, recognizer, setting index)


def _names(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    v = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if not isinstance(v, list):
        raise BenchError(f"{key} must be a list, got {v!r}")
    return v


def build_identity(cfg: DictConfig, settings: list[Defense], device: torch.device) -> IdentityPlan | None:
    """The identity job of ``cfg.identity`` (None when ``identity.datasets`` is empty): datasets (names of
    ``conf/dataset`` identity sets, or ``{name: ..., key: value}`` overrides), recognizers, adversaries, the
    clean-face ``locator``. Raises :class:`BenchError` (one line) for a bad name or value."""
    icfg = cfg.get("identity")
    if icfg is None or not _names(icfg.get("datasets"), "identity.datasets"):
        return None
    datasets, dataset_cfgs = {}, {}
    for item in _names(icfg.datasets, "identity.datasets"):
        spec = {"name": item} if isinstance(item, str) else dict(item)
        name = spec.pop("name", None)
        if not isinstance(name, str):
            raise BenchError(f"identity.datasets: each entry is a dataset name or {{name: ..., key: value}}, got {item!r}")
        dcfg = OmegaConf.merge(group_config("dataset", name, DATASETS), spec)
        ds = build_config(dcfg, f"identity dataset {name}")
        if not isinstance(ds, IdentityDataset):
            raise BenchError(f"identity.datasets: {name} is not an identity dataset (one with people's identities: "
                             f"att_faces, deepface_pairs, facenet_test_images, identity_folder, lfw)")
        datasets[name], dataset_cfgs[name] = ds, plain(dcfg)
    recognizers = {}
    for name in _names(icfg.get("recognizers"), "identity.recognizers"):
        recognizers[name] = build_config(group_config("recognizer", name, RECOGNIZERS), f"recognizer {name}")
    if not recognizers:
        raise BenchError("identity.recognizers is empty; give at least one, e.g. identity.recognizers=[dlib_resnet]")
    adversaries, adversary_cfgs, detectors = {}, {}, {}
    for name in _names(icfg.get("adversaries"), "identity.adversaries"):
        acfg = group_config("adversary", name, ADVERSARIES)
        adversaries[name] = build_config(acfg, f"adversary {name}")
        adversary_cfgs[name] = plain(acfg)
        det_name = getattr(adversaries[name], "detector", None)
        if det_name is not None and det_name not in detectors:
            detectors[det_name] = _detector(det_name, f"adversary {name}")
    if not adversaries:
        raise BenchError("identity.adversaries is empty; give at least one, e.g. identity.adversaries=[naive]")
    locator = _detector(str(icfg.get("locator", "yunet")), "identity.locator")
    n_boot = icfg.get("n_boot", 1000)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise BenchError(f"identity.n_boot must be an integer >= 0, got {n_boot!r}")
    max_side = icfg.get("max_side", 640)
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 0:
        raise BenchError(f"identity.max_side must be an integer >= 0 pixels (0: keep the size), got {max_side!r}")
    for m in [locator, *detectors.values(), *recognizers.values()]:
        m.to(device).eval()
    plan = IdentityPlan(datasets, dataset_cfgs, recognizers, adversaries, adversary_cfgs, locator, detectors,
                        n_boot, int(cfg.seed), device, max_side)
    plan.common = (plain(group_config("detector", locator.name, DETECTORS)), n_boot, int(cfg.seed), device.type,
                   max_side)
    # recognizers innermost: a setting's redacted pixels and naive boxes serve every recognizer, then are dropped
    plan.units = [(d, r, k) for d in datasets for k in range(len(settings)) for r in recognizers]
    return plan


def _detector(name: str, what: str) -> Detector:
    det = build_config(group_config("detector", name, DETECTORS), f"{what} {name}")
    if det.kind != "face":
        raise BenchError(f"{what}: {name} finds {det.kind}s; a face detector is needed")
    return det


# ------------------------------------------------------------------------------------------------ per-dataset state


@dataclass
class _Faces:
    """Embeddings ``(N, D)`` of one side, with ``ok (N,)`` (embedded) and the reasons others were not."""

    emb: Tensor
    ok: np.ndarray
    not_found: np.ndarray
    too_small: np.ndarray


class _DatasetState:
    """One identity dataset decoded once: images (CPU), clean boxes, size buckets, the clean embeddings."""

    def __init__(self, ds: IdentityDataset, locator: Detector, device: torch.device, max_side: int = 0) -> None:
        self.ds = ds
        self.images: list[Tensor] = []
        self.failures: list[dict[str, str]] = []
        gt_faces = []
        for i in range(len(ds)):
            try:
                sample = ds.load(i)
            except SampleError as e:  # an unreadable image: listed, and its person has no face there
                self.failures.append({"image": ds.refs()[i], "error": str(e)})
                self.images.append(torch.zeros(3, 1, 1, dtype=torch.uint8))
                gt_faces.append(torch.empty(0, 4))
                continue
            image, faces = sample.image, sample.gt.faces
            h, w = image.shape[-2:]
            if max_side and max(h, w) > max_side:  # photos: shrink so the long side is max_side (faces stay large)
                r = max_side / max(h, w)
                image = TF.resize(image, [max(1, round(h * r)), max(1, round(w * r))], antialias=True)
                faces = faces * torch.tensor([image.shape[-1] / w, image.shape[-2] / h] * 2)
            self.images.append(image.contiguous())
            gt_faces.append(faces)
        self.labels = np.array([ds.identity(i) for i in range(len(ds))])
        buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, im in enumerate(self.images):
            buckets[tuple(im.shape[-2:])].append(i)
        self.batches = [idx[k:k + BATCH] for idx in buckets.values() for k in range(0, len(idx), BATCH)]
        self.device = device
        self.pseudo = ds.face_source == "detector"
        boxes = torch.zeros(len(ds), 4)
        self.has_face = np.zeros(len(ds), bool)
        failed = {f["image"] for f in self.failures}
        for idx in self.batches:
            if self.pseudo:
                with torch.inference_mode():
                    d = locator(self.stack(idx)).above(locator.threshold).to("cpu")
                for b, i in enumerate(idx):
                    mine = d.boxes[d.batch_idx == b]
                    if len(mine) and ds.refs()[i] not in failed:
                        area = (mine[:, 2] - mine[:, 0]) * (mine[:, 3] - mine[:, 1])
                        boxes[i] = mine[int(area.argmax())]
                        self.has_face[i] = True
            else:
                for i in idx:
                    if len(gt_faces[i]):
                        boxes[i] = gt_faces[i][0]
                        self.has_face[i] = True
        self.boxes = boxes
        self.clean: dict[str, _Faces] = {}
        self._memo: dict[tuple, Any] = {}

    def forget_other_settings(self, label: str) -> None:
        """Drop what :meth:`memo` holds for settings other than ``label`` (memory stays one setting's worth)."""
        self._memo = {k: v for k, v in self._memo.items() if k[1] == label}

    def memo(self, key: tuple, make) -> Any:
        """``make()`` once per ``key`` (redacted and restored batches, the naive attacker's boxes, CNN crops):
        every recognizer of the job sees the same pixels and boxes, computed once."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def stack(self, idx: list[int]) -> Tensor:
        return torch.stack([self.images[i] for i in idx]).to(self.device)

    def regions(self, idx: list[int]) -> Detections:
        """The clean face boxes of images ``idx`` (those that have one) as regions of their batch."""
        keep = [b for b, i in enumerate(idx) if self.has_face[i]]
        boxes = self.boxes[[idx[b] for b in keep]]
        return Detections(boxes.to(self.device), torch.ones(len(keep), device=self.device),
                          torch.zeros(len(keep), dtype=torch.int64, device=self.device),
                          torch.tensor(keep, dtype=torch.int64, device=self.device))


def _embed(rec, images: Tensor, boxes: Tensor, present: np.ndarray) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """Embeddings of ``boxes (B, 4)`` (one per image; ``present`` False: no face) -> ``(B, D)`` (zeros where not
    embedded), embedded mask, too-small mask (shorter side < ``rec.min_face_px``)."""
    side = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).cpu().numpy()
    too_small = present & (side < rec.min_face_px)
    ok = present & ~too_small
    emb = torch.zeros(len(boxes), rec.embedding_dim)
    sel = np.flatnonzero(ok)
    if len(sel):
        idx = torch.as_tensor(sel, dtype=torch.int64)
        with torch.inference_mode():
            crops, _ = rec.crop(images, boxes[idx].to(images.device), idx.to(images.device))
            emb[idx] = rec.embed(crops).float().cpu()
    return emb, ok, too_small


def _side(state: _DatasetState, rec, images_of, boxes_of) -> _Faces:
    """Embeddings of every image of the dataset: ``images_of(idx) -> (B,3,H,W)`` and ``boxes_of(idx, images) ->
    ((B, 4) boxes, present (B,), not_found (B,))`` per batch."""
    n = len(state.images)
    emb = torch.zeros(n, rec.embedding_dim)
    ok, not_found, too_small = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    for idx in state.batches:
        images = images_of(idx)
        boxes, present, missed = boxes_of(idx, images)
        e, o, s = _embed(rec, images, boxes, present)
        emb[idx], ok[idx], not_found[idx], too_small[idx] = e, o, missed, s
    return _Faces(emb, ok, not_found, too_small)


def _clean_boxes(state: _DatasetState):
    def boxes_of(idx, images):
        present = state.has_face[idx]
        return state.boxes[idx], present, ~present
    return boxes_of


def _detected_boxes(state: _DatasetState, det: Detector, iou: float):
    """The naive attacker's boxes: per image, the detection (at the detector's threshold) that overlaps the clean
    face box most, if that IoU is >= ``iou``."""
    def boxes_of(idx, images):
        with torch.inference_mode():
            d = det(images).above(det.threshold).to("cpu")
        out = torch.zeros(len(idx), 4)
        present = np.zeros(len(idx), bool)
        for b, i in enumerate(idx):
            mine = d.boxes[d.batch_idx == b]
            if not state.has_face[i] or not len(mine):
                continue
            overlap = box_iou(mine, state.boxes[i:i + 1])[:, 0]
            best = int(overlap.argmax())
            if float(overlap[best]) >= iou:
                out[b], present[b] = mine[best], True
        return out, present, state.has_face[idx] & ~present
    return boxes_of


# ------------------------------------------------------------------------------------------------------- scoring


def _pairs(ds: IdentityDataset, labels: np.ndarray) -> list[Pair]:
    declared = ds.pairs()
    if declared is not None:
        return declared
    n = len(labels)
    i, j = np.triu_indices(n, k=1)
    return [Pair(int(a), int(b), bool(labels[a] == labels[b])) for a, b in zip(i, j)]


def _distances(rec, gallery: _Faces, probe: _Faces) -> np.ndarray:
    """``(N, N)`` distances gallery x probe in the recognizer's metric; ``inf`` where either was not embedded."""
    d = rec.pairwise_distance(gallery.emb, probe.emb).double().numpy()
    d[~gallery.ok, :] = np.inf
    d[:, ~probe.ok] = np.inf
    return d


def score(rec, state: _DatasetState, gallery: _Faces, probe: _Faces, n_boot: int, seed: int) -> dict[str, Any]:
    """Verification and identification metrics of one (gallery, probe) condition, as row fields."""
    labels = state.labels
    d = _distances(rec, gallery, probe)
    pairs = _pairs(state.ds, labels)
    pi = np.array([p.i for p in pairs], dtype=np.int64)
    pj = np.array([p.j for p in pairs], dtype=np.int64)
    same = np.array([p.same for p in pairs], dtype=bool)
    v = verify(d[pi, pj], same, rec.threshold, labels[pj], n_boot=n_boot, seed=seed)
    counts = np.bincount(labels, minlength=labels.max() + 1)
    probes = np.flatnonzero(counts[labels] >= 2)
    ranks = identification_ranks(d[:, probes].T, labels[probes], labels, exclude=np.eye(len(labels), dtype=bool)[probes])
    ident = identify(ranks, labels[probes], n_boot=n_boot, seed=seed)
    embedded = probe.ok[probes]
    return {
        "n_images": len(labels), "n_identities": int((counts > 0).sum()), "n_pairs": v.n_pairs,
        "n_genuine": v.n_genuine, "n_impostor": v.n_impostor, "n_probes": ident.n_probes,
        "n_not_embedded": int((~probe.ok).sum()), "n_not_found": int(probe.not_found.sum()),
        "n_too_small": int(probe.too_small.sum()),
        "n_misidentified": int((embedded & (ranks > 1)).sum()),
        "not_embedded_rate": float((~probe.ok).mean()) if len(labels) else math.nan,
        "threshold": rec.threshold,
        "accuracy": v.accuracy, "accuracy_lo": v.accuracy_ci[0], "accuracy_hi": v.accuracy_ci[1],
        "auc": v.auc, "auc_lo": v.auc_ci[0], "auc_hi": v.auc_ci[1],
        "tar_at_far_1e-1": v.tar[1e-1], "tar_at_far_1e-2": v.tar[1e-2], "tar_at_far_1e-3": v.tar[1e-3],
        "rank1": ident.rank1, "rank1_lo": ident.rank1_ci[0], "rank1_hi": ident.rank1_ci[1],
        "rank5": ident.rank5, "rank5_lo": ident.rank5_ci[0], "rank5_hi": ident.rank5_ci[1],
        "note": v.note,
    }


def split_per_person(labels: np.ndarray, test_per_person: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) image indices: for each person with ``n >= 2`` images, ``min(test_per_person, n - 1)`` drawn
    at random (``seed``) are tests, the rest train; a person with one image only trains."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for person in np.unique(labels):
        idx = np.flatnonzero(labels == person)
        k = min(test_per_person, len(idx) - 1)
        picked = rng.permutation(idx)
        test += picked[:k].tolist()
        train += picked[k:].tolist()
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def _face_crops(images: Tensor, boxes: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """``uint8 (B, 3, *size_hw)``: each image's box, cropped (rounded, clipped) and resized (antialiased)."""
    out = []
    h, w = images.shape[-2:]
    for im, (x1, y1, x2, y2) in zip(images, boxes.tolist()):
        x1, y1 = max(0, int(x1)), max(0, int(y1))
        x2, y2 = min(w, max(x1 + 1, round(x2))), min(h, max(y1 + 1, round(y2)))
        out.append(TF.resize(im[:, y1:y2, x1:x2], list(size_hw), antialias=True))
    return torch.stack(out)


def score_trained(adv: Adversary, rec, state: _DatasetState, faces: _Faces, pixels: Tensor | None, n_boot: int,
                  seed: int) -> dict[str, Any]:
    """Closed-set top-1 / top-5 of a ``trained`` attacker (:mod:`anonlab.identity.trained`), as row fields; the
    verification columns are NaN (a classifier has no threshold). ``faces``: embeddings of the redacted faces at
    their clean boxes; ``pixels``: their redacted crops (for the CNN)."""
    from anonlab.identity.trained import CNNAttacker, LinearProbe, true_ranks

    labels = state.labels
    train, test = split_per_person(labels, adv.test_per_person, adv.seed)
    usable = train[faces.ok[train]] if adv.trained == "linear_probe" else train[state.has_face[train]]
    ranks = np.full(len(test), np.inf)
    if len(np.unique(labels[usable])) >= 2:
        if adv.trained == "linear_probe":
            clf = LinearProbe().fit(faces.emb[usable], torch.as_tensor(labels[usable]))
            ok = test[faces.ok[test]]
            if len(ok):
                r = true_ranks(clf, clf.scores(faces.emb[ok]), torch.as_tensor(labels[ok])).numpy()
                ranks[np.isin(test, ok)] = r
        else:
            clf = CNNAttacker(seed=adv.seed).fit(pixels[usable], torch.as_tensor(labels[usable]))
            ok = test[state.has_face[test]]
            if len(ok):
                r = true_ranks(clf, clf.scores(pixels[ok]), torch.as_tensor(labels[ok])).numpy()
                ranks[np.isin(test, ok)] = r
    ident = identify(ranks, labels[test], n_boot=n_boot, seed=seed)
    embedded = faces.ok[test] if adv.trained == "linear_probe" else state.has_face[test]
    nan = math.nan
    counts = np.bincount(labels, minlength=labels.max() + 1)
    return {
        "n_images": len(labels), "n_identities": int((counts > 0).sum()), "n_pairs": 0, "n_genuine": 0,
        "n_impostor": 0, "n_probes": len(test), "n_not_embedded": int((~embedded).sum()),
        "n_not_found": int((~state.has_face[test]).sum()),
        "n_too_small": int(faces.too_small[test].sum()) if adv.trained == "linear_probe" else 0,
        "n_misidentified": int((embedded & (ranks > 1)).sum()),
        "not_embedded_rate": float((~embedded).mean()) if len(test) else nan, "threshold": None,
        "accuracy": nan, "accuracy_lo": nan, "accuracy_hi": nan, "auc": nan, "auc_lo": nan, "auc_hi": nan,
        "tar_at_far_1e-1": nan, "tar_at_far_1e-2": nan, "tar_at_far_1e-3": nan,
        "rank1": ident.rank1, "rank1_lo": ident.rank1_ci[0], "rank1_hi": ident.rank1_ci[1],
        "rank5": ident.rank5, "rank5_lo": ident.rank5_ci[0], "rank5_hi": ident.rank5_ci[1],
        "note": f"closed set: {len(train)} training and {len(test)} probe images, top-k of a "
                f"{'linear probe on ' + rec.name + ' embeddings' if adv.trained == 'linear_probe' else 'small CNN on pixels'}",
    }


# --------------------------------------------------------------------------------------------------------- the job


@dataclass
class IdentityResult:
    rows: list[dict]
    wall_s: float
    computed: int
    total: int
    failures: list[dict[str, str]] = field(default_factory=list)


def run_identity(plan: IdentityPlan, settings: list[Defense], out, log=None) -> IdentityResult:
    """Every unit (dataset x recognizer x setting) of ``plan``: rows for every adversary, one shard per unit under
    ``out/identity_shards/<job hash>/``; a re-run with the same ``out`` and configuration computes only the units a
    killed run did not finish."""
    from pathlib import Path

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    torch.manual_seed(plan.seed)
    rec_cfgs = {r: plain(group_config("recognizer", r, RECOGNIZERS)) for r in plan.recognizers}
    hashes = {}
    for d, r, k in plan.units:
        s = settings[k]
        for a in plan.adversaries:
            hashes[(d, r, k, a)] = config_hash(plan.common, plan.dataset_cfgs[d], rec_cfgs[r], plan.adversary_cfgs[a],
                                               s.name, s.params())
    job_hash = config_hash(sorted(hashes.values()), [(d, r, settings[k].label()) for d, r, k in plan.units])
    store = ShardStore(Path(out) / "identity_shards", job_hash, IDENTITY_SCHEMA)
    store.clean_temp()
    chunks = [Chunk(u, u + 1) for u in range(len(plan.units))]
    todo = [c for c in chunks if not store.done(c)]
    if len(todo) < len(chunks):
        log(f"identity: resuming, {len(chunks) - len(todo)} of {len(chunks)} shards already in {store.dir}")
    states: dict[str, _DatasetState] = {}
    for c in todo:
        d, r, k = plan.units[c.start]
        setting = settings[k]
        rec = plan.recognizers[r]
        if d not in states:
            states[d] = _DatasetState(plan.datasets[d], plan.locator, plan.device, plan.max_side)
        st = states[d]
        st.forget_other_settings(setting.label())
        if r not in st.clean:
            st.clean[r] = _side(st, rec, st.stack, _clean_boxes(st))
        clean = st.clean[r]
        if setting.name == "none":
            redact = st.stack
        else:
            def redact(idx, st=st, setting=setting):
                with torch.no_grad():  # not inference_mode: the cloak defense needs autograd inside
                    return setting(st.stack(idx), st.regions(idx))
        label = setting.label()

        def redacted(idx, redact=redact, label=label, st=st):  # each batch redacted once, for every recognizer too
            return st.memo(("redacted", label, idx[0]), lambda: redact(idx))
        located = clean if setting.name == "none" else _side(st, rec, redacted, _clean_boxes(st))
        rows = []
        for a, adv in plan.adversaries.items():
            if adv.trained is not None:
                pixels = None
                if adv.trained == "cnn":
                    def crops(st=st, redacted=redacted):
                        out = torch.zeros(len(st.images), 3, *CNN_CROP_HW, dtype=torch.uint8)
                        for idx in st.batches:
                            out[idx] = _face_crops(redacted(idx).cpu(), st.boxes[idx], CNN_CROP_HW)
                        return out
                    pixels = st.memo(("pixels", label), crops)
                    # the CNN sees pixels only: its fit and row are the same for every recognizer, computed once
                    row = st.memo(("cnn_row", label, a), lambda adv=adv, rec=rec, st=st, located=located, pixels=pixels:
                                 score_trained(adv, rec, st, located, pixels, plan.n_boot, plan.seed))
                else:
                    row = score_trained(adv, rec, st, located, pixels, plan.n_boot, plan.seed)
            else:
                if adv.locate == "detector":
                    find = _detected_boxes(st, plan.detectors[adv.detector], adv.iou)

                    def found(idx, images, find=find, key=("naive", label, adv.detector, adv.iou), st=st):
                        return st.memo((*key, idx[0]), lambda: find(idx, images))  # same boxes for every recognizer
                    probe = _side(st, rec, redacted, found)
                elif adv.restores and restorable(setting):

                    def restored(idx, redacted=redacted, setting=setting, method=adv.method, st=st, label=label):
                        def run():
                            with torch.inference_mode():
                                return restore(redacted(idx), st.regions(idx), setting, method=method)
                        return st.memo(("restored", label, method, idx[0]), run)
                    probe = _side(st, rec, restored, _clean_boxes(st))
                else:  # located and parrot; restoring where restore() returns the input unchanged (solid, cloak)
                    probe = located
                gallery = located if adv.gallery == "redacted" else clean
                row = score(rec, st, gallery, probe, plan.n_boot, plan.seed)
            rows.append({"dataset": d, "recognizer": r, "adversary": a, "defense": setting.name,
                         "params": setting.params_json(), "setting": setting.label(),
                         "adversary_params": json.dumps(adv.params(), sort_keys=True),
                         "pseudo_boxes": st.pseudo, "n_no_clean_face": int((~st.has_face).sum()),
                         **row, "config_hash": hashes[(d, r, k, a)]})
        store.write(c, rows, {"unit": [d, r, setting.label()], "failures": st.failures})
    table, metas = store.read(chunks)
    failures = {(f["image"], f["error"]): f for m in metas for f in m.get("failures", [])}
    return IdentityResult(table.to_pylist(), time.perf_counter() - t0, len(todo), len(chunks), list(failures.values()))
