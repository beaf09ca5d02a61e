"""The ``cloak`` defense on real faces (the astronaut and her mirror image, located by CenterFace): a few PGD steps
raise the white-box mobilefacenet distance to the clean face, the L-inf budget holds exactly, pixels outside the
boxes are unchanged, the result is deterministic, and bad settings fail in one line."""

from __future__ import annotations

import pytest
import torch
from conftest import shared_path
from images import ASTRONAUT, load

from anonlab.defenses import DEFENSES
from anonlab.detectors import DETECTORS


@pytest.fixture(scope="module")
def two_faces():
    shared_path("models/mobilefacenet_foamliu.onnx")
    det = DETECTORS.build("centerface")
    astro = load(ASTRONAUT)
    pair = torch.cat([astro, astro.flip(-1)])
    with torch.no_grad():
        d = det(pair).above(det.threshold)
    assert sorted(d.batch_idx.tolist()) == [0, 1]
    return pair, d


def _distance(rec, clean, cloaked, dets):
    """1 - cosine between each face's embeddings before and after, on the same (clean-landmark) aligned crop."""
    m, _ = rec.aligner.transforms(clean, dets.boxes, dets.batch_idx)
    with torch.no_grad():
        a = rec.embed_float(rec.crop_float(clean.float() / 255, dets.batch_idx, m))
        b = rec.embed_float(rec.crop_float(cloaked.float() / 255, dets.batch_idx, m))
    return 1 - torch.nn.functional.cosine_similarity(a, b)


@pytest.mark.parametrize("epsilon", [4.0, 8.0])
def test_cloak_raises_the_white_box_distance_within_the_budget(two_faces, epsilon):
    images, dets = two_faces
    cloak = DEFENSES.build("cloak", epsilon=epsilon, steps=5)
    out = cloak(images, dets)
    diff = (out.int() - images.int()).abs()
    assert out.dtype == torch.uint8 and diff.max().item() == int(epsilon)  # the budget is used, never exceeded
    inside = torch.zeros_like(images, dtype=torch.bool)
    for (x1, y1, x2, y2), b in zip(dets.boxes.round().long().tolist(), dets.batch_idx.tolist()):
        inside[b, :, y1:y2, x1:x2] = True
    assert torch.equal(out[~inside], images[~inside])
    d_cloak = _distance(cloak.model, images, out, dets)
    # the same budget as random signs: the gradient, not the noise, moves the embedding
    g = torch.Generator().manual_seed(0)
    noise = (torch.randint(0, 2, images.shape, generator=g) * 2 - 1) * int(epsilon)
    noisy = torch.where(inside, (images.int() + noise).clamp(0, 255), images.int()).to(torch.uint8)
    d_noise = _distance(cloak.model, images, noisy, dets)
    assert (d_cloak > 3 * d_noise).all() and (d_cloak > 0.2).all(), (d_cloak, d_noise)


def test_cloak_is_deterministic(two_faces):
    images, dets = two_faces
    cloak = DEFENSES.build("cloak", epsilon=4.0, steps=2)
    assert torch.equal(cloak(images, dets), cloak(images, dets))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epsilon": 0}, "epsilon must be"), ({"epsilon": 300}, "epsilon must be"), ({"steps": 0}, "steps must be"),
    ({"recognizer": "dlib_resnet"}, "unknown recognizer .dlib_resnet.; valid: mobilefacenet"),
    ({"step_size": -1.0}, "step_size must be"),
])
def test_bad_cloak_settings_fail_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DEFENSES.build("cloak", **kwargs)


def test_cloak_runs_under_inference_mode_as_the_engine_calls_it(two_faces):
    images, dets = two_faces
    cloak = DEFENSES.build("cloak", epsilon=4.0, steps=1)
    with torch.inference_mode():
        inside = cloak(images.clone(), dets.to("cpu"))
    assert torch.equal(inside, cloak(images, dets))
