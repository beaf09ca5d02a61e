"""Body re-identification on pedestrian tracks: does redacting a pedestrian's face protect them from body re-ID?

Safe-City systems follow people across cameras by their whole-body appearance (clothes, build, gait), not only by
the face. This module measures that attack on a MOTChallenge sequence with track ids (PETS09 S2L1: 19 people,
795 frames; :class:`anonlab.datasets.mot.MOTDataset`), where a track id is a person's identity.

Protocol (self-contained: it does not use the identity-dataset/adversary framework of :mod:`anonlab.identity`):

1. **Split in time** (:func:`split_tracks`): per track, ``per_track`` gallery crops evenly spaced over the first
   ``window`` fraction of its life and ``per_track`` probe crops over the last ``window`` fraction, at least
   ``min_gap`` frames after the last gallery candidate; a track too short for both windows is left out (and
   reported). So every probe is matched across time, as between two cameras; a track's probes never neighbour its
   gallery frames.
2. **Redact** (:data:`CONDITIONS`, anonlab's own registered defenses on the whole frame, every person of the frame,
   not only the sampled ones): ``clean``; ``faces_solid`` and ``faces_blur``: the **head region**, the top
   :data:`~anonlab.defenses.regions.HEAD_FRACTION` of each ground-truth person box over the box's full width (PETS09 has no face ground truth
   and its faces are 5-15 px: no face detector finds them reliably), filled black or Gaussian-blurred with
   sigma = 0.5 x the head region's height (strong: deface's box blur of half the box is sigma ~ 0.14 x the box);
   ``body_solid``: the whole person box filled black, the control that must fall to chance.
3. **Embed** each sampled box with a ``kind == "person"`` recognizer (:mod:`anonlab.recognizers.person_reid`);
   boxes whose shorter side is below ``rec.min_face_px`` are not embedded and counted (``n_not_embedded``).
4. **Score** two attacker galleries: ``redacted`` (gallery and probes both from the redacted footage: everything
   published is redacted) and ``clean`` (the attacker holds unredacted footage of the gallery window, e.g. from
   another camera, and matches redacted probes to it). Metrics of :mod:`anonlab.metrics.identity` on the
   recognizer's distance: closed-set rank-1/rank-5 (a probe's distance to an identity is its distance to that
   identity's nearest gallery crop; ties count against the attacker; chance is k / n identities) and the ROC AUC of
   same- vs different-identity (gallery, probe) pairs, with 95 % percentile-bootstrap intervals over **probe
   identities** (a pair belongs to its probe's identity).

The identity evaluation of :mod:`anonlab.identity.evaluate` (identity datasets, adversaries, ``identity.parquet``)
is built for one face per image; a frame of pedestrians with many people, each a track, does not fit its
``IdentityDataset`` (one identity per image), so this module stays self-contained and reports its own rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from anonlab.datasets.mot import MOTDataset
from anonlab.defenses import DEFENSES
from anonlab.defenses.regions import head_boxes
from anonlab.metrics.identity import identification_ranks, identify, verify
from anonlab.types import Detections

#: sigma of the face blur as a fraction of the head region's height (module docstring: "strong")
FACE_BLUR_SIGMA_REL = 0.5


@dataclass(frozen=True)
class Condition:
    """One redaction setting: ``defense`` (a registry name and its parameters, built with ``DEFENSES.build``;
    None = clean) applied to ``region`` (``"head"``: top :data:`~anonlab.defenses.regions.HEAD_FRACTION` of each person box; ``"body"``)."""

    name: str
    defense: str | None = None
    params: Mapping[str, object] = field(default_factory=dict)
    region: str = "head"

    def build(self) -> nn.Module | None:
        return None if self.defense is None else DEFENSES.build(self.defense, **dict(self.params))

    def label(self) -> str:
        if self.defense is None:
            return "none"
        return self.build().label() + f" on {self.region}"


CONDITIONS: tuple[Condition, ...] = (
    Condition("clean"),
    Condition("faces_solid", "solid", {}, "head"),
    Condition("faces_blur", "gaussian_blur", {"sigma_rel": FACE_BLUR_SIGMA_REL}, "head"),
    Condition("body_solid", "solid", {}, "body"),
)
GALLERIES = ("redacted", "clean")


@dataclass(frozen=True)
class TrackSplit:
    """Which (frame, person id) boxes form the gallery and the probes; ``skipped``: track ids too short to split."""

    gallery: tuple[tuple[int, int], ...]
    probes: tuple[tuple[int, int], ...]
    skipped: tuple[int, ...]


def _even(values: Sequence[int], k: int) -> list[int]:
    """``k`` values evenly spaced over the sorted ``values`` (first and last included; all when fewer)."""
    if len(values) <= k:
        return list(values)
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, k)).astype(int))
    return [values[i] for i in idx]


def split_tracks(track_frames: Mapping[int, Sequence[int]], per_track: int = 4, window: float = 0.4,
                 min_gap: int = 50) -> TrackSplit:
    """Split each track in time (module docstring, step 1).

    ``track_frames``: person id -> the frames (ints, any unit that counts frames) where the id has a box.
    ``per_track`` >= 1 crops per side; ``window`` in (0, 0.5]: the fraction of the track's life (first to last
    frame) each side draws from; ``min_gap`` >= 0 frames between the last gallery candidate and the first probe.
    Raises ``ValueError`` naming a bad parameter.
    """
    if per_track < 1:
        raise ValueError(f"split_tracks: per_track must be >= 1, got {per_track}")
    if not 0 < window <= 0.5:
        raise ValueError(f"split_tracks: window must be in (0, 0.5], got {window}")
    if min_gap < 0:
        raise ValueError(f"split_tracks: min_gap must be >= 0 frames, got {min_gap}")
    gallery, probes, skipped = [], [], []
    for pid in sorted(track_frames):
        frames = sorted(set(track_frames[pid]))
        if not frames:
            skipped.append(pid)
            continue
        first, last = frames[0], frames[-1]
        span = window * (last - first)
        g = [f for f in frames if f <= first + span]
        p = [f for f in frames if f >= last - span and (not g or f >= g[-1] + min_gap)]
        if not g or not p or p[0] <= g[-1]:
            skipped.append(pid)
            continue
        gallery += [(f, pid) for f in _even(g, per_track)]
        probes += [(f, pid) for f in _even(p, per_track)]
    return TrackSplit(tuple(gallery), tuple(probes), tuple(skipped))


@dataclass
class TrackCrops:
    """The frames and boxes of a :class:`TrackSplit`, loaded.

    images ``uint8 (F, 3, H, W)`` RGB; ``persons``: every ground-truth person box of those frames (the regions a
    redaction covers), ``Detections`` xyxy pixels; ``boxes (N, 4) float32`` xyxy, ``batch_idx (N,)`` into images,
    ``ids (N,) int64`` person ids, ``gallery (N,) bool`` (False: probe) for the sampled boxes; ``frames`` the MOT
    frame of each image; ``missing``: split entries whose box the dataset did not yield (clipped away).
    """

    images: Tensor
    persons: Detections
    boxes: Tensor
    batch_idx: Tensor
    ids: Tensor
    gallery: Tensor
    frames: list[int]
    missing: int = 0


def mot_frame(ref: str) -> int:
    """The MOT frame number of a :class:`MOTDataset` sample id (``<sequence>/<frame:06d>``)."""
    return int(ref.rsplit("/", 1)[1])


def load_tracks(dataset: MOTDataset, per_track: int = 4, window: float = 0.4,
                min_gap: int = 50) -> tuple[TrackSplit, TrackCrops]:
    """Read every frame of ``dataset`` (one sequence; use its ``stride`` to thin it), split the tracks
    (:func:`split_tracks`, ``min_gap`` in MOT frames) and keep the frames that hold a sampled box.

    Raises ``ValueError`` when the dataset holds more than one sequence or no track can be split.
    """
    refs = dataset.refs()
    if len({r.rsplit("/", 1)[0] for r in refs}) > 1:
        raise ValueError(f"load_tracks: {dataset!r} holds several sequences; give it one sequence folder")
    samples = {}
    track_frames: dict[int, list[int]] = {}
    for i, ref in enumerate(refs):
        s = dataset.load(i)
        frame = mot_frame(ref)
        keep = ~s.gt.ignore_persons
        samples[frame] = (s.image, s.gt.persons[keep], s.gt.person_ids[keep])
        for pid in s.gt.person_ids[keep].tolist():
            if pid >= 0:
                track_frames.setdefault(pid, []).append(frame)
    split = split_tracks(track_frames, per_track, window, min_gap)
    if not split.probes:
        raise ValueError(f"load_tracks: no track of {dataset!r} is long enough for a gallery and a probe window "
                         f"{min_gap} frames apart")
    wanted: dict[int, list[tuple[int, bool]]] = {}
    for entries, is_gallery in ((split.gallery, True), (split.probes, False)):
        for frame, pid in entries:
            wanted.setdefault(frame, []).append((pid, is_gallery))
    frames = sorted(wanted)
    boxes, batch_idx, ids, gal, persons = [], [], [], [], []
    for b, frame in enumerate(frames):
        _, pboxes, pids = samples[frame]
        persons.append(pboxes)
        for pid, is_gallery in wanted[frame]:
            hit = (pids == pid).nonzero().flatten()
            if len(hit) == 0:
                continue
            boxes.append(pboxes[hit[0]])
            batch_idx.append(b)
            ids.append(pid)
            gal.append(is_gallery)
    n_wanted = len(split.gallery) + len(split.probes)
    crops = TrackCrops(
        images=torch.stack([samples[f][0] for f in frames]),
        persons=Detections.from_list(persons),
        boxes=torch.stack(boxes).float(),
        batch_idx=torch.tensor(batch_idx, dtype=torch.int64),
        ids=torch.tensor(ids, dtype=torch.int64),
        gallery=torch.tensor(gal, dtype=torch.bool),
        frames=frames,
        missing=n_wanted - len(ids),
    )
    return split, crops


def redact(images: Tensor, persons: Detections, condition: Condition, batch_size: int = 8) -> Tensor:
    """``images`` ``uint8 (B, 3, H, W)`` with every person box ``persons`` -> a redacted copy (``condition``'s
    defense on the head or body regions), ``batch_size`` frames per defense call."""
    defense = condition.build()
    if defense is None:
        return images.clone()
    regions = persons if condition.region == "body" else Detections(
        head_boxes(persons.boxes), persons.scores, persons.labels, persons.batch_idx)
    out = []
    for start in range(0, images.shape[0], batch_size):
        sel = (regions.batch_idx >= start) & (regions.batch_idx < start + batch_size)
        part = regions.select(sel)
        part = Detections(part.boxes, part.scores, part.labels, part.batch_idx - start)
        out.append(defense(images[start : start + batch_size], part))
    return torch.cat(out)


def embeddable(recognizer: nn.Module, boxes: Tensor) -> Tensor:
    """``(N,) bool``: True where the box's shorter side is at least ``recognizer.min_face_px`` pixels."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return wh.min(1).values >= recognizer.min_face_px


