"""One conformance test per registry (timm-style) for defenses, camera stages (capture, release) and datasets:
every registered entry is picked up from ``names()``, built from its ``conf/<group>/<name>.yaml`` and checked
against its declared contract. (Detectors have their own: ``test_detector_conformance.py``.)"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from conftest import shared_path
from images import BUS, ZIDANE, load, package_file
from omegaconf import OmegaConf
from test_datasets_pedestrian import inria_fixture

from anonlab.camera import CAPTURES, RELEASES
from anonlab.datasets import DATASETS
from anonlab.defenses import DEFENSES
from anonlab.types import Capture, Defense, Detections, Release, Sample

CONF = Path(__file__).resolve().parents[1] / "src" / "anonlab" / "conf"


def from_conf(group: str, name: str, **overrides):
    """Instantiate ``conf/<group>/<name>.yaml`` (with ``overrides`` merged in) as Hydra would."""
    cfg = OmegaConf.merge(OmegaConf.load(CONF / group / f"{name}.yaml"), overrides)
    return hydra.utils.instantiate(cfg)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Two real frames of one size: bus.jpg and zidane.jpg cropped to 480 x 640 (uint8 (2, 3, 480, 640))."""
    return torch.stack([load(BUS)[0, :, 300:780, 100:740], load(ZIDANE)[0, :, :480, :640]]).contiguous()


# ---------------------------------------------------------------------------------------------- defenses

#: boxes on the two frames: the bus's left pedestrian, a box reaching off the frame, a tiny one, zidane's face
BOXES = torch.tensor([[50.0, 100.0, 250.0, 470.0], [560.0, -20.0, 700.0, 200.0], [300.0, 300.0, 303.5, 302.0],
                      [350.0, 50.0, 460.0, 200.0]])
BIDX = torch.tensor([0, 0, 0, 1])


#: defenses built on a model whose weights live in ../shared (not packaged)
DEFENSE_WEIGHTS = {"cloak": "models/mobilefacenet_foamliu.onnx"}


