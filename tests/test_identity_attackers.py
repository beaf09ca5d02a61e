"""The restoring and trained attackers on real faces: restoration brings a blurred or mosaicked face back towards
the clean one (PSNR, dlib embedding distance); the trained attackers identify redacted AT&T faces far above chance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import require_packages, shared_path
from images import ASTRONAUT, load

from anonlab.datasets.identity import AttFaces
from anonlab.defenses import DEFENSES
from anonlab.identity.restore import restorable, restoration, restore
from anonlab.identity.trained import (
    CNNAttacker,
    LinearProbe,
    topk_accuracy,
    true_ranks,
    whole_image_boxes,
)
from anonlab.types import Detections

#: the astronaut's face in skimage's astronaut.png (512 x 512), as tests/test_detectors_face_onnx.py boxes it
FACE = (178, 63, 268, 176)


def _face() -> tuple[torch.Tensor, Detections]:
    img = load(ASTRONAUT)
    box = torch.tensor([FACE], dtype=torch.float32)
    one = torch.zeros(1, dtype=torch.int64)
    return img, Detections(box, torch.ones(1), one, one.clone())


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    x1, y1, x2, y2 = FACE
    d = a[..., y1:y2, x1:x2].double() - b[..., y1:y2, x1:x2].double()
    return float(10 * torch.log10(255.0**2 / d.pow(2).mean()))


@pytest.mark.parametrize("name,params", [("gaussian_blur", {"sigma": 2.0}), ("gaussian_blur", {"sigma": 4.0}),
                                         ("gaussian_blur", {"sigma": 8.0}), ("pixelate", {"block_px": 8}),
                                         ("pixelate", {"blocks": 10})])
def test_restore_brings_the_face_closer_in_psnr(name, params) -> None:
    img, dets = _face()
    defense = DEFENSES.build(name, **params)
    red = defense(img, dets)
    out = restore(red, dets, defense)
    assert out.dtype == torch.uint8 and out.shape == img.shape
    assert _psnr(out, img) > _psnr(red, img) + 0.5, (defense.label(), _psnr(out, img), _psnr(red, img))
    x1, y1, x2, y2 = FACE
    outside = torch.ones_like(img, dtype=torch.bool)
    outside[..., y1:y2, x1:x2] = False
    assert torch.equal(out[outside], red[outside])  # only the redacted region is touched
    assert torch.equal(red, defense(img, dets))  # the input was not modified


def test_restore_wiener_also_deblurs() -> None:
    img, dets = _face()
    defense = DEFENSES.build("gaussian_blur", sigma=2.0)
    red = defense(img, dets)
    assert _psnr(restore(red, dets, defense, method="wiener"), img) > _psnr(red, img) + 0.5


def test_restore_sigma_rel_uses_the_defense_strength() -> None:
    img, dets = _face()
    defense = DEFENSES.build("gaussian_blur", sigma_rel=0.03)  # 113 px box: sigma 3.4, quantized as the defense does
    red = defense(img, dets)
    assert _psnr(restore(red, dets, defense), img) > _psnr(red, img) + 0.5


def test_deblurred_face_is_closer_in_dlib_embedding() -> None:
    require_packages("dlib_resnet")
    from anonlab.recognizers import RECOGNIZERS

    rec = RECOGNIZERS.build("dlib_resnet")
    img, dets = _face()
    defense = DEFENSES.build("gaussian_blur", sigma=2.0)
    red = defense(img, dets)
    out = restore(red, dets, defense)

    def emb(x: torch.Tensor) -> torch.Tensor:
        crops, _ = rec.crop(x, dets.boxes, dets.batch_idx)
        return rec.embed(crops)

    clean = emb(img)
    assert float(torch.dist(emb(out), clean)) < float(torch.dist(emb(red), clean))


def test_solid_fill_has_nothing_to_restore() -> None:
    img, dets = _face()
    defense = DEFENSES.build("solid")
    red = defense(img, dets)
    out = restore(red, dets, defense)
    assert torch.equal(out, red) and out.data_ptr() != red.data_ptr()
    assert restoration(defense).startswith("nothing to restore")
    assert "deconvolution" in restoration(DEFENSES.build("gaussian_blur", sigma=2.0))
    # the evaluation reuses the redacted probe's embeddings where restore() has nothing to do
    assert not restorable(defense)
    assert restorable(DEFENSES.build("gaussian_blur", sigma=2.0)) and restorable(DEFENSES.build("pixelate", blocks=8))


@pytest.mark.parametrize("kwargs,match", [({"method": "tv"}, "method must be one of"),
                                          ({"num_iter": 0}, "num_iter"), ({"balance": 0.0}, "balance")])
def test_restore_bad_options_are_one_line(kwargs, match) -> None:
    img, dets = _face()
    with pytest.raises(ValueError, match=match):
        restore(img, dets, DEFENSES.build("gaussian_blur", sigma=2.0), **kwargs)


def _att(people: int) -> tuple[torch.Tensor, torch.Tensor]:
    ds = AttFaces(str(shared_path("datasets/att_orl_faces")))
    idx = [i for i in range(len(ds)) if ds.identity(i) < people]
    return torch.stack([ds.load(i).image for i in idx]), torch.tensor([ds.identity(i) for i in idx])


def _split(labels: torch.Tensor, seed: int = 0, n_test: int = 2) -> torch.Tensor:
    """bool (N,): True for the training images, ``n_test`` per person held out (the identity job's own split)."""
    from anonlab.identity.evaluate import split_per_person

    train = torch.zeros(len(labels), dtype=torch.bool)
    train[torch.from_numpy(split_per_person(labels.numpy(), n_test, seed)[0])] = True
    return train


def _mosaic(images: torch.Tensor, block_px: int = 8) -> torch.Tensor:
    boxes, idx = whole_image_boxes(images)
    dets = Detections(boxes, torch.ones(len(images)), torch.zeros(len(images), dtype=torch.int64), idx)
    return DEFENSES.build("pixelate", block_px=block_px)(images, dets)


def test_linear_probe_reaches_the_regularised_optimum() -> None:
    """On real features (8 px mosaic AT&T faces, 10 people, pooled 4x): the fitted (W, b) is a stationary point
    of scikit-learn's objective 0.5 ||W||^2 + C sum CE, and it names held-out mosaicked faces far above chance."""
    images, labels = _att(10)
    feats = F.avg_pool2d(_mosaic(images).float()[:, :1], 4).flatten(1) / 255.0
    train = _split(labels)
    probe = LinearProbe().fit(feats[train], labels[train])
    w = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    x = F.normalize(feats[train].double(), dim=1)
    loss = 0.5 * (w * w).sum() + F.cross_entropy(x @ w + b, labels[train], reduction="sum")
    loss.backward()
    assert float(w.grad.abs().max()) < 1e-3 * float(w.detach().abs().max()) + 1e-5
    hits = topk_accuracy(probe.topk(feats[~train], 5), labels[~train])
    assert hits[1].float().mean() >= 0.5  # chance: 0.1
    ranks = true_ranks(probe, probe.scores(feats[~train]), labels[~train])
    assert torch.equal(ranks <= 1, hits[1]) and torch.equal(ranks <= 5, hits[5])


def test_cnn_is_deterministic_for_a_seed() -> None:
    images, labels = _att(3)
    red = _mosaic(images)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = CNNAttacker(seed=3, epochs=1).fit(red, labels).scores(red)
        b = CNNAttacker(seed=3, epochs=1).fit(red, labels).scores(red)
        c = CNNAttacker(seed=4, epochs=1).fit(red, labels).scores(red)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.slow
def test_cnn_identifies_8px_mosaic_far_above_chance() -> None:
    """McPherson et al.'s attack in small: 10 people, 8 redacted training images each, 2 redacted probes each."""
    images, labels = _att(10)
    red = _mosaic(images)
    train = _split(labels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machines: one thread ran the CNN several times faster
    try:
        cnn = CNNAttacker(seed=0).fit(red[train], labels[train])
    finally:
        torch.set_num_threads(threads)
    hits = topk_accuracy(cnn.topk(red[~train], 5), labels[~train])
    assert hits[1].float().mean() >= 0.6  # chance: 0.1
    assert hits[5].float().mean() >= 0.9  # chance: 0.5
