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
from conftest import require_packages, shared_path
from images import ASTRONAUT, BUS, ZIDANE, load
from omegaconf import OmegaConf
from torchvision.ops import box_iou

from anonlab import weights
from anonlab.detectors import DETECTORS
from anonlab.recognizers import RECOGNIZERS
from anonlab.types import Recognizer

CONF = Path(__file__).resolve().parents[1] / "src" / "anonlab" / "conf"


#: recognizers whose weights are not packaged: (file in ../shared/models, or None: only the user's own download)
NEEDS_WEIGHTS = {"mobilefacenet": ("models/mobilefacenet_foamliu.onnx", weights.MOBILEFACENET),
                 "facenet": (None, weights.FACENET_VGGFACE2),
                 "person_reid_0287": ("models/person-reidentification-retail-0287_ir2onnx.onnx",
                                      weights.PERSON_REID_0287)}


def require_weights(name: str) -> None:
    """Skip, naming the file, when ``name``'s weights are neither in ../shared nor fetched by the user."""
    if name not in NEEDS_WEIGHTS:
        return
    rel, spec = NEEDS_WEIGHTS[name]
    if rel is not None:
        shared_path(rel)
    else:
        try:
            weights.find(spec)
        except FileNotFoundError:
            pytest.skip(f"{name} weights {spec.file} not found (`anonlab weights fetch {spec.name}` needs internet)")


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
    require_weights(name)
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
    # real faces are landmark-aligned (a body recognizer's "box" crops never are: that is its method, not a
    # fallback); a box on the background (zidane's floor) and one far below min_face_px still give a crop and a
    # finite embedding (the evaluation counts the tiny one as not embedded), never a crash
    assert aligned.all() if rec.alignment != "box" else not aligned.any()
    assert isinstance(rec.min_face_px, int) and rec.min_face_px > 0
    odd = torch.tensor([[500.0, 560.0, 640.0, 700.0], [*z.boxes[0, :2].tolist(), *(z.boxes[0, :2] + 4).tolist()]])
    oc, oa = rec.crop(other_img, odd, torch.zeros(2, dtype=torch.int64))
    assert oc.dtype == torch.uint8 and tuple(oc.shape) == (2, 3, *rec.input_size_hw) and oa.shape == (2,)
    if rec.alignment == "arcface5":  # no face there: aligned from the box, and says so
        assert not oa.any()
    assert torch.isfinite(rec.embed(oc)).all()


@pytest.mark.parametrize("name", [n for n in RECOGNIZERS.names()
                                  if "differentiable" in RECOGNIZERS.get(n).capabilities])
def test_differentiable_recognizers_pass_gradients_to_the_pixels(name, faces):
    require_packages(name)
    require_weights(name)
    rec = from_conf(name)
    pair, a, _, _, _ = faces
    m, _ = rec.aligner.transforms(pair, a.boxes, a.batch_idx)
    x = (pair.float() / 255).requires_grad_(True)
    emb = rec.embed_float(rec.crop_float(x, a.batch_idx, m))
    assert tuple(emb.shape) == (2, rec.embedding_dim)
    emb[0].norm().backward()
    g = x.grad.abs().sum(1)
    assert torch.isfinite(x.grad).all() and g[0].sum() > 0 and g[1].sum() == 0  # each face from its own image
    crops, _ = rec.crop(pair, a.boxes, a.batch_idx)
    torch.testing.assert_close(rec.embed(crops), rec.embed_float(crops.float() / 255).detach())
