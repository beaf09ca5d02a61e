"""The results store and the engine's data path: shards, resume after a real kill, split jobs, the decode
loader, reduced precision, and the SLURM launcher config — with real detectors on real images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir
from images import BUS, package_file
from omegaconf import open_dict

from anonlab.build import CONF_DIR, BenchError
from anonlab.engine import run_bench
from anonlab.io.images import decode_on, read_image
from anonlab.loader import iter_batches
from anonlab.metrics.summary import summarize
from anonlab.store import (
    EVIDENCE_COLUMNS,
    RESULT_SCHEMA,
    Chunk,
    ShardStore,
    plan_chunks,
    read_results,
)
from anonlab.store.shards import FAULT_ENV

BUS_JPG = package_file(*BUS)

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
#: default dataset (5 photos), CenterFace only, 3 settings; one image per shard
JOB = ["detectors=[centerface]", "sweep=[{name: gaussian_blur, sigma: null, sigma_rel: 0.5}, "
       "{name: pixelate, blocks: 4}]", "store.shard_images=1", "progress=false"]


def bench_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="bench", overrides=list(overrides))


def anonlab_bench(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "anonlab.cli.main", "bench", *args], env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_plan_chunks_covers_every_image_once_across_splits():
    full = plan_chunks(10, 3)
    assert full == [Chunk(0, 3), Chunk(3, 6), Chunk(6, 9), Chunk(9, 10)]
    parts = [plan_chunks(10, 3, i, 3) for i in range(3)]
    assert sorted(c.start for p in parts for c in p) == [0, 3, 6, 9]
    with pytest.raises(ValueError, match="split.index must be in"):
        plan_chunks(10, 3, 3, 3)
    with pytest.raises(ValueError, match="shard_images must be >= 1"):
        plan_chunks(10, 0)


@pytest.mark.parametrize("fault, n_done", [("kill_after_write:2", 2), ("kill_mid_write:3", 2)])
def test_killed_run_resumes_to_exactly_the_rows_of_an_uninterrupted_run(fault, n_done, tmp_path):
    """A run SIGKILLed at a fixed point (after its 2nd shard, or inside its 3rd write with the temporary file
    complete and not yet renamed: ``store.shards.FAULT_ENV``) resumes to exactly the rows of a run never killed."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    ref = anonlab_bench(*JOB, f"out={full}")
    run = anonlab_bench(*JOB, f"out={killed}", env={**ENV, FAULT_ENV: fault})
    _, err = run.communicate(timeout=600)
    assert run.returncode == -signal.SIGKILL, err
    done_at_kill = {p.name: p.stat().st_mtime_ns for p in killed.glob("shards/*/part-*.parquet")}
    assert len(done_at_kill) == n_done
    temps = list(killed.glob("shards/*/.part-*"))
    assert len(temps) == (1 if "mid_write" in fault else 0)  # the killed writer's complete but unrenamed file
    assert not (killed / "results.parquet").exists()

    assert ref.wait(timeout=600) == 0, ref.stderr.read()
    resumed = anonlab_bench(*JOB, f"out={killed}")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"resuming: {n_done} of 5 result shards already in" in err
    assert not list(killed.glob("shards/*/.part-*"))  # the temporary file was removed, never taken as a shard
    for p in killed.glob("shards/*/part-*.parquet"):  # finished shards were not recomputed
        if p.name in done_at_kill:
            assert p.stat().st_mtime_ns == done_at_kill[p.name]

    a, b = pq.read_table(full / "results.parquet"), pq.read_table(killed / "results.parquet")
    assert a.num_rows == b.num_rows == 5 * 3  # 5 images x (none + 2 settings) x 1 detector: no loss, no duplicate
    assert a.equals(b)
    assert pq.read_table(full / "summary.parquet").equals(pq.read_table(killed / "summary.parquet"))

    # a re-run of a finished job computes nothing and rewrites the same results
    again = anonlab_bench(*JOB, f"out={killed}")
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0 and "resuming: 5 of 5" in err
    assert pq.read_table(killed / "results.parquet").equals(a)


def test_split_jobs_merge_to_the_full_run_and_its_summary(tmp_path):
    cfg = bench_cfg(*JOB, "limit=3")
    full = run_bench(cfg, progress=False, out=tmp_path / "full")
    parts = []
    for i in range(2):
        with open_dict(cfg):
            cfg.split.index, cfg.split.count = i, 2
        parts.append(run_bench(cfg, progress=False, out=tmp_path / f"part{i}"))
    assert [p.n_images for p in parts] == [2, 1]  # shards 0 and 2, then shard 1
    key = [("image", "ascending"), ("setting", "ascending")]
    merged_parts = pa.concat_tables([p.table for p in parts]).sort_by(key)
    assert merged_parts.equals(full.table.sort_by(key))
    by_hash = {r["config_hash"]: r for r in full.summary}
    merged_summary = summarize(merged_parts)
    assert len(merged_summary) == len(by_hash) == 3
    for r in merged_summary:
        assert r == by_hash[r["config_hash"]]
    assert full.summary[0]["setting"] == "none" and full.summary[0]["recall"] == 1.0