@pytest.mark.parametrize("name", DEFENSES.names())
def test_defense_contract(name, frames, device):
    if name in DEFENSE_WEIGHTS:
        shared_path(DEFENSE_WEIGHTS[name])
    d = from_conf("defense", name).to(device)
    assert isinstance(d, Defense) and type(d) is DEFENSES.get(name) and d.name == name
    images = frames.to(device)
    before = images.clone()
    dets = Detections(BOXES.to(device), torch.ones(4, device=device), torch.zeros(4, dtype=torch.int64, device=device),
                      BIDX.to(device))
    out = d(images, dets)
    assert out.dtype == torch.uint8 and out.shape == images.shape and out.device == images.device
    assert torch.equal(images, before), "the input was modified"
    assert not torch.equal(out, images) or name == "none"
    if not d.outside_changes:  # pixels outside every (scaled) box are untouched
        scaled = BOXES * 1.0 if not hasattr(d, "mask_scale") else _scale(BOXES, d.mask_scale)
        outside = torch.ones(2, 480, 640, dtype=torch.bool)
        for (x1, y1, x2, y2), b in zip(scaled.round().long().tolist(), BIDX.tolist()):
            outside[b, max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = False
        outside = outside[:, None].expand_as(out).to(device)
        assert torch.equal(out[outside], images[outside])
    empty = d(images, Detections.empty(device))
    assert torch.equal(empty, images) and empty.data_ptr() != images.data_ptr()
    assert d.label().startswith(name) and isinstance(d.params_json(), str)


def _scale(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return torch.cat([c - half, c + half], dim=1)


# ---------------------------------------------------------------------------------------------- cameras


#: measured above 5 s on 2 cores (phone_1080p: 1080p frames)
SLOW_CAPTURES = {"phone_1080p"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CAPTURES else n
                                  for n in CAPTURES.names()])
def test_capture_contract(name, frames, device):
    assert (CONF / "capture" / f"{name}.yaml").is_file()
    cam = from_conf("capture", name).to(device)
    assert isinstance(cam, Capture) and type(cam) is CAPTURES.get(name) and cam.name == name
    frames = frames.to(device)
    before = frames.clone()
    cap = cam.capture(frames)
    assert cap.dtype == torch.uint8 and cap.ndim == 4 and cap.shape[:2] == (2, 3) and cap.device == frames.device
    assert torch.equal(frames, before), "the input was modified"
    assert torch.equal(cam.capture(frames), cap), "capture is not deterministic"
    h, w = cap.shape[-2:]
    inside = torch.tensor([[0.0, 0.0, 640.0, 480.0], [100.0, 50.0, 300.0, 400.0], [639.0, 479.0, 640.0, 480.0]])
    boxes = cam.capture_boxes(inside, (480, 640))
    assert boxes.dtype == torch.float32 and boxes.shape == (3, 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    # the one home of a preset's values is its config file: the registry builds the same stage from Python
    assert CAPTURES.build(name).params() == cam.params()


@pytest.mark.parametrize("name", RELEASES.names())
def test_release_contract(name, frames, device):
    assert (CONF / "release" / f"{name}.yaml").is_file()
    rel = from_conf("release", name).to(device)
    assert isinstance(rel, Release) and type(rel) is RELEASES.get(name) and rel.name == name
    frames = frames.to(device)
    before = frames.clone()
    out = rel.release(frames)
    assert out.dtype == torch.uint8 and out.shape == frames.shape and out.device == frames.device
    assert torch.equal(frames, before), "the input was modified"
    assert torch.equal(rel.release(frames), out), "release is not deterministic"
    assert torch.equal(out, frames) == (name == "none"), "only release=none leaves frames as they are"
    assert RELEASES.build(name).params() == rel.params()


# ---------------------------------------------------------------------------------------------- datasets


def _people(tmp_path: Path, sub: str, name) -> Path:
    """Two people of two public photos each (the bus and zidane assets, and their mirror images) in
    ``tmp_path/sub/<person>/`` under the file names ``name(person dir, k)`` gives."""
    from PIL import Image, ImageOps

    root = tmp_path / sub
    for person, asset in (("Bus_Rider", "bus.jpg"), ("Zidane_Photo", "zidane.jpg")):
        (root / person).mkdir(parents=True)
        im = Image.open(package_file("ultralytics", "assets", asset))
        for k, pic in enumerate((im, ImageOps.mirror(im)), start=1):
            path = name(root / person, k)
            pic.save(path)
    return root


def _lfw(tmp_path: Path) -> Path:
    """A two-person LFW layout: ``lfw/<name>/<name>_000k.jpg`` and a one-fold View 2 ``pairs.txt``."""
    _people(tmp_path / "lfwroot", "lfw", lambda p, k: p / f"{p.name}_{k:04d}.jpg")
    (tmp_path / "lfwroot" / "pairs.txt").write_text(
        "1\t1\nBus_Rider\t1\t2\nBus_Rider\t1\tZidane_Photo\t2\n")
    return tmp_path / "lfwroot"


def _dataset_args(name: str, tmp_path: Path) -> dict:
    """The small fixture or shared data each dataset is checked on (a new dataset must add its entry here)."""
    pennfudan = "datasets/pennfudanped_penn/PennFudanPed"
    pets = "datasets/pets09_s2l1_vtest"
    args = {
        "default": lambda: {},
        "folder": lambda: {"root": str(package_file("ultralytics", "assets"))},
        "footage": lambda: {"paths": [str(package_file("ultralytics", "assets"))], "max_frames": 2},
        "inria": lambda: {"root": str(inria_fixture(tmp_path))},
        "mot": lambda: {"root": str(shared_path(pets)), "stride": 100, "max_frames": 2},
        "wider_face": lambda: {"root": str(shared_path("datasets/widerface_val_parade_subset"))},
        "pennfudan": lambda: {"root": str(shared_path(pennfudan))},
        "composite": lambda: {"pennfudan_root": str(shared_path(pennfudan)), "n_scenes": 2},
        "video": lambda: {"path": str(shared_path(f"{pets}/vtest.avi")), "max_frames": 2},
        "att_faces": lambda: {"root": str(shared_path("datasets/att_orl_faces")), "subjects": 2,
                              "images_per_subject": 2},
        "deepface_pairs": lambda: {"root": str(shared_path("datasets/deepface_unit_faces"))},
        "facenet_test_images": lambda: {"root": str(shared_path("datasets/facenet_pytorch_test_images"))},
        "identity_folder": lambda: {"root": str(_people(tmp_path, "people", lambda p, k: p / f"{k}.jpg"))},
        "lfw": lambda: {"root": str(_lfw(tmp_path))},
    }
    if name not in args:
        pytest.fail(f"dataset {name!r} has no fixture in test_registry_conformance._dataset_args")
    return args[name]()


#: building a composite scene set segments and places PennFudan people: minutes on 2 cores
SLOW_DATASETS = {"composite"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_DATASETS else n
                                  for n in DATASETS.names()])
def test_dataset_contract(name, tmp_path):
    assert (CONF / "dataset" / f"{name}.yaml").is_file()
    ds = from_conf("dataset", name, **_dataset_args(name, tmp_path))
    assert type(ds) is DATASETS.get(name)
    refs = ds.refs()
    assert len(ds) == len(refs) > 0 and len(set(refs)) == len(refs)
    for i in sorted({0, len(ds) - 1}):
        s = ds.load(i)
        assert isinstance(s, Sample) and s.image_id == refs[i]
        assert s.image.dtype == torch.uint8 and s.image.ndim == 3 and s.image.shape[0] == 3
        h, w = s.image.shape[-2:]
        for kind in ("face", "person"):
            b = s.gt.boxes(kind)
            assert b.dtype == torch.float32 and b.shape[1] == 4
            assert (b[:, 2:] >= b[:, :2]).all()
            assert (b[:, :2] >= -1).all() and (b[:, 2] <= w + 1).all() and (b[:, 3] <= h + 1).all()
