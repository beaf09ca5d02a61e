"""One conformance test over every registered detector (timm-style): contract, empty batch, 1x1, 4K."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import require_packages, shared_path
from images import ZIDANE, load, package_file

from anonlab.detectors import DETECTORS
from anonlab.types import DenseScorer, Detections, Detector

NEEDS_SHARED: set[str] = set()  # every detector runs without ../shared (open models are packaged)


def build(name: str) -> Detector:
    require_packages(name)
    if name in NEEDS_SHARED:
        shared_path("models")
    if name == "yolo":  # no pretrained weights offline: an untrained model built from the shipped yaml
        return DETECTORS.build(name, weights=str(package_file("ultralytics", "cfg", "models", "v8", "yolov8.yaml")))
    if name == "dlib_cnn":  # at full resolution a 4K frame takes ~80 s and ~9 GB on 2 cores: shrink first
        return DETECTORS.build(name, max_side=960)
    return DETECTORS.build(name)


@pytest.fixture(scope="module")
def built():
    cache: dict[str, Detector] = {}

    def get(name):
        if name not in cache:
            cache[name] = build(name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", DETECTORS.names())
def test_class_contract_readable_without_weights(name):
    cls = DETECTORS.get(name)
    assert issubclass(cls, Detector) and cls.name == name
    assert cls.kind in ("face", "person") and cls.classes and 0.0 <= cls.default_threshold <= 1.0
    assert cls.capabilities <= {"differentiable", "cpu_only"}
    assert not ({"differentiable", "cpu_only"} <= cls.capabilities)
    # a differentiable detector declares the dense scores attacks may minimise (types.DenseScorer), and only it
    assert bool(cls.objectives) == ("differentiable" in cls.capabilities)


@pytest.mark.parametrize("name", [n for n in DETECTORS.names() if DETECTORS.get(n).objectives])
def test_dense_scores_of_every_declared_objective(name, built):
    """Each declared objective maps float RGB in [0, 1] to (B, A) scores in [0, 1] with a gradient to the pixels."""
    det = built(name).eval()
    assert isinstance(det, DenseScorer)
    x = (load(ZIDANE)[:, :, :320, :480].float() / 255.0).repeat(2, 1, 1, 1).requires_grad_(True)
    for objective in det.objectives:
        s = det.dense_scores(x, objective)
        assert s.ndim == 2 and s.shape[0] == 2 and s.shape[1] > 0
        assert s.min().item() >= 0.0 and s.max().item() <= 1.0 + 1e-6
        (g,) = torch.autograd.grad(s.amax(dim=1).sum(), x)
        assert g.abs().sum().item() > 0, f"{name}/{objective}: no gradient reaches the pixels"
    with pytest.raises(ValueError, match="unknown objective"):
        det.dense_scores(x, "no_such_objective")


@pytest.mark.parametrize("name", DETECTORS.names())
def test_contract_on_real_empty_tiny_and_4k_frames(name, built, device):
    det = built(name).to(device).eval()
    img = load(ZIDANE).to(device)  # 720 x 1280
    with torch.inference_mode():
        out = det(torch.cat([img, img.flip(-1)]))
        assert isinstance(out, Detections) and out.device == img.device
        assert out.batch_idx.min().item() >= 0 if len(out) else True
        assert out.batch_idx.max().item() <= 1 if len(out) else True
        assert (out.scores >= det.score_floor - 1e-6).all() and (out.scores <= 1 + 1e-6).all()
        b = out.boxes
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()
        assert (b[:, :2] >= -1).all() and (b[:, 2] <= 1281).all() and (b[:, 3] <= 721).all()
        assert len(det(img[:0])) == 0
        assert det(torch.zeros(1, 3, 1, 1, dtype=torch.uint8, device=device)).boxes.shape[1] == 4
        big = F.interpolate(img.float(), size=(2160, 3840), mode="bilinear").round().to(torch.uint8)
        out4k = det(big)
        assert out4k.device == img.device and out4k.boxes.dtype == torch.float32


@pytest.mark.parametrize("name", [n for n in DETECTORS.names() if n.endswith("_ort")])
def test_onnxruntime_backend_equals_the_torch_graph(name, built):
    """``<name>_ort`` runs the same ONNX graph as ``<name>`` on onnxruntime (the fast CPU path of ``anonlab
    redact``): the same boxes (IoU >= 0.999) and scores on a batch of two frames, and no gradient claimed."""
    from torchvision.ops import box_iou

    img = torch.cat([load(ZIDANE), load(ZIDANE).flip(-1)])
    torch_graph, ort = built(name.removesuffix("_ort")), built(name)
    with torch.inference_mode():
        a, b = torch_graph(img).above(torch_graph.threshold), ort(img).above(torch_graph.threshold)
    assert len(a) == len(b) >= 2
    for i in range(img.shape[0]):
        x, y = a.for_image(i), b.for_image(i)
        iou, j = box_iou(x.boxes, y.boxes).max(1)
        assert len(x) == len(y) and (iou >= 0.999).all() and len(set(j.tolist())) == len(y)
        torch.testing.assert_close(x.scores, y.scores[j], atol=1e-3, rtol=0)
    assert not DETECTORS.get(name).capabilities and not DETECTORS.get(name).objectives


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", DETECTORS.names())
def test_cuda_boxes_match_cpu(name, built):
    """Above the detector's threshold, every CPU box has a CUDA box at IoU >= 0.99 and vice versa."""
    from torchvision.ops import box_iou

    det = built(name)
    img = torch.cat([load(ZIDANE), load(ZIDANE).flip(-1)])
    with torch.inference_mode():
        cpu = det.to("cpu")(img).above(det.threshold)
        gpu = det.to("cuda")(img.cuda()).above(det.threshold).to("cpu")
    det.to("cpu")
    assert len(cpu) == len(gpu)
    for i in range(img.shape[0]):
        a, b = cpu.for_image(i).boxes, gpu.for_image(i).boxes
        if len(a):
            iou = box_iou(a, b)
            assert (iou.max(1).values >= 0.99).all() and (iou.max(0).values >= 0.99).all()
