"""The body re-ID recognizer (person_reid_0287) and the PETS09 body re-ID evaluation (anonlab.identity.reid).

Real model from ../shared/models, real frames from ../shared/datasets/pets09_s2l1_vtest (skipped when absent);
the metrics are anonlab.metrics.identity's (tested in test_identity_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_path
from images import BUS, load
from PIL import Image

from anonlab.datasets.mot import MOTDataset
from anonlab.identity import reid
from anonlab.recognizers import RECOGNIZERS
from anonlab.types import Detections

MODEL = "models/person-reidentification-retail-0287_ir2onnx.onnx"
PETS = "datasets/pets09_s2l1_vtest"


@pytest.fixture(scope="module")
def rec():
    """The onnxruntime backend: the same embeddings as torch (test_backends_agree_on_pets_crops), faster on CPU."""
    shared_path(MODEL)
    return RECOGNIZERS.build("person_reid_0287", backend="onnxruntime")


@pytest.fixture(scope="module")
def pets_frames():
    """Two PETS09 frames (480x360 video) with their ground-truth person boxes."""
    ds = MOTDataset(str(shared_path(PETS)), stride=400, source="video")
    samples = [ds.load(i) for i in range(len(ds))]
    return samples


def test_crop_is_pillow_bilinear_resize_of_the_box(rec):
    """Against Pillow's crop-then-bilinear-resize of integer boxes (OMZ's pre-processing) on a real photo: upscaled
    boxes (every PETS09 pedestrian) agree within 1 grey level away from the border (half a source pixel); downscaled
    pedestrians differ by the filter (2 bilinear samples per pixel vs Pillow's triangle), a grey level or two on
    average, and embed to the same direction (cosine > 0.99)."""
    img = load(BUS)
    up = torch.tensor([[10.0, 20.0, 41.0, 100.0], [300.0, 500.0, 350.0, 620.0], [700.0, 600.0, 760.0, 700.0]])
    down = torch.tensor([[50.0, 400.0, 210.0, 900.0], [222.0, 406.0, 344.0, 860.0], [670.0, 380.0, 810.0, 880.0]])
    boxes = torch.cat([up, down])  # the three pedestrians of bus.jpg are 450-500 px tall: 256 px is a downscale
    crops, aligned = rec.crop(img, boxes, torch.zeros(6, dtype=torch.int64))
    assert crops.dtype == torch.uint8 and crops.shape == (6, 3, 256, 128) and not aligned.any()
    two = torch.cat([torch.zeros_like(img), img])  # a box of the second image is cropped from that image
    assert torch.equal(rec.crop(two, boxes[:2], torch.ones(2, dtype=torch.int64))[0], crops[:2])
    pil = Image.fromarray(img[0].permute(1, 2, 0).numpy())
    refs = []
    for crop, box in zip(crops, boxes.tolist()):
        ref = np.asarray(pil.crop(tuple(int(v) for v in box)).resize((128, 256), Image.BILINEAR))
        refs.append(torch.from_numpy(ref.copy()).permute(2, 0, 1))
    diff = (crops.int() - torch.stack(refs).int()).abs()
    assert diff[:3, :, 3:-3, 3:-3].max() <= 1  # the border band: half a source pixel, <= 2.1 px at these scales
    assert diff[3:].float().mean() < 2.5
    sim = 1 - rec.pairwise_distance(rec.embed(crops[3:]), rec.embed(torch.stack(refs[3:]))).diagonal()
    assert (sim > 0.99).all(), sim


def test_backends_agree_on_pets_crops(rec, pets_frames):
    s = pets_frames[0]
    crops, _ = rec.crop(s.image[None], s.gt.persons, torch.zeros(len(s.gt.persons), dtype=torch.int64))
    torch_rec = RECOGNIZERS.build("person_reid_0287", backend="torch")
    a, b = torch_rec.embed(crops), rec.embed(crops)
    assert len(crops) >= 3
    assert (rec.pairwise_distance(a, b).diagonal() < 1e-5).all()


def test_small_person_is_not_embedded(rec, pets_frames):
    """A box narrower than min_face_px gets a NaN row and False, the others are embedded; no crash, also when every
    box is too small."""
    s = pets_frames[0]
    big = s.gt.persons[:2]
    x, y = float(big[0, 0]), float(big[0, 1])
    tiny = torch.tensor([[x, y, x + rec.min_face_px - 1, y + 30.0]])
    boxes = torch.cat([big, tiny])
    emb, ok = reid.embed_boxes(rec, s.image[None], boxes, torch.zeros(3, dtype=torch.int64))
    assert ok.tolist() == [True, True, False]
    assert emb[2].isnan().all() and not emb[:2].isnan().any()
    emb, ok = reid.embed_boxes(rec, s.image[None], tiny, torch.zeros(1, dtype=torch.int64))
    assert not ok.any() and emb.shape == (1, rec.embedding_dim)
    emb, _ = reid.embed_boxes(rec, s.image[None], boxes, torch.zeros(3, dtype=torch.int64))
    # a probe that was not embedded is never identified: it counts against the attacker
    g = emb[:2]
    row = reid.score(rec, g, torch.tensor([1, 2]), torch.cat([g, emb[2:]]), torch.tensor([1, 2, 1]), n_boot=50)
    assert row["n_probes"] == 3 and row["rank1"] == pytest.approx(2 / 3)


def test_head_redaction_touches_only_the_heads(pets_frames):
    s = pets_frames[0]
    images = s.image[None]
    persons = Detections.from_list([s.gt.persons])
    out = reid.redact(images, persons, reid.Condition("faces_solid", "solid", {}, "head"))
    changed = (out != images).any(1)[0]
    heads = torch.zeros_like(changed)
    for x1, y1, x2, y2 in reid.head_boxes(s.gt.persons).round().long().tolist():
        heads[y1:y2, x1:x2] = True
    assert changed.any() and not (changed & ~heads).any()
    assert (out[0][:, heads] == 0).all()


def test_split_tracks_is_across_time():
    frames = {1: list(range(0, 200, 5)), 2: list(range(100, 130, 5)), 3: [7]}
    split = reid.split_tracks(frames, per_track=3, window=0.4, min_gap=50)
    assert split.skipped == (2, 3)  # 2: 25 frames long, no 50-frame gap; 3: a single frame
    gal = [f for f, pid in split.gallery if pid == 1]
    probe = [f for f, pid in split.probes if pid == 1]
    assert len(gal) == len(probe) == 3 and min(probe) - max(gal) >= 50
    with pytest.raises(ValueError, match="window"):
        reid.split_tracks(frames, window=0.7)


@pytest.mark.slow
def test_body_reid_on_pets_tracks():
    """Clean body re-ID of PETS09 pedestrians across time is far above chance; a solid fill of the whole body
    brings it down to chance (its interval holds chance and it is below clean's)."""
    shared_path(MODEL)
    ds = MOTDataset(str(shared_path(PETS)), stride=5, source="video")
    split, crops = reid.load_tracks(ds, per_track=2)
    assert len({pid for _, pid in split.probes}) >= 15
    rec = RECOGNIZERS.build("person_reid_0287", backend="onnxruntime")
    conds = [c for c in reid.CONDITIONS if c.name in ("clean", "body_solid")]
    rows = {(r["condition"], r["gallery"]): r for r in reid.evaluate(rec, crops, conds, ("redacted",), n_boot=300)}
    clean, body = rows["clean", "clean"], rows["body_solid", "redacted"]
    assert clean["n_not_embedded"] == 0 and clean["n_ids"] >= 15
    assert clean["rank1_lo"] > 3 * clean["chance_rank1"] and clean["auc_lo"] > 0.8
    assert body["rank1_lo"] <= body["chance_rank1"] <= body["rank1_hi"] < clean["rank1"]
    assert body["auc_lo"] <= 0.5 <= body["auc_hi"] and body["auc_hi"] < clean["auc_lo"]


def test_reid_weights_are_found_not_fetched(tmp_path, monkeypatch):
    """The converted ONNX has no upstream download: a missing file says where it was looked for and that it cannot
    be fetched (never a download attempt)."""
    from anonlab import weights

    monkeypatch.setenv("ANONLAB_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ANONLAB_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="not found in .*nowhere/models.*; it cannot be fetched"):
        RECOGNIZERS.build("person_reid_0287")
    with pytest.raises(ValueError, match="person_reid_0287 weights have no download source"):
        weights.fetch("person_reid_0287", dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing created (the env paths are never made)