def test_reader_reads_unfinished_jobs_only_when_asked(tmp_path):
    store = ShardStore(tmp_path / "job" / "shards", "abc", RESULT_SCHEMA)
    row = {name: None for name in RESULT_SCHEMA.names} | {"image": "x.jpg", "setting": "none", "tp": 1}
    store.write(Chunk(0, 1), [row], {"n_images": 1})
    with pytest.raises(FileNotFoundError, match="partial=True"):
        read_results(tmp_path)
    t = read_results(tmp_path, partial=True)
    assert t.num_rows == 1 and t["image"].to_pylist() == ["x.jpg"]
    slim = read_results(tmp_path, partial=True, columns=[c for c in RESULT_SCHEMA.names if c not in EVIDENCE_COLUMNS])
    assert "det_boxes" not in slim.column_names


def test_a_corrupt_shard_is_a_one_line_error_naming_it(tmp_path):
    store = ShardStore(tmp_path, "h", RESULT_SCHEMA)
    store.dir.mkdir(parents=True)
    store.path(Chunk(0, 1)).write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"part-0000000-0000001.parquet is unreadable .*delete it"):
        store.read([Chunk(0, 1)])


def test_changed_configuration_never_reuses_old_shards(tmp_path):
    a = run_bench(bench_cfg(*JOB, "limit=1"), progress=False, out=tmp_path)
    b = run_bench(bench_cfg(*JOB, "limit=1", "match_iou=0.6"), progress=False, out=tmp_path)
    assert a.job_hash != b.job_hash
    assert b.extra["shards"]["computed"] == 1
    assert b.table["iou"].to_pylist() == pytest.approx([0.6] * b.table.num_rows)


def test_an_image_replaced_under_its_name_never_reuses_old_shards(tmp_path):
    """Found by the breaker: a folder image replaced by another (same name) resumed the old image's shards, and
    the run reported the old image's recall as current. The user's files join the job identity by size and mtime."""
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.jpg").write_bytes(package_file(*BUS).read_bytes())
    job = ["dataset=folder", f"dataset.root={root}", "detectors=[haar]", "sweep=null", "defense=solid",
           "pseudo_gt.face=[haar,yunet]", "pseudo_gt.person=[yolox_nano,hog_person]"]
    a = run_bench(bench_cfg(*job), progress=False, out=tmp_path / "out")
    assert run_bench(bench_cfg(*job), progress=False, out=tmp_path / "out").extra["shards"]["computed"] == 0
    from PIL import Image

    Image.new("RGB", (810, 1080), (128, 128, 128)).save(root / "a.jpg")  # same name and size, nobody in it
    b = run_bench(bench_cfg(*job), progress=False, out=tmp_path / "out")
    assert a.job_hash != b.job_hash and b.extra["shards"]["computed"] == 1
    assert sum(b.table["n_gt"].to_pylist()) == 0


@pytest.mark.parametrize("change", ["region_detector.max_side=64", "loader.pad_to=64", "precision=bf16"])
def test_region_detector_and_loader_settings_are_part_of_the_job_identity(change, tmp_path):
    """The region detector's own parameters and precision, and the frame padding, change rows: a re-run with
    another value must compute afresh (here: Haar scored, CenterFace choosing the regions)."""
    job = ["regions.source=detector", "region_detector=centerface", "detectors=[haar]", "limit=1", "progress=false",
           "sweep=null", "defense=pixelate", "defense.blocks=4"]
    a = run_bench(bench_cfg(*job), progress=False, out=tmp_path)
    b = run_bench(bench_cfg(*job, change), progress=False, out=tmp_path)
    assert a.job_hash != b.job_hash and b.extra["shards"]["computed"] == 1


def test_summary_does_not_depend_on_row_order_even_with_tied_scores():
    """pycocotools ranks tied scores by insertion order: the summary feeds images sorted by id."""
    base = {"dataset": "d", "camera": "none", "defense": "none", "params": "{}", "setting": "none",
            "regions": "gt:face", "detector": "x", "detector_kind": "face", "pseudo_gt": False, "config_hash": "h",
            "iou": 0.5, "n_det": 1, "clean_found": 1, "lost": 0, "gt_boxes": [0, 0, 10, 10], "gt_ignore": [False]}
    hit = {**base, "image": "a", "tp": 1, "fp": 0, "fn": 0, "n_gt": 1, "det_boxes": [0, 0, 10, 10], "det_scores": [1.0]}
    miss = {**base, "image": "b", "tp": 0, "fp": 1, "fn": 1, "n_gt": 1, "det_boxes": [50, 50, 60, 60],
            "det_scores": [1.0]}
    assert summarize([hit, miss]) == summarize([miss, hit])
    with pytest.raises(ValueError, match="appears twice"):
        summarize([hit, hit])


