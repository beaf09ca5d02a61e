"""The open models really land in a built wheel (package data), with their licence texts and README."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from anonlab import weights

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_the_packaged_models(tmp_path):
    """``pip wheel`` of a copy of the source tree (no network, no build isolation: setuptools from this env)."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src_tree"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "conf", src / "conf")
    shutil.copytree(REPO / "src", src / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("anonlab-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for spec in (s for s in weights.KNOWN.values() if s.packaged):
            member = f"anonlab/models/{spec.file}"
            assert member in names and f"anonlab/models/{spec.licence_file}" in names
            assert z.read(member) == (weights.PACKAGE_DIR / spec.file).read_bytes()
        assert "anonlab/models/README.md" in names and "anonlab/conf/detector/nanodet_m.yaml" in names


def test_open_detectors_build_without_shared_or_cache(tmp_path, monkeypatch):
    """The fault of issue 11: on a fresh clone (no ../shared, empty cache) `anonlab bench` stopped at
    "yunet weights 'face_detection_yunet_2023mar.onnx' not found". Every packaged detector now builds."""
    from anonlab.detectors import DETECTORS

    monkeypatch.setenv("ANONLAB_SHARED", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("ANONLAB_WEIGHTS", raising=False)
    for name in ("yunet", "ultraface", "yolox_nano", "nanodet_m"):
        det = DETECTORS.build(name)
        assert det.weights_path.parent == weights.PACKAGE_DIR, name
