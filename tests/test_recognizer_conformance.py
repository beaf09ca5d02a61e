"""One conformance test for every registered recognizer (picked up from ``RECOGNIZERS.names()``), built from its
``conf/recognizer/<name>.yaml``, on real images of its ``kind``: face recognizers on the astronaut (scikit-image), her
mirror image, and the two men of zidane.jpg (ultralytics), located by CenterFace; body (``person``) recognizers on the
pedestrians of bus.jpg, their mirror images and the two men of zidane.jpg, located by YOLOX-nano. Each person must be
closer to their own mirror image than to anyone else."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from conftest import require_packages
from images import ASTRONAUT, BUS, ZIDANE, load
from omegaconf import OmegaConf
from torchvision.ops import box_iou

from anonlab.detectors import DETECTORS
from anonlab.recognizers import RECOGNIZERS
from anonlab.types import Recognizer

CONF = Path(__file__).resolve().parents[1] / "src" / "anonlab" / "conf"


def from_conf(name: str):
    return hydra.utils.instantiate(OmegaConf.load(CONF / "recognizer" / f"{name}.yaml"))


def _located(det, first, others):
    """(images = [first, mirrored first], dets there, others, dets there, mirror (N,) index of each box's mirror)."""
    pair = torch.cat([first, first.flip(-1)])
    with torch.inference_mode():
        a = det(pair).above(det.threshold)
        z = det(others).above(det.threshold)
    w = first.shape[-1]
    flipped = torch.stack([w - a.boxes[:, 2], a.boxes[:, 1], w - a.boxes[:, 0], a.boxes[:, 3]], dim=1)
    iou = box_iou(a.boxes, flipped)
    iou[a.batch_idx[:, None] == a.batch_idx[None, :]] = 0  # a mirror lies in the other image
    best, mirror = iou.max(1)
    assert (best > 0.5).all(), "the detector does not find the same people in the mirrored image"
    return pair, a, others, z, mirror


@pytest.fixture(scope="module")
def faces():
    """The faces CenterFace finds in [astronaut, mirrored astronaut] and zidane (see :func:`_located`)."""
    out = _located(DETECTORS.build("centerface"), load(ASTRONAUT), load(ZIDANE))
    assert sorted(out[1].batch_idx.tolist()) == [0, 1] and len(out[3]) == 2
    return out


@pytest.fixture(scope="module")
def persons():
    """The pedestrians YOLOX-nano finds in [bus.jpg, mirrored bus.jpg] and the two men of zidane.jpg."""
    out = _located(DETECTORS.build("yolox_nano"), load(BUS), load(ZIDANE))
    assert len(out[1]) >= 6 and len(out[3]) == 2
    return out


@pytest.mark.parametrize("name", RECOGNIZERS.names())
def test_recognizer_contract(name, request):
    require_packages(name)
    rec = from_conf(name)
    assert isinstance(rec, Recognizer) and type(rec) is RECOGNIZERS.get(name) and rec.name == name
    assert (CONF / "recognizer" / f"{name}.yaml").is_file()
    assert rec.kind in ("face", "person") and rec.alignment in ("arcface5", "dlib5", "box")
    assert rec.distance in ("cosine", "euclidean") and rec.embedding_dim > 0 and rec.min_face_px > 0
    pair, a, other_img, z, mirror = request.getfixturevalue("faces" if rec.kind == "face" else "persons")
    n = len(a)
    crops, aligned = rec.crop(pair, a.boxes, a.batch_idx)
    assert crops.dtype == torch.uint8 and tuple(crops.shape) == (n, 3, *rec.input_size_hw)
    assert aligned.dtype == torch.bool and aligned.shape == (n,)
    emb = rec.embed(crops)
    assert emb.dtype == torch.float32 and tuple(emb.shape) == (n, rec.embedding_dim)
    assert torch.equal(rec.embed(crops), emb), "embedding is not deterministic"
    one_by_one = torch.cat([rec.embed(crops[i : i + 1]) for i in range(n)])
    assert torch.allclose(one_by_one, emb, atol=1e-4, rtol=1e-4), "a batch differs from its rows embedded one by one"
    zc, _ = rec.crop(other_img, z.boxes, z.batch_idx)
    ze = rec.embed(zc)
    d = rec.pairwise_distance(emb, torch.cat([emb, ze]))
    assert torch.allclose(d[:, :n].diagonal(), torch.zeros(n), atol=1e-5)
    same = d[torch.arange(n), mirror]
    others = d.clone()
    others[torch.arange(n), torch.arange(n)] = float("inf")
    others[torch.arange(n), mirror] = float("inf")
    other = others.min(1).values
    assert (same < other).all(), f"closer to someone else ({other.tolist()}) than to the own mirror image ({same.tolist()})"
    if rec.threshold is not None:  # the published operating point separates these faces
        assert (same < rec.threshold).all() and (rec.threshold < d[:, n:].min(1).values).all()
    empty = rec.embed(torch.empty((0, 3, *rec.input_size_hw), dtype=torch.uint8))
    assert tuple(empty.shape) == (0, rec.embedding_dim)