def test_two_settings_with_one_label_are_an_error_not_a_silent_drop(tmp_path):
    src = package_file("anonlab", "attacks", "data", "demo_yolox_nano.png")
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "p.png").write_bytes(src.read_bytes() if d == "a" else _flipped_png(src))
    sweep = f"sweep=[{{name: patch, path: {tmp_path / 'a' / 'p.png'}}}, {{name: patch, path: {tmp_path / 'b' / 'p.png'}}}]"
    with pytest.raises(BenchError, match="share the label 'patch\\(path=p\\)'"):
        run_bench(bench_cfg(*JOB, "regions.target=person", sweep), progress=False, out=tmp_path)


def _flipped_png(path) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.imread(str(path))[:, ::-1])
    assert ok
    return buf.tobytes()


def test_a_torso_patch_needs_person_regions(tmp_path):
    with pytest.raises(BenchError, match="worn on persons .* set regions.target=person"):
        run_bench(bench_cfg(*JOB, "sweep=null", "defense=patch"), progress=False, out=tmp_path)


@pytest.mark.parametrize("workers", [0, 3])
def test_background_decoding_keeps_order_and_content(workers):
    from anonlab.datasets import DATASETS

    ds = DATASETS.get("default")()
    failures: list = []
    batches = list(iter_batches(ds, range(len(ds)), 1, failures, print, workers=workers))
    assert [b[0].image_id for b in batches] == ds.refs()
    for b, i in zip(batches, range(len(ds))):
        assert torch.equal(b[0].image, ds.load(i).image)
    assert not failures


def test_background_decoding_records_an_unreadable_image_in_order(tmp_path):
    from anonlab.datasets import DATASETS

    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        data = package_file(*BUS).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2] if i == 1 else data)  # b.jpg truncated
    folder = DATASETS.get("folder")(root=str(tmp_path))
    failures: list = []
    batches = list(iter_batches(folder, range(3), 1, failures, lambda m: None, workers=3))
    assert [b[0].image_id for b in batches] == ["a.jpg", "c.jpg"]
    assert [f.image for f in failures] == ["b.jpg"] and "truncated JPEG" in failures[0].error


def test_decode_on_cpu_is_the_plain_decoder():
    with decode_on("cpu"):
        assert torch.equal(read_image(BUS_JPG), read_image(BUS_JPG))
    with decode_on(None):
        img = read_image(BUS_JPG)
    assert img.device.type == "cpu" and img.dtype == torch.uint8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_nvjpeg_decode_matches_the_cpu_decoder():
    cpu = read_image(BUS_JPG)
    with decode_on("cuda"):
        gpu = read_image(BUS_JPG)
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    diff = (gpu.cpu().int() - cpu.int()).abs()
    assert diff.float().mean() < 1.0 and diff.max() <= 16  # IDCT/upsampling rounding differs, content does not


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_job_with_gpu_decode_and_batches_matches_the_cpu_job(tmp_path):
    # all 5 default images (JPEGs decoded by nvJPEG, PNGs on the CPU) padded into one size: mixed batches
    cpu = run_bench(bench_cfg(*JOB, "loader.pad_to=1536"), progress=False, out=tmp_path / "cpu")
    gpu = run_bench(bench_cfg(*JOB, "loader.pad_to=1536", "device=cuda", "loader.decode=device", "batch_size=4",
                              "loader.workers=2"), progress=False, out=tmp_path / "gpu")
    key = [("image", "ascending"), ("setting", "ascending")]
    a, b = cpu.table.sort_by(key), gpu.table.sort_by(key)
    assert a["image"].to_pylist() == b["image"].to_pylist()
    # same matches up to a detection whose score sits on the threshold (float differences across devices)
    diffs = [abs(x - y) for x, y in zip(a["tp"].to_pylist(), b["tp"].to_pylist())]
    assert sum(diffs) <= 1, diffs


def test_bf16_autocast_keeps_centerface_boxes():
    from anonlab.detectors import DETECTORS

    det = DETECTORS.get("centerface")().eval()
    img = read_image(BUS_JPG)[None]
    ref = det(img).above(det.threshold)
    assert det.set_precision("bf16")
    low = det(img).above(det.threshold)
    assert low.boxes.dtype == torch.float32 and low.scores.dtype == torch.float32
    from torchvision.ops import box_iou

    assert len(low) == len(ref) >= 2  # the two large faces (the small ones are below the threshold)
    assert box_iou(ref.boxes, low.boxes).amax(1).min() > 0.95  # measured 0.995
    haar = DETECTORS.get("haar")()
    assert not haar.set_precision("bf16")  # OpenCV: not a torch graph, runs as it is
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        det.set_precision("int8")


