"""Every config of every group instantiates to its registered class; conf/ and the registries agree;
experiments compose."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from conftest import require_packages, shared_path
from hydra import compose, initialize_config_dir
from images import BUS, package_file

from anonlab.build import CONF_DIR
from anonlab.camera import CAPTURES, RELEASES
from anonlab.datasets import DATASETS
from anonlab.defenses import DEFENSES
from anonlab.detectors import DETECTORS

REGISTRIES = {"dataset": DATASETS, "capture": CAPTURES, "release": RELEASES, "defense": DEFENSES, "detector": DETECTORS}
#: the bench group each conf folder is chosen by (conf/detector/ files are the `region_detector` group of bench.yaml)
BENCH_GROUP = {"detector": "region_detector"}
CASES = [(g, p.stem) for g in REGISTRIES for p in sorted((CONF_DIR / g).glob("*.yaml"))]
NEEDS_SHARED: set[str] = set()  # every detector config runs without ../shared (open models are packaged)
#: other configs whose model weights live in ../shared (not packaged)
SHARED_WEIGHTS = {("defense", "cloak"): "models/mobilefacenet_foamliu.onnx"}
# configs with mandatory values (???): what a user would pass
REQUIRED = {
    ("dataset", "folder"): lambda tmp: [f"dataset.root={package_file(*BUS).parent}"],
    ("dataset", "footage"): lambda tmp: [f"dataset.paths=[{package_file(*BUS).parent}]"],
    ("dataset", "pennfudan"): lambda tmp: [f"dataset.root={shared_path('datasets/pennfudanped_penn/PennFudanPed')}"],
    ("dataset", "wider_face"): lambda tmp: [f"dataset.root={shared_path('datasets/widerface_val_parade_subset')}"],
    ("dataset", "mot"): lambda tmp: [f"dataset.root={shared_path('datasets/pets09_s2l1_vtest')}"],
    ("dataset", "video"): lambda tmp: [f"dataset.path={shared_path('datasets/pets09_s2l1_vtest/vtest.avi')}"],
    ("dataset", "inria"): lambda tmp: [f"dataset.root={_inria_fixture(tmp)}"],
    ("dataset", "composite"): lambda tmp: [
        f"dataset.pennfudan_root={shared_path('datasets/pennfudanped_penn/PennFudanPed')}",
        "dataset.max_sources=2", "dataset.n_scenes=2"],
    ("dataset", "att_faces"): lambda tmp: [f"dataset.root={shared_path('datasets/att_orl_faces')}"],
    ("dataset", "deepface_pairs"): lambda tmp: [f"dataset.root={shared_path('datasets/deepface_unit_faces')}"],
    ("dataset", "facenet_test_images"): lambda tmp: [
        f"dataset.root={shared_path('datasets/facenet_pytorch_test_images')}"],
    ("dataset", "identity_folder"): lambda tmp: [f"dataset.root={_identity_folder(tmp)}"],
    ("dataset", "lfw"): lambda tmp: [f"dataset.root={_lfw_fixture(tmp)}"],
    ("detector", "yolo"): lambda tmp: [
        f"region_detector.weights={package_file('ultralytics', 'cfg', 'models', 'v8', 'yolov8.yaml')}"],
}


def _inria_fixture(tmp: Path) -> Path:
    """The official-format INRIA annotation fixture with tiny synthetic images written beside it."""
    from test_datasets_pedestrian import inria_fixture

    return inria_fixture(tmp)


def _identity_folder(tmp: Path) -> Path:
    from test_identity_data import identity_folder

    return identity_folder(tmp)


def _lfw_fixture(tmp: Path) -> Path:
    from test_identity_data import lfw_fixture

    return lfw_fixture(tmp)


def _compose(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="bench", overrides=overrides)


def test_conf_dir_is_found_from_the_package():
    assert (CONF_DIR / "bench.yaml").is_file()


@pytest.mark.parametrize(("group", "name"), CASES, ids=[f"{g}={n}" for g, n in CASES])
def test_every_config_instantiates(group: str, name: str, tmp_path: Path) -> None:
    if group == "detector" and name in NEEDS_SHARED:
        shared_path("models")
    if (group, name) in SHARED_WEIGHTS:
        shared_path(SHARED_WEIGHTS[(group, name)])
    if group == "detector":
        require_packages(name)
    key = BENCH_GROUP.get(group, group)
    cfg = _compose([f"{key}={name}", *REQUIRED.get((group, name), lambda tmp: [])(tmp_path)])
    obj = hydra.utils.instantiate(cfg[key], _convert_="all")
    assert isinstance(obj, REGISTRIES[group].get(name))
    assert getattr(type(obj), "name", name) == name


@pytest.mark.parametrize("group", REGISTRIES)
def test_conf_group_matches_registry(group: str) -> None:
    assert {p.stem for p in (CONF_DIR / group).glob("*.yaml")} == set(REGISTRIES[group].names())


def test_region_detector_group_is_the_detector_configs() -> None:
    """`region_detector=NAME` picks conf/detector/NAME.yaml: one config per detector, two groups naming it."""
    assert (CONF_DIR / "region_detector").resolve() == (CONF_DIR / "detector").resolve()
    cfg = _compose(["regions.source=detector", "region_detector=haar"])
    assert isinstance(hydra.utils.instantiate(cfg.region_detector), DETECTORS.get("haar"))


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_builds_its_settings(experiment: str) -> None:
    from anonlab.build import build_settings

    cfg = _compose([f"experiment={experiment}"])
    for item in cfg.get("sweep") or []:  # a setting whose model lives in ../shared (the device run lacks it)
        if ("defense", item.name) in SHARED_WEIGHTS:
            shared_path(SHARED_WEIGHTS[("defense", item.name)])
    settings = build_settings(cfg)
    assert settings[0].name == "none"
    assert len({s.label() for s in settings}) == len(settings)
    for name in cfg.detectors:
        DETECTORS.get(name)


def test_default_experiment_has_five_defenses_three_strengths_each() -> None:
    from anonlab.build import build_settings

    settings = build_settings(_compose([]))
    per_defense: dict[str, int] = {}
    for s in settings[1:]:
        per_defense[s.name] = per_defense.get(s.name, 0) + 1
    assert len(per_defense) >= 5 and min(per_defense.values()) >= 3
    cfg = _compose([])
    kinds = [DETECTORS.get(n).kind for n in cfg.detectors]
    assert kinds.count("face") >= 5 and kinds.count("person") >= 2


def test_every_conf_file_is_valid_yaml_with_target() -> None:
    for group in REGISTRIES:
        for p in (CONF_DIR / group).glob("*.yaml"):
            assert "_target_:" in Path(p).read_text(), p


def test_patch_eval_conditions_compose_with_bench() -> None:
    """Each `anonlab patch eval` condition's extra bench overrides (capture, release) name groups bench.yaml has."""
    from omegaconf import OmegaConf

    from anonlab.build import build_camera

    conditions = OmegaConf.load(CONF_DIR / "patch" / "eval.yaml").conditions
    stages = set()
    for name, spec in conditions.items():
        cfg = _compose([str(o) for o in spec.get("bench", [])])
        capture, release = build_camera(cfg)
        stages.add((capture.name, release.name))
    assert {("none", "social"), ("none", "jpeg"), ("cctv_720p_near", "none")} <= stages


def test_a_release_given_as_capture_is_refused_in_one_line() -> None:
    from anonlab.build import BenchError, build_camera

    cfg = _compose(["capture._target_=anonlab.camera.SocialRelease"])
    with pytest.raises(BenchError, match=r"^capture: SocialRelease is not a capture stage"):
        build_camera(cfg)
