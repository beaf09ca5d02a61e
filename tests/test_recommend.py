"""``anonlab recommend``: real photos (the default dataset's, found inside installed packages, never copied into the
repo) through the real engine, detectors and recognizer; then ``anonlab redact`` with the written preset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image
from test_redact import _frame, default_photos, make_video

from anonlab.build import CONF_DIR
from anonlab.cli.main import main
from anonlab.datasets.footage import FootageDataset, even_sample
from anonlab.metrics.bootstrap import bootstrap_ratio
from anonlab.recommend.core import choose, exact_interval, faces_needed, interval


def _photos(tmp: Path, scale: float = 1) -> Path:
    """The default photos in a folder of ``tmp`` (links; or PNGs resized ``scale`` x, antialiased bicubic)."""
    d = tmp / f"photos_x{scale}"
    d.mkdir()
    for name, src in default_photos().items():
        if scale == 1:
            (d / name).symlink_to(src)
        else:
            im = Image.open(src).convert("RGB")
            im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC).save(d / f"{Path(name).stem}.png")
    return d


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# --------------------------------------------------------------------------------------------------- sampling

def test_even_sample_is_bounded_evenly_spaced_and_seeded():
    for n, k in [(10, 20), (100, 7), (1000, 64), (65, 64)]:
        for seed in (0, 1, 2):
            idx = even_sample(n, k, seed)
            assert len(idx) == min(n, k) and idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < n
            assert idx == even_sample(n, k, seed)  # same seed, same frames
            if n > k:
                gaps = np.diff(idx)
                assert gaps.max() - gaps.min() <= 1  # evenly spaced, to the frame
                assert idx[0] < n / k  # starts within the first step
    assert even_sample(1000, 10, 0) != even_sample(1000, 10, 1)


def test_footage_mixes_images_folders_and_videos(tmp_path):
    folder = tmp_path / "shoot"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").symlink_to(default_photos()["zidane.jpg"])
    (folder / "sub" / "b.png").symlink_to(default_photos()["astronaut.png"])
    clip = tmp_path / "clip.mp4"
    make_video(clip, [_frame("grace_hopper.jpg", 128)] * 30)
    ds = FootageDataset([str(folder), str(clip)], max_frames=8, seed=3)
    assert len(ds) == 8  # 2 images + 30 frames, evenly sampled
    refs = ds.refs()
    assert len(set(refs)) == 8 and sum("#" in r for r in refs) >= 6
    for i in (0, len(ds) - 1):
        s = ds.load(i)
        assert s.image.dtype.is_floating_point is False and s.image.shape[0] == 3 and s.gt.pseudo_gt
    assert FootageDataset([str(folder), str(clip)], max_frames=8, seed=3).refs() == refs
    assert len(FootageDataset([str(folder), str(clip)], max_frames=100).refs()) == 32


# ------------------------------------------------------------------------------------------------- intervals

def test_interval_is_never_narrower_than_the_exact_one():
    # every face missed: the bootstrap over frames collapses to [0, 0] whatever the number of faces
    for n in (3, 7, 30):
        per_num, per_den = [0.0] * n, [1.0] * n
        assert bootstrap_ratio(np.array(per_num), np.array(per_den))[1] == 0.0
        _, lo, hi = interval(per_num, per_den, seed=0)
        assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n))  # Clopper-Pearson, k = 0
        assert faces_needed(hi + 1e-9) <= n < faces_needed(hi - 1e-3) + 1
    # more faces at the same rate: a narrower interval
    widths = [np.subtract(*exact_interval(k, n)[::-1]) for k, n in [(1, 5), (4, 20), (20, 100)]]
    assert widths == sorted(widths, reverse=True)


# ---------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("case", ["missing", "empty", "garbage_video", "not_media", "unknown_threat", "adaptive"])
def test_bad_input_is_one_line(case, tmp_path, capsys):
    argv = ["recommend", "--out", str(tmp_path / "out"), "--no-progress"]
    if case == "missing":
        argv.append(str(tmp_path / "nowhere"))
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        argv.append(str(tmp_path / "empty"))
    elif case == "garbage_video":
        (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
        argv.append(str(tmp_path / "clip.mp4"))
    elif case == "not_media":
        (tmp_path / "notes.txt").write_text("hello")
        argv.append(str(tmp_path / "notes.txt"))
    else:
        argv += [str(default_photos()["zidane.jpg"]), "--threat", "nope" if case == "unknown_threat" else "adaptive"]
    code, _, err = _run(argv, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert not (tmp_path / "out").exists()  # nothing written
    if case == "unknown_threat":
        assert "basic" in lines[0] and "safe-city" in lines[0]


# ------------------------------------------------------------------------------------------------ acceptance

@pytest.mark.slow
def test_default_images_basic_and_safe_city_end_in_a_setting_that_redact_verifies(tmp_path, capsys):
    photos = _photos(tmp_path)
    picks = {}
    for threat in ("safe-city", "basic"):
        out = tmp_path / threat
        code, stdout, err = _run(["recommend", str(photos), "--threat", threat, "--out", str(out), "--no-progress"],
                                 capsys)
        assert code == 0, stdout + err
        assert "recommended:" in stdout
        evidence = json.loads((out / "recommend.json").read_text())
        assert evidence["n_frames"] == 5 and evidence["n_faces"] > 0 and evidence["pseudo_gt"]
        pick = next(c for c in evidence["candidates"] if c["setting"] == evidence["recommended_setting"])
        assert pick["passed"] and all(a["hi"] <= a["bound"] for a in pick["adversaries"])
        assert all(c["passed"] is False for c in evidence["candidates"]
                   if c["pixel_change"] < pick["pixel_change"] and c["setting"] != evidence["weakest_passing_setting"])
        thumbs = sorted(out.glob("thumb_*.png"))
        assert len(thumbs) == 2 * len(evidence["thumbnails"]) > 0
        preset = out / "recommend.yaml"
        assert yaml.safe_load(preset.read_text()) == evidence["recommendation"]
        picks[threat] = pick
        # the preset, unchanged, redacts the same photos and the verification pass finds no leak
        code, stdout, err = _run(["redact", "--preset", str(preset), str(photos), "--out",
                                  str(tmp_path / f"redacted-{threat}"), "--no-progress"], capsys)
        assert code == 0, stdout + err
        assert json.loads((tmp_path / f"redacted-{threat}" / "leaks.json").read_text()) == []
    # a stronger threat model never gets a weaker setting (pixel change measured on the same frames)
    assert picks["safe-city"]["pixel_change"] >= picks["basic"]["pixel_change"]


def _study(footage: Path):
    """A blur-strength ladder (sigma in pixels, so a larger face needs a larger sigma) against face detectors and
    dlib's recognizer: the recommendation the physics test compares."""
    from anonlab.recommend import recommend

    rc = OmegaConf.load(CONF_DIR / "recommend.yaml")
    rc.ladders = [{"defense": "gaussian_blur", "param": "sigma", "values": [2, 4, 8, 12, 16, 24, 32, 48, 64]},
                  {"defense": "solid", "param": None, "values": [None]}]
    rc.progress = False
    threat = OmegaConf.create({
        "name": "physics", "detectors": {"face": ["yunet", "mtcnn", "dlib_hog"], "person": []},
        "detector_overrides": {"mtcnn": {"threshold": 0.8}},
        "identification": [{"recognizer": "dlib_resnet", "attack": "located"}],
        # looser than conf/threat's: the half-size photos hold fewer faces the panel finds (0 of 5: upper end 0.52)
        "bounds": {"recall": 0.55, "identification_margin": 0.55}})
    return recommend([str(footage)], threat, rc)


@pytest.mark.slow
def test_larger_faces_never_get_a_weaker_setting(tmp_path):
    # the photos at half size and as they are (2x larger faces; upscaling them instead costs 4x the detector time)
    small, large = _study(_photos(tmp_path, 0.5)), _study(_photos(tmp_path, 1))
    assert small.pick is not None and large.pick is not None, (small.why, large.why)
    order = {r.candidate.label: (r.candidate.ladder, r.candidate.step) for r in small.rows}
    # blur ladder first, solid last: the strength order is (ladder, step)
    assert order[large.pick.label] >= order[small.pick.label], (small.pick.label, large.pick.label)
    # and without the identification adversary (a weaker threat model) the pick on the same frames is no stronger
    basic_rows = [type(r)(r.candidate, r.change, [a for a in r.adversaries if a.kind == "detector"])
                  for r in large.rows]
    weaker, _ = choose(basic_rows)
    assert weaker is not None and weaker.change <= next(r.change for r in large.rows
                                                         if r.candidate.label == large.pick.label)