@pytest.mark.parametrize("override, message", [
    ("store.shard_images=0", "store.shard_images must be an integer >= 1"),
    ("split.index=2", "split.index must be in"),
    ("loader.decode=gpu", "loader.decode must be cpu or device"),
    ("precision=half", "precision must be one of"),
    ("loader.workers=-1", "loader.workers must be an integer >= 0"),
])
def test_bad_engine_options_fail_before_any_work(override, message, tmp_path):
    with pytest.raises(BenchError, match=message):
        run_bench(bench_cfg(*JOB, override, "split.count=2"), progress=False, out=tmp_path)
    assert not list(tmp_path.rglob("*.parquet"))


def test_slurm_launcher_config_composes_and_instantiates_without_a_cluster():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'anonlab[slurm]'")
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="bench", overrides=["hydra/launcher=slurm", "split.count=4"],
                      return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    assert launcher.params["gpus_per_node"] == 1 and launcher.params["max_num_timeout"] >= 1


def test_padding_to_a_multiple_batches_mixed_sizes_and_keeps_boxes():
    from anonlab.datasets import DATASETS

    ds = DATASETS.get("default")()
    batches = list(iter_batches(ds, range(2), 8, [], print, pad_to=1536))  # bus (1080x810) and zidane (720x1280)
    assert len(batches) == 1 and [s.image.shape for s in batches[0]] == [(3, 1536, 1536)] * 2
    for s, i in zip(batches[0], range(2)):
        orig = ds.load(i)
        h, w = orig.image.shape[-2:]
        assert torch.equal(s.image[:, :h, :w], orig.image) and s.image[:, h:].sum() == s.image[:, :, w:].sum() == 0
        assert torch.equal(s.gt.faces, orig.gt.faces)


def test_padded_batched_job_finds_the_same_faces(tmp_path):
    plain = run_bench(bench_cfg(*JOB, "limit=2", "sweep=null", "defense=none"), progress=False, out=tmp_path / "a")
    padded = run_bench(bench_cfg(*JOB, "limit=2", "sweep=null", "defense=none", "loader.pad_to=1536",
                                 "batch_size=2"), progress=False, out=tmp_path / "b")
    assert plain.table["tp"].to_pylist() == padded.table["tp"].to_pylist() == [2, 2]  # the 2 large faces of each


def test_split_multirun_merges_into_the_summary_of_one_job(tmp_path):
    """Hydra's basic launcher runs split.index=0,1 as two jobs; `anonlab report --summary` recomputes the summary
    of their merged rows, equal to the one-job summary (same config hashes, AP, bootstrap intervals)."""
    job = [*JOB, "limit=3"]
    split = anonlab_bench("-m", *job, "split.count=2", "split.index=0,1", f"out={tmp_path / 'split'}")
    one = anonlab_bench(*job, f"out={tmp_path / 'one'}")
    for proc in (split, one):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    assert sorted(p.parent.name for p in (tmp_path / "split").rglob("results.parquet")) == ["0", "1"]
    report = subprocess.run([sys.executable, "-m", "anonlab.cli.main", "report", str(tmp_path / "split"),
                             "--summary", str(tmp_path / "merged.parquet")], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    merged = pq.read_table(tmp_path / "merged.parquet").to_pylist()
    single = {r["config_hash"]: r for r in pq.read_table(tmp_path / "one" / "summary.parquet").to_pylist()}
    assert len(merged) == len(single) == 3 and all(r == single[r["config_hash"]] for r in merged)
    assert "## Recall (%) with 95 % bootstrap interval" in (tmp_path / "merged.md").read_text()


def test_atomic_writes_leave_ordinary_file_permissions(tmp_path):
    """Results and report pages were written through ``mkstemp`` and kept its 0600 after the rename, so nobody but
    the writer could read them; every atomic write now ends with the mode an ordinary new file gets."""
    from anonlab.report.html import _atomic_text
    from anonlab.store.shards import atomic_write

    mask = os.umask(0o022)
    try:
        table = pa.table({"x": [1, 2]})
        atomic_write(table, tmp_path / "results.parquet")
        _atomic_text([(tmp_path / "page.html", "<p>x</p>"), (tmp_path / "page.md", "x")])
    finally:
        os.umask(mask)
    for name in ("results.parquet", "page.html", "page.md"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert pq.read_table(tmp_path / "results.parquet").equals(table)
    assert (tmp_path / "page.html").read_text() == "<p>x</p>" and not list(tmp_path.glob(".*"))
