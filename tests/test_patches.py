"""Adversarial patches: training against the real YOLOX-nano (loss drops, weights untouched), the patch defenses and
their controls inside the benchmark engine, bad inputs, exact round trips and CPU/CUDA agreement."""

from __future__ import annotations

import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from images import BUS, load
from omegaconf import OmegaConf, open_dict

from anonlab.attacks import NotDifferentiableError, train_patch, weights_hash
from anonlab.build import CONF_DIR, build_settings
from anonlab.defenses import DEFENSES
from anonlab.defenses.patch import (
    GreyPatch,
    NoisePatch,
    PatchDefense,
    PoseRanges,
    apply_patch,
    load_patch,
    pose_from_uniform,
    save_patch,
)
from anonlab.engine import run_bench
from anonlab.types import Detections

# two people in bus.jpg (1080 x 810), one box touching the right border
BOXES = torch.tensor([[52.0, 400.0, 245.0, 898.0], [669.0, 396.0, 810.0, 876.0]])
POSE = {"jitter": 0.1, "scale": 0.2, "rotation_deg": 15.0, "perspective": 0.08, "brightness": 0.1, "contrast": 0.2}


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """20 steps against YOLOX-nano on the persons of bus.jpg and zidane.jpg (default dataset), CPU."""
    out = tmp_path_factory.mktemp("patch")
    cfg = _compose("patch/train", ["steps=20", "batch_size=2", "images.train=[bus.jpg,zidane.jpg]", "device=cpu",
                                   "progress=false", f"out={out}", "name=p20"])
    return train_patch(cfg, progress=False, log=lambda msg: None)


@pytest.mark.slow  # the `trained` fixture runs 20 CPU training steps: ~1-2 min on 2 cores
def test_twenty_cpu_steps_lower_the_loss_and_leave_the_detector_unchanged(trained):
    from anonlab.detectors import DETECTORS

    m = trained.meta
    # The loss compared is the detection loss with the patch exactly placed on the 6 training persons (no EOT, so
    # it is comparable across steps): mean over the 2 images of the highest obj * P(person). Measured on CPU:
    # 0.7712 (grey patch) -> 0.7224 after 20 steps (seed 0, lr 0.03), a drop of 0.049 (0.7213 with another blur
    # border rule: small implementation changes move it by ~0.001); the margin is 0.02, 40 % of the drop.
    assert m["final_loss"] < m["initial_loss"] - 0.02, (m["initial_loss"], m["final_loss"])
    assert m["train_images"] == ["bus.jpg", "zidane.jpg"] and m["n_train_boxes"] == 6  # 8 annotated, 2 marked ignore
    assert m["held_out_images"] == ["grace_hopper.jpg", "astronaut.png", "camera.png"]
    # the trainer checked its own detector before/after; a fresh, never-trained instance has the same hash
    assert m["weights_unchanged"] and m["weights_sha256"] == weights_hash(DETECTORS.build("yolox_nano"))
    for key in ("objective", "detector", "steps", "transforms", "seed", "final_loss", "history", "patch_size_hw"):
        assert key in m
    assert m["detector"] == "yolox_nano" and m["steps"] == 20 and m["patch_size_hw"] == [300, 300]


@pytest.mark.slow  # the `trained` fixture runs 20 CPU training steps: ~1-2 min on 2 cores
def test_saved_png_round_trips_exactly_into_the_patch_defense(trained):
    u8 = (trained.patch * 255).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(load_patch(trained.png), u8)
    defense = DEFENSES.build("patch", path=str(trained.png))
    assert defense.label() == "patch(path=p20)"
    # a 600 px wide box makes the 300 x 300 patch land 1:1 on the pixel grid: pasted pixels == file pixels
    frame = torch.full((1, 3, 800, 800), 77, dtype=torch.uint8)
    out = defense(frame, Detections.from_list([torch.tensor([[100.0, 100.0, 700.0, 700.0]])]))
    y0, x0 = 100 + round(0.35 * 600) - 150, 400 - 150
    assert torch.equal(out[0, :, y0:y0 + 300, x0:x0 + 300], u8)
    untouched = torch.ones(800, 800, dtype=torch.bool)
    untouched[y0:y0 + 300, x0:x0 + 300] = False
    assert (out[0][:, untouched] == 77).all()


