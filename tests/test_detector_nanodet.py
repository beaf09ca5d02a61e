"""NanoDet-m-416 (onnx2torch, batched, differentiable) against the upstream onnxruntime pipeline, and on Penn-Fudan.

The reference is an independent numpy re-implementation of the upstream demo (``Kazuhito00/MOT-Tracking-by-Detection-
Pipeline`` ``Detector/nanodet/nanodet_onnx.py``: cv2 INTER_AREA, centred letterbox padded with 0, BGR mean/std,
onnxruntime, GFL decode) on the packaged ONNX file; images are ultralytics' bus.jpg and zidane.jpg.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import shared_path
from images import BUS, ZIDANE, load
from torchvision.ops import batched_nms, box_iou

from anonlab.attacks.objectives import check_objective, score_fn, valid_objectives
from anonlab.detectors._common import ort_session
from anonlab.detectors.nanodet import NanoDetM, area_resize
from anonlab.metrics.matching import match_image

S = 416
MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)  # nanodet-m config, BGR
STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)


@pytest.fixture(scope="module")
def det() -> NanoDetM:
    return NanoDetM()


def _upstream_input(rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The upstream demo's ``_resize_image`` + ``_pre_process`` on an (H, W, 3) uint8 RGB image."""
    bgr = rgb[:, :, ::-1]
    h, w = bgr.shape[:2]
    top = left = 0
    nh, nw = S, S
    if h > w:
        nw = int(S / (h / w))
        left = int((S - nw) * 0.5)
    elif h < w:
        nh = int(S * (h / w))
        top = int((S - nh) * 0.5)
    small = cv2.resize(np.ascontiguousarray(bgr), (nw, nh), interpolation=cv2.INTER_AREA)
    boxed = cv2.copyMakeBorder(small, top, S - nh - top, left, S - nw - left, cv2.BORDER_CONSTANT, value=0)
    x = ((boxed.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x, dtype=np.float32), (top, left, nh, nw)


def _upstream_persons(sess, rgb: np.ndarray, thr: float = 0.35, nms: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes (xyxy, image pixels, unclipped floats) and scores from onnxruntime + the upstream GFL decode."""
    x, (top, left, nh, nw) = _upstream_input(rgb)
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    boxes, scores = [], []
    for s in (8, 16, 32):
        cls = out[f"cls_pred_stride_{s}"][0]
        dist = out[f"dis_pred_stride_{s}"][0].reshape(-1, 8)
        e = np.exp(dist - dist.max(1, keepdims=True))
        sides = ((e / e.sum(1, keepdims=True)) @ np.arange(8)).reshape(-1, 4) * s
        g = S // s
        yv, xv = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        cx, cy = xv.ravel() * s + (s - 1) / 2, yv.ravel() * s + (s - 1) / 2
        boxes.append(np.stack([cx - sides[:, 0], cy - sides[:, 1], cx + sides[:, 2], cy + sides[:, 3]], 1))
        scores.append(cls[:, 0])
    b, sc = np.concatenate(boxes), np.concatenate(scores)
    h, w = rgb.shape[:2]
    b = (b - [left, top, left, top]) * [w / nw, h / nh, w / nw, h / nh]
    b = np.clip(b, 0, [w, h, w, h]).astype(np.float32)
    keep = sc >= thr
    b, sc = torch.from_numpy(b[keep]), torch.from_numpy(sc[keep])
    k = batched_nms(b, sc, torch.zeros(len(sc), dtype=torch.int64), nms)
    return b[k].numpy(), sc[k].numpy()


def test_area_resize_is_cv2_inter_area():
    """Down- and upscaling: equal to cv2 INTER_AREA on float input; on uint8 input OpenCV rounds its output
    (downscaling: within 0.5 grey levels) and upscales with fixed-point weights (measured: within 0.78)."""
    rgb = load(BUS)[0].permute(1, 2, 0).numpy()
    for hw in ((416, 312), (200, 150), (1500, 1125)):
        ref_f = cv2.resize(rgb.astype(np.float32), hw[::-1], interpolation=cv2.INTER_AREA)
        ref_u8 = cv2.resize(rgb, hw[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
        got = area_resize(torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), hw)[0].permute(1, 2, 0).numpy()
        assert np.abs(got - ref_f).max() < 0.05, hw  # float32 cumulative sums
        assert np.abs(got - ref_u8).max() <= (0.51 if hw[0] < rgb.shape[0] else 1.0), hw
        from_u8 = area_resize(torch.from_numpy(rgb).permute(2, 0, 1)[None], hw)[0].permute(1, 2, 0).numpy()
        assert np.abs(from_u8 - got).max() < 1e-3, hw  # forward resizes the uint8 frame itself


@pytest.mark.parametrize("which", [BUS, ZIDANE], ids=["bus", "zidane"])
def test_matches_onnxruntime_upstream_pipeline(det, which):
    img = load(which)
    sess = ort_session(det.weights_path, "nanodet_m")
    # the network alone, same normalised input: onnx2torch equals onnxruntime
    x, _ = _upstream_input(img[0].permute(1, 2, 0).numpy())
    names = [o.name for o in sess.get_outputs()]
    ref = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    cls, dist = det.raw(torch.from_numpy(x))
    ref_cls = np.concatenate([ref[f"cls_pred_stride_{s}"][0] for s in (8, 16, 32)])
    ref_dist = np.concatenate([ref[f"dis_pred_stride_{s}"][0] for s in (8, 16, 32)])
    assert np.abs(cls[0].numpy() - ref_cls).max() < 1e-4 and np.abs(dist[0].numpy() - ref_dist).max() < 1e-3
    # end to end (our area resize, letterbox, decode, NMS) against the upstream pipeline on onnxruntime
    ref_boxes, ref_scores = _upstream_persons(sess, img[0].permute(1, 2, 0).numpy())
    got = det(img).above(det.threshold)
    assert len(got) == len(ref_boxes) >= 2
    iou = box_iou(got.boxes, torch.from_numpy(ref_boxes))
    assert (iou.max(1).values >= 0.99).all() and (iou.max(0).values >= 0.99).all()
    assert np.allclose(np.sort(got.scores.numpy()), np.sort(ref_scores), atol=0.01)


def test_finds_people_as_measured(det):
    """MANIFEST (upstream pipeline): bus.jpg 3 persons 0.64/0.59/0.56 (the one cut off at the left edge scores
    0.22); zidane.jpg the two men 0.76/0.75 and a partial person at 0.47."""
    bus = det(load(BUS)).above(det.threshold).scores
    assert len(bus) == 3 and torch.allclose(bus, torch.tensor([0.64, 0.59, 0.56]), atol=0.01)
    zid = det(load(ZIDANE)).above(0.45).scores
    assert len(zid) == 3 and torch.allclose(zid, torch.tensor([0.76, 0.75, 0.47]), atol=0.01)


def test_batched_equals_per_image_and_gradients_flow(det):
    pair = torch.cat([load(BUS), load(BUS).flip(-1)])
    both = det(pair)
    for i in range(2):
        one = det(pair[i : i + 1])
        part = both.for_image(i)
        assert len(part) == len(one)
        assert torch.allclose(part.boxes, one.boxes, atol=1e-2) and torch.allclose(part.scores, one.scores, atol=1e-4)
    x = (load(ZIDANE).float() / 255).requires_grad_()
    det.forward_float(x)[..., 4].amax().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_other_input_size_and_bad_params():
    det = NanoDetM(input_size=320)
    assert det.forward_float(load(BUS).float() / 255).shape == (1, 40 * 40 + 20 * 20 + 10 * 10, 84)
    for kw in ({"input_size": 100}, {"nms_iou": 0.0}, {"threshold": 2.0}):
        with pytest.raises(ValueError, match="nanodet_m"):
            NanoDetM(**kw)


def test_patch_objectives(det):
    """NanoDet has no objectness: only ``cls`` (its own person score); obj / obj_cls are a one-line error."""
    assert valid_objectives(NanoDetM) == ("cls",)
    for bad in ("obj", "obj_cls"):
        with pytest.raises(ValueError, match=r"valid for nanodet_m: cls \(it has no objectness score\)"):
            check_objective(NanoDetM, bad)
    x = load(BUS).float() / 255
    scores = score_fn(det, "cls")(x)
    assert scores.shape == (1, 3549) and abs(scores.max().item() - 0.64) < 0.01


@pytest.mark.slow
def test_pennfudan_clean_person_recall(det):
    """Recall at IoU 0.5, threshold 0.35, all 263 Penn-Fudan (Penn part) persons: MANIFEST measured 0.977 at 0.3."""
    from anonlab.datasets.pennfudan import PennFudanDataset

    d = PennFudanDataset(str(shared_path("datasets/pennfudanped_penn/PennFudanPed")))
    tp = n = 0
    for i in range(len(d)):
        s = d.load(i)
        got = det(s.image[None]).above(det.threshold)
        m = match_image(got.boxes.numpy(), got.scores.numpy(), s.gt.persons.numpy(), None, 0.5)
        tp, n = tp + m.tp, n + m.n_gt
    assert n == 263 and tp / n >= 0.95


@pytest.mark.slow
def test_patch_train_on_nanodet_defaults_to_cls_and_lowers_the_loss(tmp_path):
    """`anonlab patch train detector=nanodet_m` (no objective given) trains on NanoDet's own person score."""
    from hydra import compose, initialize_config_dir

    from anonlab.attacks.train import PatchTrainingError, train_patch
    from anonlab.build import CONF_DIR

    base = ["detector=nanodet_m", "batch_size=2", "images.train=[bus.jpg,zidane.jpg]", "device=cpu", "progress=false",
            f"out={tmp_path}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="patch/train", overrides=[*base, "steps=10"])
        bad = compose(config_name="patch/train", overrides=[*base, "steps=1", "objective=obj_cls"])
    with pytest.raises(PatchTrainingError, match=r"^unknown or unsuitable objective 'obj_cls'; valid for nanodet_m: cls"):
        train_patch(bad, progress=False, log=lambda msg: None)
    m = train_patch(cfg, progress=False, log=lambda msg: None).meta
    assert m["objective"] == "cls" and m["name"] == "nanodet_m_cls_torso_s0" and m["weights_unchanged"]
    assert (tmp_path / "nanodet_m_cls_torso_s0.png").is_file()
    assert m["final_loss"] < m["initial_loss"], (m["initial_loss"], m["final_loss"])


def test_config_names_the_class_and_upstream_defaults():
    from omegaconf import OmegaConf

    from anonlab.build import CONF_DIR

    cfg = OmegaConf.load(CONF_DIR / "detector" / "nanodet_m.yaml")
    assert cfg._target_ == f"{NanoDetM.__module__}.{NanoDetM.__qualname__}" and NanoDetM.name == "nanodet_m"
    assert cfg.threshold == NanoDetM.default_threshold == 0.35 and cfg.nms_iou == 0.6 and cfg.input_size == 416
    assert "nanodet_m" in OmegaConf.load(CONF_DIR / "bench.yaml").detectors
