"""The ``composite`` dataset: synthetic CCTV scenes of Penn-Fudan pedestrians pasted onto background frames by
:mod:`anonlab.camera.compositor`, with exact person ground truth; and :meth:`CompositeDataset.write_clip`, the same
pedestrians walking, written as a MOTChallenge sequence.

Pedestrian bank (built once, at construction, in memory): every Penn-Fudan instance of the first ``max_sources``
images (sorted ids; all when null) whose box does not touch its image border (truncated people would be pasted as
whole ones) and whose mask is at least ``min_source_px`` tall, cut out with its instance mask. Identity id = the
instance's position in the bank (stable for a given root, ``max_sources`` and ``min_source_px``).

Faces are *derived*, not annotated: on each clean, full-resolution Penn-Fudan image the ``face_panel`` detectors
(default ``centerface`` and ``mtcnn``) vote (:func:`anonlab.metrics.pseudo_gt.pseudo_ground_truth`, kept when
``face_min_votes`` agree at IoU >= 0.5); a face goes to the instance whose mask holds its centre (the best-scored
one when several do); the compositor carries it through the paste. People seen from behind have none. That costs
about 1 s per source image on 2 CPU cores: limit ``max_sources`` for quick runs. :attr:`pseudo_kinds` is ``()``
because person boxes are exact and faces are fixed per identity, but face boxes are only as good as the panel.

Backgrounds (``backgrounds``): null -> a synthetic plate (sky/ground gradients split at the camera's horizon, with
a fixed texture); a folder of images -> one drawn per scene; a video file -> one plate, the per-pixel temporal
median of ``median_frames`` frames spread over the video (a static camera's empty scene: passers-by vanish, as
long as nobody stands still). Backgrounds are resized to ``frame_hw`` (default: the first background's size, or
576 x 768 for the synthetic plate), which is the camera's frame.

Ground truth of a scene: ``persons`` the bounding boxes of the full pasted masks (exact), ``person_ids`` the
identities, ``ignore_persons`` where more than ``ignore_occlusion`` of the mask is hidden by nearer people;
``faces`` / ``face_ids`` the carried face boxes, ``ignore_faces`` where more than half the face box is hidden.
Scene ``i`` draws from a ``torch.Generator`` seeded with ``seed * 1000003 + i``: deterministic, in any order.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from anonlab.camera.compositor import (
    CLIP_CODECS,
    WALK_SPEED_MPS,
    Cutout,
    GroundCamera,
    check_height_range,
    cut_out,
    render_clip,
    render_scene,
    sample_placements,
    sample_walks,
    write_mot_clip,
)
from anonlab.camera.ops import resize
from anonlab.datasets.base import DATASETS, Dataset
from anonlab.datasets.folder import list_images
from anonlab.datasets.pennfudan import PennFudanDataset
from anonlab.datasets.video import VIDEO_SUFFIXES, VideoReader
from anonlab.io.images import read_image
from anonlab.types import GroundTruth, Sample

DEFAULT_FRAME_HW = (576, 768)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"composite dataset: {name} must be an integer >= 1, got {value!r}")
    return value


def synthetic_background(size_hw: tuple[int, int], camera: GroundCamera) -> Tensor:
    """uint8 (3, H, W) plate: a blue-grey sky above the horizon row, a grey ground below it darkening toward the
    camera, plus a fixed low-contrast texture (a seeded CPU generator, so every call gives the same plate)."""
    h, w = size_hw
    _, horizon = camera.project(torch.zeros(1), torch.tensor([1e6]), 0.0)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    sky = torch.tensor([0.62, 0.70, 0.80])[:, None, None] * (0.8 + 0.2 * rows / h)
    ground = torch.tensor([0.45, 0.44, 0.42])[:, None, None] * (1.0 - 0.35 * rows / h)
    img = torch.where(rows[None] < float(horizon[0]), sky, ground)
    texture = torch.rand(1, h, w, generator=torch.Generator().manual_seed(12345)) * 0.06 - 0.03
    return ((img + texture).clamp(0, 1) * 255).round().to(torch.uint8)


@DATASETS.register("composite")
class CompositeDataset(Dataset):
    """Synthetic CCTV scenes of Penn-Fudan pedestrians with exact person boxes (see the module docstring).

    pennfudan_root: the PennFudanPed folder (mandatory); backgrounds: null, an image folder or a video file;
    n_scenes: scenes generated; people_per_scene: pedestrians per scene (distinct identities); frame_hw: frame
    size (H, W) or null; camera_height_m / tilt_deg / hfov_deg: the :class:`GroundCamera`; person_height_m: real
    height range (m); min_person_px: smallest pasted person (px); feather: 1-px soft mask edge; max_sources:
    Penn-Fudan images used (null: all); min_source_px: smallest usable source mask height; face_panel /
    face_min_votes: the face pseudo-label panel; ignore_occlusion: occlusion above which a person is an ignore
    box; median_frames: frames in a video background's median; seed: scene randomness.
    """

    pseudo_kinds: tuple[str, ...] = ()

    def __init__(self, pennfudan_root: str, backgrounds: str | None = None, n_scenes: int = 100,
                 people_per_scene: int = 4, frame_hw: tuple[int, int] | None = None, camera_height_m: float = 6.0,
                 tilt_deg: float = 25.0, hfov_deg: float = 70.0, person_height_m: tuple[float, float] = (1.6, 1.9),
                 min_person_px: float = 40.0, feather: bool = False, max_sources: int | None = None,
                 min_source_px: int = 80, face_panel: tuple[str, ...] = ("centerface", "mtcnn"),
                 face_min_votes: int = 2, ignore_occlusion: float = 0.8, median_frames: int = 31,
                 seed: int = 0) -> None:
        if pennfudan_root is None or str(pennfudan_root) in ("", "???"):
            raise ValueError("composite dataset: pennfudan_root is required (the PennFudanPed folder)")
        self.n_scenes = _positive_int(n_scenes, "n_scenes")
        self.people_per_scene = _positive_int(people_per_scene, "people_per_scene")
        self.median_frames = _positive_int(median_frames, "median_frames")
        self.min_source_px = _positive_int(min_source_px, "min_source_px")
        if max_sources is not None:
            _positive_int(max_sources, "max_sources")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"composite dataset: seed must be an integer >= 0, got {seed!r}")
        if not 0.0 <= ignore_occlusion <= 1.0:
            raise ValueError(f"composite dataset: ignore_occlusion must be in [0, 1], got {ignore_occlusion!r}")
        if not min_person_px >= 1:
            raise ValueError(f"composite dataset: min_person_px must be >= 1 pixel, got {min_person_px!r}")
        self.person_height_m = check_height_range(person_height_m)
        self.min_person_px, self.feather, self.seed = float(min_person_px), bool(feather), seed
        self.ignore_occlusion = float(ignore_occlusion)
        if frame_hw is not None:
            frame_hw = (_positive_int(frame_hw[0], "frame_hw[0]"), _positive_int(frame_hw[1], "frame_hw[1]"))
        self._backgrounds = self._load_backgrounds(backgrounds, frame_hw)
        size_hw = tuple(self._backgrounds[0].shape[1:]) if self._backgrounds else (frame_hw or DEFAULT_FRAME_HW)
        self.camera = GroundCamera(size_hw, camera_height_m, tilt_deg, hfov_deg)
        if not self._backgrounds:
            self._backgrounds = [synthetic_background(size_hw, self.camera)]
        self.camera.depth_range(self.person_height_m[1], self.min_person_px)  # raises when nobody fits
        self.source = PennFudanDataset(pennfudan_root)
        self.bank = self._build_bank(max_sources, tuple(face_panel), face_min_votes)
        if len(self.bank) < self.people_per_scene:
            raise ValueError(f"composite dataset: people_per_scene={self.people_per_scene} but the pedestrian bank "
                             f"has only {len(self.bank)} usable instances (raise max_sources or lower min_source_px)")

    # ------------------------------------------------------------------------------------------ construction

    def _load_backgrounds(self, backgrounds: str | None, frame_hw: tuple[int, int] | None) -> list[Tensor]:
        if backgrounds is None:
            return []
        path = Path(backgrounds).expanduser()
        if path.is_dir():
            files = list_images(path)
            if not files:
                raise ValueError(f"composite dataset: no image files in backgrounds folder {path}")
            plates = [read_image(path / f) for f in files]
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            reader = VideoReader(path)
            n = min(self.median_frames, len(reader))
            picks = torch.linspace(0, len(reader) - 1, n).round().long().unique().tolist()
            frames = torch.stack([reader.read(k) for k in picks])
            reader.close()
            plates = [frames.median(dim=0).values.contiguous()]
        else:
            raise FileNotFoundError(f"composite dataset: backgrounds {str(backgrounds)!r} is neither an image folder "
                                    f"nor a video file ({', '.join(VIDEO_SUFFIXES)})")
        size_hw = frame_hw or tuple(plates[0].shape[1:])
        return [p if tuple(p.shape[1:]) == size_hw else resize(p[None], size_hw)[0] for p in plates]

    def _build_bank(self, max_sources: int | None, face_panel: tuple[str, ...], min_votes: int) -> list[Cutout]:
        from anonlab.detectors import DETECTORS
        from anonlab.metrics.pseudo_gt import pseudo_ground_truth

        if not face_panel:
            raise ValueError("composite dataset: face_panel needs at least one face detector name")
        panel = [DETECTORS.build(name) for name in face_panel]
        for det in panel:
            if det.kind != "face":
                raise ValueError(f"composite dataset: face_panel member {det.name!r} is a {det.kind} detector")
        n = len(self.source) if max_sources is None else min(max_sources, len(self.source))
        bank: list[Cutout] = []
        for i in range(n):
            sample = self.source.load(i)
            masks = self.source.masks(i)
            h, w = sample.image.shape[1:]
            boxes = sample.gt.persons
            keep = ((boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < w) & (boxes[:, 3] < h)
                    & (boxes[:, 3] - boxes[:, 1] >= self.min_source_px) & masks.flatten(1).any(1))
            if not bool(keep.any()):
                continue
            faces = _assign_faces(pseudo_ground_truth(sample.image[None], panel, min_votes), masks)
            idx = keep.nonzero()[:, 0]
            ids = range(len(bank), len(bank) + len(idx))
            bank.extend(cut_out(sample.image, masks[idx], faces[idx], ids,
                                [f"{sample.image_id}#{int(k) + 1}" for k in idx]))
        return bank

    # ------------------------------------------------------------------------------------------ scenes

    def generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000003 + index)

    def refs(self) -> list[str]:
        return [f"composite/{i:06d}" for i in range(self.n_scenes)]

    def __len__(self) -> int:
        return self.n_scenes

    def render(self, index: int) -> tuple[Tensor, object]:
        """Scene ``index``: the uint8 (3, H, W) frame and its :class:`~anonlab.camera.compositor.SceneTruth`."""
        if not 0 <= index < self.n_scenes:
            raise IndexError(f"composite dataset index {index} out of range [0, {self.n_scenes})")
        g = self.generator(index)
        bg = self._backgrounds[int(torch.randint(len(self._backgrounds), (1,), generator=g))]
        people = [self.bank[k] for k in torch.randperm(len(self.bank), generator=g)[: self.people_per_scene].tolist()]
        placement = sample_placements(self.camera, [c.aspect for c in people], g, self.person_height_m,
                                      self.min_person_px)
        return render_scene(bg, people, placement, self.camera, self.feather)

    def load(self, index: int) -> Sample:
        image, t = self.render(index)
        p = t.present
        has_face = p & ~t.faces.isnan().any(1)
        gt = GroundTruth(faces=t.faces[has_face].float(), persons=t.persons[p].float(),
                         face_ids=t.identities[has_face], person_ids=t.identities[p],
                         ignore_faces=t.face_occlusion[has_face] > 0.5,
                         ignore_persons=t.occlusion[p] > self.ignore_occlusion)
        return self.sample(self.refs()[index], image, gt, f"composite:{self.seed}:{index}")

    def write_clip(self, folder: str | Path, n_frames: int = 50, fps: int = 25, people: int | None = None,
                   clip_seed: int = 0, speed_mps: float = WALK_SPEED_MPS, codec: str = "ffv1",
                   name: str = "composite") -> Path:
        """Write a synthetic clip as a MOTChallenge sequence in ``folder`` (see
        :func:`~anonlab.camera.compositor.write_mot_clip`): ``people`` (default ``people_per_scene``) bank
        pedestrians walking straight at about ``speed_mps`` for ``n_frames`` frames at ``fps`` over the first
        background, drawn from a generator seeded with ``clip_seed``. The ``mot`` dataset reads it back."""
        people = self.people_per_scene if people is None else _positive_int(people, "people")
        if people > len(self.bank):
            raise ValueError(f"write_clip: people={people} but the bank has {len(self.bank)} instances")
        if codec not in CLIP_CODECS:
            raise ValueError(f"write_clip: unknown codec {codec!r}; valid (lossless): {', '.join(CLIP_CODECS)}")
        g = torch.Generator().manual_seed(clip_seed)
        chosen = [self.bank[k] for k in torch.randperm(len(self.bank), generator=g)[:people].tolist()]
        walks = sample_walks(self.camera, [c.aspect for c in chosen], n_frames, fps, g, speed_mps,
                             self.person_height_m, self.min_person_px)
        frames = render_clip(self._backgrounds[0], chosen, walks, self.camera, self.feather)
        return write_mot_clip(folder, frames, fps, name, codec)

    def __repr__(self) -> str:
        return (f"CompositeDataset(root={str(self.source.root)!r}, bank={len(self.bank)}, n={self.n_scenes}, "
                f"people_per_scene={self.people_per_scene}, camera={self.camera}, seed={self.seed})")


def _assign_faces(dets, masks: Tensor) -> Tensor:
    """float32 (N, 4) face box per instance mask (N, H, W): the best-scored detection whose centre lies in the mask;
    NaN rows where none does. ``dets``: Detections of one image."""
    n, h, w = masks.shape
    faces = torch.full((n, 4), float("nan"))
    if len(dets) == 0 or n == 0:
        return faces
    c = ((dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2).floor().long()
    cx, cy = c[:, 0].clamp(0, w - 1), c[:, 1].clamp(0, h - 1)
    inside = masks[:, cy, cx]  # (N, D)
    score = torch.where(inside, dets.scores[None], torch.full_like(dets.scores[None], -1.0))
    best = score.argmax(1)
    has = inside.any(1)
    faces[has] = dets.boxes[best[has]].float()
    return faces