def test_non_differentiable_detector_is_refused_naming_the_differentiable_ones(tmp_path):
    cfg = _compose("patch/train", ["detector=haar", f"out={tmp_path}"])
    with pytest.raises(NotDifferentiableError, match=r"'haar' has \['cpu_only'\]; suitable: centerface, .*yolox_nano"):
        train_patch(cfg, progress=False)
    assert not list(tmp_path.iterdir())  # failed before any work


@pytest.mark.parametrize("device", ["gpu", "cuda:abc"])
def test_a_malformed_device_is_refused_before_any_work(tmp_path, device):
    """``device=gpu`` ended in torch's RuntimeError traceback (found 2026-12-01): now one line, nothing written."""
    from anonlab.attacks.train import PatchTrainingError

    cfg = _compose("patch/train", [f"device={device}", f"out={tmp_path}"])
    with pytest.raises(PatchTrainingError, match=rf"^device must be cpu, cuda or cuda:N, got '{device}'$"):
        train_patch(cfg, progress=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # ~11 s on 2 cores (a CLI subprocess importing torch)
def test_cli_patch_train_bad_detector_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "anonlab.cli.main", "patch", "train", "detector=hog_person",
                           f"out={tmp_path}"], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "hog_person" in err[0] and "yolox_nano" in err[0]


@pytest.mark.parametrize(
    ("make", "holds"),
    [(lambda: np.zeros((20, 30), np.uint8), "uint8 array of shape (20, 30)"),  # greyscale
     (lambda: np.zeros((20, 30, 4), np.uint8), "uint8 array of shape (20, 30, 4)"),  # RGBA
     (lambda: np.zeros((20, 30, 3), np.uint16), "uint16 array of shape (20, 30, 3)")],  # 16-bit
    ids=["grey", "rgba", "16bit"])
def test_patch_file_of_wrong_shape_or_dtype_is_a_clear_error(tmp_path, make, holds):
    p = tmp_path / "bad.png"
    assert cv2.imwrite(str(p), make())
    for factory in (PatchDefense, NoisePatch, GreyPatch):
        with pytest.raises(ValueError, match=rf"patch file .*bad\.png holds a {re.escape(holds)}; expected an 8-bit RGB"):
            factory(path=str(p))


def test_missing_patch_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"patch file '.*nope\.png' does not exist .*demo_yolox_nano"):
        PatchDefense(path=str(tmp_path / "nope.png"))


def test_bad_placement_values_raise_when_built():
    for kwargs, msg in (({"target": "hat"}, "unknown target 'hat'; valid: torso, face"),
                        ({"rotation_deg": -1}, r"rotation_deg must be a number in \[0, 180"),
                        ({"size": 0}, r"size must be a number in \(0, 4\] \(the patch width")):
        with pytest.raises(ValueError, match=msg):
            GreyPatch(**kwargs)


def test_patch_and_controls_run_inside_run_bench_into_one_table():
    cfg = _compose("bench", ["dataset=default", "limit=2", "detectors=[yolox_nano]", "regions.target=person",
                             "progress=false"])
    with open_dict(cfg):
        cfg.sweep = OmegaConf.create([{"name": "patch", "path": "demo_yolox_nano", **POSE},
                                      {"name": "noise_patch", "path": "demo_yolox_nano", **POSE},
                                      {"name": "grey_patch", "path": "demo_yolox_nano", **POSE}])
    result = run_bench(cfg, progress=False, log=lambda msg: None)
    pose = ",".join(f"{k}={v:g}" for k, v in POSE.items())
    labels = ["none", f"patch(path=demo_yolox_nano,{pose})", f"noise_patch(path=demo_yolox_nano,{pose})",
              f"grey_patch(path=demo_yolox_nano,{pose})"]
    assert result.settings == labels
    rows = result.rows
    assert len(rows) == 2 * 4 and {r["setting"] for r in rows} == set(labels)
    assert {r["defense"] for r in rows} == {"none", "patch", "noise_patch", "grey_patch"}
    persons = {"bus.jpg": 5, "zidane.jpg": 3}
    assert all(r["n_regions"] == persons[r["image"]] for r in rows if r["defense"] != "none")
    assert {s["setting"] for s in result.summary} == set(labels)


