"""Adding a component is one module plus one config, and the conformance suite picks it up: shown on a throwaway
copy of the checkout, exactly as the README's "Adding ..." section tells a newcomer to do it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: README "Adding a defense": the module and the config a newcomer writes (an inverted-colour redaction)
DEFENSE_MODULE = '''
"""Colour inversion inside each region (an example defense)."""
from torch import Tensor

from anonlab.defenses.base import DEFENSES, RegionDefense
from anonlab.defenses.regions import Regions


@DEFENSES.register("invert")
class Invert(RegionDefense):
    """255 - pixel inside every region; ``images`` uint8 (B, 3, H, W) RGB."""

    def apply(self, images: Tensor, regions: Regions) -> Tensor:
        return images.where(~regions.mask, 255 - images)
'''
DEFENSE_CONF = "_target_: anonlab.defenses.invert.Invert\nshape: rect\nmask_scale: 1.0\n"

#: README "Adding a recognizer": dlib's descriptor re-registered under a new name with its own operating point
RECOGNIZER_MODULE = '''
"""dlib's descriptor at a stricter operating point (an example recognizer)."""
from typing import ClassVar

from anonlab.recognizers.base import RECOGNIZERS
from anonlab.recognizers.dlib_resnet import DlibResNet


@RECOGNIZERS.register("dlib_strict")
class DlibStrict(DlibResNet):
    threshold: ClassVar[float | None] = 0.5
'''
RECOGNIZER_CONF = "_target_: anonlab.recognizers.dlib_strict.DlibStrict\n"


#: README "Adding a camera stage": a release that posts the footage in greyscale
RELEASE_MODULE = '''
"""Posting in greyscale (an example release stage): ITU-R BT.601 luma replicated to three channels."""
import torch
from torch import Tensor

from anonlab.camera.base import RELEASES, ReleaseStage
from anonlab.types import check_images


@RELEASES.register("greyscale")
class GreyscaleRelease(ReleaseStage):
    def release(self, images: Tensor) -> Tensor:
        check_images(images, "release input")
        w = torch.tensor([0.299, 0.587, 0.114], device=images.device)[:, None, None]
        y = (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        return y.expand_as(images).contiguous()
'''
RELEASE_CONF = "_target_: anonlab.camera.greyscale.GreyscaleRelease\n"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the checkout's source, configs, embedded data and tests."""
    root = tmp_path_factory.mktemp("checkout")
    for part in ("src", "conf", "datasets", "tests"):
        shutil.copytree(REPO / part, root / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _conformance(root: Path, test_file: str, select: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select,
                           f"tests/{test_file}", "-rA"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("group, name, module, conf, test_file, select", [
    ("defense", "invert", DEFENSE_MODULE, DEFENSE_CONF, "test_registry_conformance.py", "defense_contract and invert"),
    ("recognizer", "dlib_strict", RECOGNIZER_MODULE, RECOGNIZER_CONF, "test_recognizer_conformance.py", "dlib_strict"),
    ("release", "greyscale", RELEASE_MODULE, RELEASE_CONF, "test_registry_conformance.py",
     "release_contract and greyscale"),
])
def test_one_module_and_one_config_join_the_conformance_suite(checkout, group, name, module, conf, test_file,
                                                              select):
    package = {"defense": "defenses", "recognizer": "recognizers", "release": "camera"}[group]
    (checkout / "src" / "anonlab" / package / f"{name}.py").write_text(textwrap.dedent(module))
    (checkout / "conf" / group / f"{name}.yaml").write_text(conf)
    proc = _conformance(checkout, test_file, select)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(rf"^PASSED tests/{test_file}::\S*\b{name}\b", proc.stdout, re.M), proc.stdout[-3000:]