def embed_boxes(recognizer: nn.Module, images: Tensor, boxes: Tensor, batch_idx: Tensor,
                batch_size: int = 32) -> tuple[Tensor, Tensor]:
    """Embed the boxes a recognizer accepts: returns ``float32 (N, D)`` (rows of boxes below ``min_face_px`` are
    NaN: not embedded, never guessed) and the ``(N,) bool`` embedded mask, both on the CPU; ``images``, ``boxes``
    and ``batch_idx`` on the recognizer's device. ``batch_size`` crops per call."""
    ok = embeddable(recognizer, boxes).cpu()
    out = torch.full((len(boxes), recognizer.embedding_dim), math.nan)
    idx = ok.nonzero().flatten()
    for start in range(0, len(idx), batch_size):
        k = idx[start : start + batch_size]
        kd = k.to(boxes.device)
        crops, _ = recognizer.crop(images, boxes[kd], batch_idx[kd])
        out[k] = recognizer.embed(crops).float().cpu()
    return out, ok


def score(recognizer: nn.Module, gallery_emb: Tensor, gallery_ids: Tensor, probe_emb: Tensor, probe_ids: Tensor,
          n_boot: int = 1000, seed: int = 0) -> dict[str, float | int]:
    """Identification and verification of probes against a gallery (module docstring, step 4), with the metrics of
    :mod:`anonlab.metrics.identity`.

    Embeddings ``float32 (G, D)`` / ``(P, D)`` on the CPU with their ``int64`` ids; a NaN row (not embedded) is at
    distance ``+inf`` from everything, so it is never matched and counts against the attacker. Distances are the
    recognizer's (``pairwise_distance``). Returns ``n_ids`` (gallery identities), ``n_gallery``, ``n_probes``,
    ``rank1``/``rank5`` with ``_lo``/``_hi`` 95 % bootstrap bounds over probe identities,
    ``chance_rank1``/``chance_rank5`` (k / n_ids), ``auc`` with bounds, ``n_pairs_same``/``n_pairs_diff``.
    """
    dist = recognizer.pairwise_distance(probe_emb.nan_to_num(), gallery_emb.nan_to_num()).double()
    dist[probe_emb.isnan().any(1)] = math.inf
    dist[:, gallery_emb.isnan().any(1)] = math.inf
    d, pl, gl = dist.numpy(), probe_ids.numpy(), gallery_ids.numpy()
    n_ids = len(np.unique(gl))
    ident = identify(identification_ranks(d, pl, gl), pl, n_boot=n_boot, seed=seed)
    same = pl[:, None] == gl[None, :]
    ver = verify(d.ravel(), same.ravel(), None, np.broadcast_to(pl[:, None], d.shape).ravel(), n_boot=n_boot,
                 seed=seed)
    return {"n_ids": n_ids, "n_gallery": len(gl), "n_probes": len(pl),
            "rank1": ident.rank1, "rank1_lo": ident.rank1_ci[0], "rank1_hi": ident.rank1_ci[1],
            "chance_rank1": min(1.0, 1 / n_ids),
            "rank5": ident.rank5, "rank5_lo": ident.rank5_ci[0], "rank5_hi": ident.rank5_ci[1],
            "chance_rank5": min(1.0, 5 / n_ids),
            "auc": ver.auc, "auc_lo": ver.auc_ci[0], "auc_hi": ver.auc_ci[1],
            "n_pairs_same": ver.n_genuine, "n_pairs_diff": ver.n_impostor}