def test_single_defense_mode_builds_patch_setting_with_its_controls():
    cfg = _compose("bench", ["defense=patch", "defense.path=demo_yolox_nano", "sweep=null"])
    assert [s.label() for s in build_settings(cfg)] == ["none", "patch(path=demo_yolox_nano)",
                                                       "noise_patch(path=demo_yolox_nano)",
                                                       "grey_patch(path=demo_yolox_nano)"]


def test_worn_patch_is_recorded_by_the_camera(tmp_path):
    """The patch is pasted on the input frame's annotated persons, then the camera captures it: with a CCTV
    camera that rescales the frame, every annotated person still wears one (the regions are counted in the
    input frame, before capture)."""
    from anonlab.engine import run_bench

    cfg = _compose("bench", ["defense=patch", "regions.target=person", "detectors=[yolox_nano]", "limit=1",
                             "capture=cctv_720p_near", "progress=false", "sweep=null"])
    res = run_bench(cfg, progress=False, out=tmp_path)
    rows = {r["setting"]: r for r in res.rows}
    assert set(rows) == {"none", "patch(path=demo_yolox_nano)", "noise_patch(path=demo_yolox_nano)",
                         "grey_patch(path=demo_yolox_nano)"}
    n_persons = rows["none"]["n_gt"]  # annotated persons of bus.jpg, ignore boxes left out (they wear one too)
    assert all(r["n_regions"] >= n_persons > 0 for s, r in rows.items() if s != "none")


@pytest.mark.parametrize("name", ["patch", "noise_patch", "grey_patch"])
def test_defense_is_batch_invariant_leaves_input_and_outside_pixels(name):
    img = load(BUS)
    batch = torch.cat([img, img.flip(-1)])
    boxes = [BOXES, BOXES[:1]]
    d = DEFENSES.build(name, **POSE, seed=3)
    before = batch.clone()
    out = d(batch, Detections.from_list(boxes))
    assert torch.equal(batch, before)
    alone = d(batch[1:], Detections.from_list(boxes[1:]))
    assert torch.equal(out[1:], alone)  # a box's pose depends on (seed, box), not on its batch
    assert torch.equal(d(batch, Detections.empty()), batch)
    changed = (out != batch).any(1)
    assert changed[0].sum() > 1000 and not changed[0, :390].any()  # patches only on the torsos (boxes start y=396)
    assert d.params_json() and DEFENSES.build(name, **POSE, seed=4)(batch, Detections.from_list(boxes)).ne(out).any()


def test_paste_is_differentiable_in_the_patch_only_where_it_lands():
    patch = torch.rand(3, 64, 48, requires_grad=True)
    frames = torch.rand(2, 3, 120, 160, requires_grad=True)
    boxes = torch.tensor([[10.0, 10.0, 70.0, 110.0], [80.0, 5.0, 150.0, 115.0], [20.0, 20.0, 90.0, 100.0]])
    pose = pose_from_uniform(torch.rand(3, 14, generator=torch.Generator().manual_seed(0)), PoseRanges(**POSE))
    out = apply_patch(frames, patch, boxes, torch.tensor([0, 0, 1]), pose=pose)
    out.sum().backward()
    assert patch.grad.abs().sum() > 0
    covered = frames.grad[:, 0] == 0  # pixels taken from the patch get no gradient to the frame
    assert covered[0].sum() > 100 and covered[1].sum() > 100
    assert torch.equal(out.detach()[~covered[:, None].expand_as(out)], frames.detach()[~covered[:, None].expand_as(out)])


def test_save_patch_writes_an_8bit_rgb_png(tmp_path):
    x = torch.rand(3, 5, 7)
    p = save_patch(x, tmp_path / "x.png")
    arr = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8
    assert torch.equal(load_patch(p), (x * 255).round().to(torch.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["patch", "noise_patch", "grey_patch"])
def test_patch_defenses_agree_on_cpu_and_cuda(name):
    img = load(BUS)
    d = DEFENSES.build(name, **POSE)
    cpu = d(img, Detections.from_list([BOXES]))
    gpu = d.cuda()(img.cuda(), Detections.from_list([BOXES], device="cuda")).cpu()
    diff = (cpu.int() - gpu.int()).abs()
    assert diff.max().item() <= 1 and (diff > 0).float().mean().item() < 1e-3
