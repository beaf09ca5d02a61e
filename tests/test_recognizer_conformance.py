"""One conformance test for every registered recognizer (picked up from ``RECOGNIZERS.names()``), built from its
``conf/recognizer/<name>.yaml``, on real faces: the astronaut (scikit-image), her mirror image, and the two men of
zidane.jpg (ultralytics), located by CenterFace."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from conftest import require_packages, shared_path
from images import ASTRONAUT, ZIDANE, load
from omegaconf import OmegaConf

from anonlab import weights
from anonlab.detectors import DETECTORS
from anonlab.recognizers import RECOGNIZERS
from anonlab.types import Recognizer

CONF = Path(__file__).resolve().parents[1] / "src" / "anonlab" / "conf"


#: recognizers whose weights are not packaged: (file in ../shared/models, or None: only the user's own download)
NEEDS_WEIGHTS = {"mobilefacenet": ("models/mobilefacenet_foamliu.onnx", weights.MOBILEFACENET),
                 "facenet": (None, weights.FACENET_VGGFACE2)}


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


@pytest.fixture(scope="module")
def faces():
    """(images, boxes, batch_idx) of the faces CenterFace finds in [astronaut, mirrored astronaut] and zidane."""
    det = DETECTORS.build("centerface")
    astro = load(ASTRONAUT)
    pair = torch.cat([astro, astro.flip(-1)])
    with torch.inference_mode():
        a = det(pair).above(det.threshold)
        z = det(load(ZIDANE)).above(det.threshold)
    assert sorted(a.batch_idx.tolist()) == [0, 1] and len(z) == 2
    return pair, a, load(ZIDANE), z


@pytest.mark.parametrize("name", RECOGNIZERS.names())
def test_recognizer_contract(name, faces):
    require_packages(name)
    require_weights(name)
    rec = from_conf(name)
    assert isinstance(rec, Recognizer) and type(rec) is RECOGNIZERS.get(name) and rec.name == name
    assert (CONF / "recognizer" / f"{name}.yaml").is_file()
    assert rec.distance in ("cosine", "euclidean") and rec.embedding_dim > 0
    pair, a, zid, z = faces
    crops, aligned = rec.crop(pair, a.boxes, a.batch_idx)
    assert crops.dtype == torch.uint8 and tuple(crops.shape) == (2, 3, *rec.input_size_hw)
    assert aligned.dtype == torch.bool and aligned.shape == (2,)
    emb = rec.embed(crops)
    assert emb.dtype == torch.float32 and tuple(emb.shape) == (2, rec.embedding_dim)
    assert torch.equal(rec.embed(crops), emb), "embedding is not deterministic"
    zc, _ = rec.crop(zid, z.boxes, z.batch_idx)
    ze = rec.embed(zc)
    d = rec.pairwise_distance(emb, torch.cat([emb, ze]))
    assert torch.allclose(d[:, :2].diagonal(), torch.zeros(2), atol=1e-5)
    same, other = d[0, 1].item(), d[:, 2:].min().item()
    assert same < other, f"the astronaut is closer to two other men ({other:.3f}) than to her mirror image ({same:.3f})"
    if rec.threshold is not None:  # the published operating point separates these faces
        assert same < rec.threshold < other
    empty = rec.embed(torch.empty((0, 3, *rec.input_size_hw), dtype=torch.uint8))
    assert tuple(empty.shape) == (0, rec.embedding_dim)
    # real faces are landmark-aligned; a box on the background (zidane's floor) and a face far below min_face_px
    # still give a crop and a finite embedding (the evaluation counts the tiny one as not embedded), never a crash
    assert aligned.all()
    assert isinstance(rec.min_face_px, int) and rec.min_face_px > 0
    odd = torch.tensor([[500.0, 560.0, 640.0, 700.0], [*z.boxes[0, :2].tolist(), *(z.boxes[0, :2] + 4).tolist()]])
    oc, oa = rec.crop(zid, odd, torch.zeros(2, dtype=torch.int64))
    assert oc.dtype == torch.uint8 and tuple(oc.shape) == (2, 3, *rec.input_size_hw) and oa.shape == (2,)
    if rec.alignment == "arcface5":  # no face there: aligned from the box, and says so
        assert not oa.any()
    assert torch.isfinite(rec.embed(oc)).all()


@pytest.mark.parametrize("name", [n for n in RECOGNIZERS.names()
                                  if "differentiable" in getattr(RECOGNIZERS.get(n), "capabilities", ())])
def test_differentiable_recognizers_pass_gradients_to_the_pixels(name, faces):
    require_packages(name)
    require_weights(name)
    rec = from_conf(name)
    pair, a, _, _ = faces
    m, _ = rec.aligner.transforms(pair, a.boxes, a.batch_idx)
    x = (pair.float() / 255).requires_grad_(True)
    emb = rec.embed_float(rec.crop_float(x, a.batch_idx, m))
    assert tuple(emb.shape) == (2, rec.embedding_dim)
    emb[0].norm().backward()
    g = x.grad.abs().sum(1)
    assert torch.isfinite(x.grad).all() and g[0].sum() > 0 and g[1].sum() == 0  # each face from its own image
    crops, _ = rec.crop(pair, a.boxes, a.batch_idx)
    torch.testing.assert_close(rec.embed(crops), rec.embed_float(crops.float() / 255).detach())
