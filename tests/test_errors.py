"""Configuration mistakes a new user makes on the command line: each is one line naming the key (or file) and the
form it takes, exit 2, before any work. Found by the breaker; the composition checks run through
:func:`anonlab.cli.config_check.config_error` (what ``anonlab bench`` prints after ``error:``), the rest through
the real command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from images import ASTRONAUT, package_file

from anonlab.build import CONF_DIR, BenchError, build_camera, build_settings
from anonlab.cli.config_check import config_error

RELEASES = "valid: h264, h265, jpeg, none, social"


def anonlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anonlab.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)


@pytest.mark.parametrize(("overrides", "says"), [
    # a mapping where the config holds a list: Hydra said only "Error merging override sweep={...}"
    (["sweep={name: pixelate, blocks: 8}"], "sweep={name: pixelate, blocks: 8}: sweep takes a list of defense "
                                            "settings [{name: DEFENSE, PARAM: value or [values]}, ...]"),
    (["detectors={yunet: 0.5}"], "detectors={yunet: 0.5}: detectors takes a list of conf/detector names"),
    # a config group given no name, several names or a number: Hydra tracebacks (exit 1), or, for a list of names,
    # every file merged silently with the last one winning
    (["release=null"], f"release=null: release is a config group: give one option name, a file "
                       f"conf/release/NAME.yaml (release=none: no release stage); {RELEASES}"),
    (["release=5"], "release=5: release is a config group: give one option name"),
    (["release=[jpeg,h264]"], f"{RELEASES}; to run several, one job each: -m release=jpeg,h264"),
    (["capture=null"], "capture=null: capture is a config group: give one option name"),
    # a key of another option of the group: release=none has no settings
    (["release=none", "release.quality=50"], "release.quality: unknown key 'quality'; release=none has no keys; the "
                                             "release options with 'quality': h264, h265, jpeg, social (e.g. "
                                             "release=h264 release.quality=50)"),
    (["release=jpeg", "release.qualty=50"], "release.qualty: unknown key 'qualty'; valid keys in release=jpeg: clip, "
                                            "codec, crf, quality, resolution"),
    # a group of settings replaced by one value: a traceback when the job read it
    (["regions=null"], "regions=null: regions is a group of settings (source, target, threshold), not one value"),
    (["loader=5"], "loader=5: loader is a group of settings (decode, max_pixels, pad_to, workers)"),
    # a list where a mapping belongs: the message had the two forms backwards (review, 2026-11-30)
    (["regions=[a]"], "regions=[a]: regions takes a mapping, not a list"),
    (["loader=[1,2]"], "loader=[1,2]: loader takes a mapping, not a list"),
    # an empty mapping set to a number passed the check and was a TypeError later
    (["detector_overrides=5"], "detector_overrides=5: detector_overrides is a mapping (detector_overrides.NAME=...), "
                               "or null; not 5"),
])
def test_a_value_of_the_wrong_form_names_the_key_and_its_form(overrides, says):
    problem = config_error(CONF_DIR, "bench", overrides)
    assert problem is not None and "\n" not in problem, problem
    assert says in problem, problem


@pytest.mark.parametrize("overrides", [["release=none"], ["release=jpeg", "release.quality=50"],
                                       ["sweep=null"], ["detector_overrides=null"], ["capture=cctv_720p_far"]])
def test_the_documented_forms_still_compose(overrides):
    assert config_error(CONF_DIR, "bench", overrides) is None


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("bench", overrides=overrides)


@pytest.mark.parametrize(("overrides", "says"), [
    # composes (a sweep may be any value to Hydra); a number was a TypeError traceback, a string was iterated
    # letter by letter ("each sweep item needs a 'name'; got a")
    (["sweep=5"], "sweep must be a list of defense settings [{name: DEFENSE, PARAM: value or [values]}, ...]"),
    (["sweep=abc"], "or null for the single defense setting, got 'abc'"),
    (["sweep=[{name: pixelate}, 5]"], "sweep item 1 must be a mapping with a 'name' (a defense)"),
    # a misspelt parameter was "Pixelate.__init__() got an unexpected keyword argument 'blockz'"
    (["sweep=[{name: pixelate, blockz: 3}]"], "sweep item 0 (pixelate): unknown key 'blockz' for "
                                              "anonlab.defenses.Pixelate; valid keys: blocks, block_px, shape"),
])
def test_a_bad_sweep_is_one_line_naming_its_form(overrides, says):
    with pytest.raises(BenchError) as e:
        build_settings(_compose(overrides))
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_flag_that_is_not_true_or_false_is_refused():
    from anonlab.job import read_options

    with pytest.raises(BenchError, match=r"^progress must be true or false, got 'maybe'$"):
        read_options(_compose(["progress=maybe"]))
    assert read_options(_compose(["progress=false"])).batch_size == 1


def test_a_key_added_to_a_release_without_settings_names_its_valid_keys():
    with pytest.raises(BenchError, match=r"^release: unknown key 'qualty' for anonlab.camera.IdentityRelease; valid "
                                         r"keys: none \(it takes no settings\)$"):
        build_camera(_compose(["+release.qualty=3"]))


@pytest.mark.slow
def test_the_bench_command_says_it_in_one_line_before_any_work(tmp_path):
    for args in (["sweep={name: pixelate, blocks: 8}"], ["sweep=5"], ["release=null"]):
        proc = anonlab("bench", *args, "detectors=[haar]", f"out={tmp_path}")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: sweep" if "sweep" in args[0]
                                                                                else "error: release"), proc.stderr
        assert not (tmp_path / "results.parquet").exists()


@pytest.mark.slow
@pytest.mark.parametrize("top", [True, False], ids=["some_on_top", "all_in_subfolders"])
def test_coco_images_in_subfolders_without_recursive_name_the_option(tmp_path, top):
    """The breaker's folder: images in sub-folders, a COCO file naming them, ``recursive`` not set. With an image
    directly in the root too, each nested one failed as "does not exist" (it does); now one line naming
    dataset.recursive=true, exit 2, as when no image sits directly in the root."""
    root = tmp_path / "frames"
    (root / "cam1").mkdir(parents=True)
    names = ["cam1/a.png", "b.png"] if top else ["cam1/a.png"]
    for n in names:
        shutil.copy(package_file(*ASTRONAUT), root / n)
    ann = tmp_path / "coco.json"
    ann.write_text(json.dumps({
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "categories": [{"id": 1, "name": "face"}],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [170, 20, 120, 160]}
                        for i, _ in enumerate(names)]}))
    job = ["dataset=folder", f"dataset.root={root}", f"dataset.annotations={ann}", "detectors=[haar]", "sweep=null",
           f"out={tmp_path / 'out'}"]
    proc = anonlab("bench", *job)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dataset: ") and lines[0].endswith(
        "set dataset.recursive=true" if top else "(set dataset.recursive=true to search subfolders)"), lines
    if top:
        assert f"{ann} lists 1 image(s) in subfolders of {root} (e.g. 'cam1/a.png')" in lines[0]
    assert not (tmp_path / "out" / "results.parquet").exists()
    proc = anonlab("bench", *job, "dataset.recursive=true")
    assert proc.returncode == 0, proc.stderr
