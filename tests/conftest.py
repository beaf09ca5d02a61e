"""Shared fixtures: devices, the ../shared data helper, and a no-network guard."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

# as the `anonlab` command does (cli/main.py): torch's idle threads sleep instead of spinning, before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

_NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, _NO_CUDA])])
def device(request) -> torch.device:
    return torch.device(request.param)


def shared_path(rel: str) -> Path:
    """A path inside ../shared (or $ANONLAB_SHARED); skips the test, naming the path, when it is absent.
    Real models and data live there and are never copied into the repo.

    A data set folder (``datasets/<name>``, or a path inside it) counts as present only with its ``SHA256SUMS``:
    the device run carries single files of some sets (``benchmarks/device/wheels.sh``: PETS09's vtest.avi), and a
    test of the whole set must skip there rather than fail on the missing rest.
    """
    root = Path(os.environ.get("ANONLAB_SHARED", REPO.parent / "shared"))
    p = root / rel
    if not p.exists():
        pytest.skip(f"{p} not found: set ANONLAB_SHARED or place shared/ beside the checkout")
    parts = Path(rel).parts
    sums = root.joinpath(*parts[:2], "SHA256SUMS")
    if len(parts) >= 2 and parts[0] == "datasets" and p.is_dir() and not sums.exists():
        pytest.skip(f"{sums.parent} is a partial copy (no SHA256SUMS): the whole data set is needed")
    return p


#: detectors whose packages the device run leaves out (benchmarks/device/wheels.txt: over its travel limit)
DEVICE_OPTIONAL = {"dlib_hog": ("dlib",), "dlib_cnn": ("dlib", "face_recognition_models"),
                   "dlib_resnet": ("dlib", "face_recognition_models")}


def require_packages(detector: str) -> None:  # a detector or recognizer name
    """Skip, naming the package, when ``detector`` needs one of :data:`DEVICE_OPTIONAL`'s packages and it is not
    installed (only the device run lacks them; CI installs every dependency, so there nothing is skipped)."""
    for module in DEVICE_OPTIONAL.get(detector, ()):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{detector} needs {module!r}, which is not installed (the device run leaves it out)")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never reach the network: any non-UNIX socket connect raises."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family != socket.AF_UNIX:
            # an OSError, as a real offline machine would give, so code under test takes its offline path
            raise ConnectionRefusedError(f"network access attempted in a test: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
