"""The failing inputs of ../shared/cases (README there says what is right), and the rules they stand for: a per-image
problem goes to run.json's failures (exit 3), a configuration problem is one ``error:`` line (exit 2), ground truth
is clipped to its frame with empty boxes dropped in every loader, and row counts agree with pycocotools' AP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import shared_path
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from anonlab.build import CONF_DIR
from anonlab.camera.scale import median_face_height
from anonlab.datasets import DATASETS, normalize_ground_truth
from anonlab.engine import run_bench
from anonlab.metrics.matching import match_image
from anonlab.types import GroundTruth

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
#: one cheap setting, CenterFace alone
JOB = ["experiment=single", "defense.sigma=4", "detectors=[centerface]", "progress=false"]


def anonlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anonlab.cli.main", *args], capture_output=True, text=True,
                          env=ENV, timeout=600)


def bench_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="bench", overrides=list(overrides))


def folder_job(case: str, annotations: str, *extra: str) -> list[str]:
    root = shared_path(f"cases/{case}")
    return ["dataset=folder", f"dataset.root={root}", f"dataset.annotations={root / annotations}", *JOB, *extra]


# ------------------------------------------------------------------------------------------ configuration: exit 2


@pytest.mark.slow
@pytest.mark.parametrize("args, key, expected", [
    (["bench", "defense.sigmaa=2"], "defense.sigmaa",
     "valid keys in defense=gaussian_blur: mask_scale, shape, sigma, sigma_rel"),
    (["bench", "dataset=pennfudan"], "dataset.root", "`anonlab datasets fetch pennfudan`"),
    (["bench", "dataset=nosuch"], "dataset=nosuch", "valid: att_faces, composite, deepface_pairs, default,"),
    (["bench", "-m", "defense.sigma=2,4", "defense.sigmaa=1"], "defense.sigmaa", "unknown key"),
    (["bench", "seed=abc"], "seed", "must be an integer"),
    (["patch", "eval"], "patches", "is required"),
])
def test_a_configuration_problem_is_one_stderr_line_and_exit_2(tmp_path, args, key, expected):
    proc = anonlab(*args, f"out={tmp_path}")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0] and expected in lines[0], lines
    assert not (tmp_path / "results.parquet").exists()


@pytest.mark.slow
def test_cfg_job_still_reaches_hydra():
    proc = anonlab("bench", "--cfg", "job", "dataset=pennfudan")  # prints the config, ??? and all
    assert proc.returncode == 0 and "root: ???" in proc.stdout, proc.stderr


# ------------------------------------------------------------------------------------------ per image: exit 3


@pytest.mark.slow
def test_face_px_overflow_skips_that_frame_with_its_reason_and_scores_the_other(tmp_path):
    out = tmp_path / "out"
    proc = anonlab("bench", *folder_job("face_px_overflow", "coco.json", "scene.face_px=96"), f"out={out}")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert [f["image"] for f in run["failures"]] == ["far_face_1024x768.jpg"]
    assert "96" in run["failures"][0]["error"] and "max_side=8192" in run["failures"][0]["error"]
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert {r["image"] for r in rows} == {"near_face_320.jpg"}
    assert all(abs(r["face_px"] - 96) <= 1 for r in rows)


@pytest.mark.slow
def test_coco_size_mismatch_is_a_per_image_failure_and_the_control_scores(tmp_path):
    bad = run_bench(bench_cfg(*folder_job("coco_size_mismatch", "coco_stored_size.json")), progress=False,
                    out=tmp_path / "bad")
    assert [f.image for f in bad.failures] == ["o6_wide.jpg"]
    assert "decodes to (H, W)" in bad.failures[0].error and "coco_stored_size.json" in bad.failures[0].error
    assert bad.table.num_rows == 0
    good = run_bench(bench_cfg(*folder_job("coco_size_mismatch", "coco_display_size.json")), progress=False,
                     out=tmp_path / "good")
    assert good.failures == [] and good.n_images == 1


# ------------------------------------------------------------------------------------------ ground truth


def test_wider_zero_area_boxes_are_not_ground_truth():
    listed = (shared_path("cases/wider_zero_area_boxes") / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    n_zero = int(listed.read_text().split("\n")[1]) - 1  # every box but the face has zero width or height
    ds = DATASETS.build("wider_face", root=str(shared_path("cases/wider_zero_area_boxes")))
    s = ds.load(0)
    assert s.image_id == "0--Parade/0_Parade_a_face_and_zero_boxes.jpg"
    assert len(s.gt.faces) == 1 and median_face_height(s.gt) == 64.0
    # the dropped boxes are said (run.json reader_notes), not dropped silently (found by the breaker)
    assert list(s.notes.values()) == [f"{n_zero} face box(es) of zero area inside the frame (degenerate, or wholly "
                                      "outside it) dropped from the ground truth"]
    # the face itself, found perfectly, is all there is to find
    m = match_image(s.gt.faces.numpy(), np.ones(1), s.gt.faces.numpy(), s.gt.ignore_faces.numpy())
    assert (m.tp, m.fp, m.fn) == (1, 0, 0)


@pytest.mark.slow
def test_wider_zero_area_boxes_score_recall_100_and_face_height_64(tmp_path):
    root = shared_path("cases/wider_zero_area_boxes")
    r = run_bench(bench_cfg("dataset=wider_face", f"dataset.root={root}", *JOB), progress=False, out=tmp_path)
    clean = [x for x in r.rows if x["defense"] == "none" and x["image"].endswith("a_face_and_zero_boxes.jpg")]
    assert len(clean) == 1 and clean[0]["n_gt"] == 1 and clean[0]["recall"] == 1.0 and clean[0]["face_px"] == 64.0


def test_boxes_past_the_frame_edge_load_clipped_in_the_folder_loader():
    root = shared_path("cases/box_past_frame_edge")
    full = DATASETS.build("folder", root=str(root), annotations=str(root / "coco_full_extent.json"))
    clipped = DATASETS.build("folder", root=str(root), annotations=str(root / "coco_clipped.json"))
    for i in range(len(full)):
        a, b = full.load(i), clipped.load(i)
        h, w = a.image.shape[-2:]
        assert (a.gt.faces >= 0).all() and (a.gt.faces[:, [0, 2]] <= w).all() and (a.gt.faces[:, [1, 3]] <= h).all()
        torch.testing.assert_close(a.gt.faces, b.gt.faces, atol=0.01, rtol=0)


@pytest.mark.slow
def test_boxes_past_the_frame_edge_give_the_rows_of_the_clipped_control(tmp_path):
    full = run_bench(bench_cfg(*folder_job("box_past_frame_edge", "coco_full_extent.json")), progress=False,
                     out=tmp_path / "full")
    ctrl = run_bench(bench_cfg(*folder_job("box_past_frame_edge", "coco_clipped.json")), progress=False,
                     out=tmp_path / "ctrl")
    cols = ("image", "setting", "n_gt", "n_det", "tp", "fp", "fn", "recall")
    key = lambda rows: sorted(tuple(r[c] for c in cols) for r in rows)  # noqa: E731
    assert key(full.rows) == key(ctrl.rows)
    assert any(r["tp"] > 0 for r in ctrl.rows)  # the detector's correct box counts as found


def test_normalize_ground_truth_clips_drops_empty_boxes_and_keeps_ids_and_flags_aligned():
    faces = torch.tensor([[-10, -5, 20, 30], [5, 5, 5, 40], [200, 10, 260, 50], [90, 90, 150, 130]],
                         dtype=torch.float32)
    gt = GroundTruth(faces=faces, face_ids=torch.tensor([7, 8, 9, 10]),
                     ignore_faces=torch.tensor([False, False, False, True]))
    out = normalize_ground_truth(gt, (100, 120))  # H = 100, W = 120: box 2 is wholly right of it, box 1 is a line
    assert out.faces.tolist() == [[0, 0, 20, 30], [90, 90, 120, 100]]
    assert out.face_ids.tolist() == [7, 10] and out.ignore_faces.tolist() == [False, True]


# ------------------------------------------------------------------------------------------ rows agree with AP


def _coco_counts(images: list[tuple], iou: float, thr: float) -> list[tuple[int, int, int]]:
    """(TP, FP, FN) per image at score >= ``thr`` from pycocotools' own per-image matching (``evaluateImg``), fed
    as :class:`~anonlab.metrics.detection.APAccumulator` feeds it (ignored boxes as iscrowd=1)."""
    from anonlab.metrics.detection import APAccumulator, coco_eval

    acc = APAccumulator(iou=iou)
    for gt, ign, det, score in images:
        acc.add(gt, ign, det, score)
    ev = coco_eval(acc.images, acc.gts, acc.dets, iou)
    out = []
    for k, (gt, ign, _, _) in enumerate(images):
        e = next((x for x in ev.evalImgs if x is not None and x["image_id"] == k + 1), None)
        if e is None:  # no ground truth and no detection
            out.append((0, 0, 0))
            continue
        scores = np.asarray(e["dtScores"])
        above = scores >= thr
        dtm, dtig = e["dtMatches"][0] > 0, e["dtIgnore"][0].astype(bool)
        tp = int((above & dtm & ~dtig).sum())
        fp = int((above & ~dtm & ~dtig).sum())
        det_score = dict(zip(e["dtIds"], scores))
        gtm, gtig = e["gtMatches"][0], e["gtIgnore"].astype(bool)
        found = np.array([m > 0 and det_score[m] >= thr for m in gtm], dtype=bool)
        fn = int((~gtig & ~found).sum())
        out.append((tp, fp, fn))
    return out


_coord = st.integers(0, 12).map(lambda v: v * 5.0)  # a coarse grid: many exact ties in IoU and position


@st.composite
def _image(draw):
    def boxes(n):
        b = []
        for _ in range(n):
            x, y = draw(_coord), draw(_coord)
            b.append([x, y, x + draw(st.integers(1, 8)) * 5.0, y + draw(st.integers(1, 8)) * 5.0])
        return np.array(b, dtype=np.float32).reshape(-1, 4)

    g, d = draw(st.integers(0, 5)), draw(st.integers(0, 7))
    gt = boxes(g)
    ign = np.array(draw(st.lists(st.booleans(), min_size=g, max_size=g)), dtype=bool)
    det = boxes(d)
    scores = np.array(draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), min_size=d, max_size=d)),
                      dtype=np.float32)
    return gt, ign, det, scores


@settings(max_examples=150, deadline=None)
@given(st.lists(_image(), min_size=1, max_size=4), st.sampled_from([0.3, 0.5, 0.75]),
       st.sampled_from([0.0, 0.5, 0.8]))
def test_row_counts_agree_with_pycocotools_matching(images, iou, thr):
    """Random boxes with ignore flags, scores with ties, IoUs with ties: match_image's TP/FP/FN at a score threshold
    equal what COCOeval counts for AP with the same boxes, IoU and threshold."""
    expected = _coco_counts(images, iou, thr)
    for (gt, ign, det, scores), want in zip(images, expected):
        keep = scores >= thr
        m = match_image(det[keep], scores[keep], gt, ign, iou)
        assert (m.tp, m.fp, m.fn) == want


@pytest.mark.parametrize("override, key", [
    ("device=gpu", "device must be"),
    ("device=cuda:abc", "device must be"),
    ("regions.threshold=5", "regions.threshold must be"),
    ("sweep=[gaussian_blur]", "sweep item 0 must be a mapping with a 'name' (a defense)"),
    ("detectors.centerface.max_side=320", "set a detector's parameter with +detector_overrides.centerface.max_side=320"),
])
def test_bad_values_found_by_a_new_user_are_one_line_exit_2(override, key):
    """Values a new user tried (the review of 2026-11-30) that used to end in a traceback or be ignored."""
    extra = ["regions.source=detector"] if override.startswith("regions.") else []
    proc = subprocess.run([sys.executable, "-m", "anonlab.cli.main", "bench", override, *extra, "progress=false",
                           "detectors=[centerface]", "limit=1"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and key in lines[0], proc.stderr


def test_broken_links_in_a_folder_are_failures_not_dropped(tmp_path):
    """A symlink loop and a dangling link (found by a new user: they vanished from the job) are listed as failures."""
    from images import BUS, package_file

    (tmp_path / "bus.jpg").write_bytes(package_file(*BUS).read_bytes())
    (tmp_path / "loop1.jpg").symlink_to(tmp_path / "loop2.jpg")
    (tmp_path / "loop2.jpg").symlink_to(tmp_path / "loop1.jpg")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "anonlab.cli.main", "bench", "dataset=folder",
                           f"dataset.root={tmp_path}", "detectors=[centerface]", "progress=false", f"out={out}",
                           "sweep=[{name: pixelate, blocks: 8}]"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 3, proc.stderr
    failed = {f["image"] for f in json.loads((out / "run.json").read_text())["failures"]}
    assert failed == {"loop1.jpg", "loop2.jpg", "gone.png"}