def evaluate(recognizer: nn.Module, crops: TrackCrops, conditions: Sequence[Condition] = CONDITIONS,
             galleries: Sequence[str] = GALLERIES, n_boot: int = 1000, seed: int = 0,
             batch_size: int = 32) -> list[dict]:
    """One row per (condition, gallery): the condition's name and defense label, the gallery mode, the
    :func:`score` fields and ``n_not_embedded`` (sampled boxes below ``recognizer.min_face_px``).

    ``galleries``: ``redacted`` and/or ``clean`` (module docstring, step 4); the clean condition gets one row
    (gallery ``clean``). ``recognizer`` must be ``kind == "person"`` (``ValueError`` otherwise).
    """
    if getattr(recognizer, "kind", None) != "person":
        raise ValueError(f"reid evaluate: {getattr(recognizer, 'name', recognizer)!r} is not a person (body) recognizer")
    for g in galleries:
        if g not in GALLERIES:
            raise ValueError(f"reid evaluate: unknown gallery {g!r}; valid: {', '.join(GALLERIES)}")
    embs: dict[str, Tensor] = {}
    rows = []
    for cond in conditions:
        images = redact(crops.images, crops.persons, cond)
        emb, ok = embed_boxes(recognizer, images, crops.boxes, crops.batch_idx, batch_size)
        embs[cond.name] = emb
        modes = ["clean"] if cond.defense is None else list(galleries)
        for mode in modes:
            if mode == "clean" and "clean" not in embs:
                clean = redact(crops.images, crops.persons, Condition("clean"))
                embs["clean"], _ = embed_boxes(recognizer, clean, crops.boxes, crops.batch_idx, batch_size)
            gsrc = embs["clean"] if mode == "clean" else emb
            g, p = crops.gallery, ~crops.gallery
            row = {"condition": cond.name, "defense": cond.label(), "gallery": mode,
                   "n_not_embedded": int((~ok).sum())}
            row.update(score(recognizer, gsrc[g], crops.ids[g], emb[p], crops.ids[p], n_boot=n_boot, seed=seed))
            rows.append(row)
    return rows
