"""The one atomic-write mechanism (anonlab.io.atomic), used by the results store, the report, redact, its leak
report and recommend: complete file or the old one under the final name, partial names a later run removes,
ordinary permissions."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from anonlab.io.atomic import (
    PARTIAL,
    atomic_path,
    partial_path,
    remove_partials,
    write_text,
)
from anonlab.store.shards import ShardStore


@pytest.fixture
def umask_022():
    mask = os.umask(0o022)
    yield
    os.umask(mask)


def test_partial_path_is_a_new_hidden_marked_file_beside_the_final_one(tmp_path, umask_022):
    final = tmp_path / "sub" / "clip.mp4"
    a, b = partial_path(final), partial_path(final)
    assert a != b and a.parent == b.parent == final.parent  # same folder: the rename is atomic; unique per call
    for p in (a, b):
        assert p.name.startswith(".clip.mp4" + PARTIAL) and p.suffix == ".mp4"  # PyAV/Pillow pick the format by it
        assert p.is_file() and p.stat().st_size == 0
        assert p.stat().st_mode & 0o777 == 0o644  # an ordinary new file's mode, not mkstemp's 0600
    assert not final.exists()


def test_atomic_path_renames_a_complete_file_and_leaves_the_old_one_on_failure(tmp_path, umask_022):
    final = tmp_path / "leaks.json"
    write_text(final, "old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the encoder failed")
    assert final.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["leaks.json"]
    with atomic_path(final) as tmp:
        tmp.write_text("new")
        assert final.read_text() == "old"  # nothing under the final name until the block ends
    assert final.read_text() == "new" and final.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaks.json"]


def test_a_killed_writer_leaves_only_a_partial_name_that_the_next_start_removes(tmp_path):
    """SIGKILL in the middle of a write (no ``finally`` runs): the final name keeps its old content, the partial
    file stays, and both cleaners (redact's start, the results store's) remove it."""
    final = tmp_path / "part-0000000-0000064.parquet"
    final.write_text("old")
    code = ("import os, signal, sys\nfrom anonlab.io.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(final)], capture_output=True, timeout=120)
    assert proc.returncode == -9
    left = [p for p in tmp_path.iterdir() if p != final]
    assert final.read_text() == "old" and len(left) == 1 and PARTIAL in left[0].name
    assert left[0].read_text() == "half"
    assert ShardStore(tmp_path.parent, tmp_path.name, pa.schema([])).clean_temp() == 1
    assert not left[0].exists() and final.read_text() == "old"
    (tmp_path / "deeper").mkdir()
    stale = partial_path(tmp_path / "deeper" / "x.png")
    keep = tmp_path / "deeper" / "x.png.notes"  # an ordinary file is never taken for a partial one
    keep.write_text("mine")
    assert remove_partials(tmp_path, recursive=False) == [] and stale.exists()
    assert remove_partials(tmp_path) == [stale] and not stale.exists() and keep.exists()


def test_a_long_name_gets_a_temporary_name_the_file_system_accepts(tmp_path):
    """A 250-byte file name (valid) plus the partial marker was over NAME_MAX: ``anonlab redact`` died with
    'File name too long' (review, 2026-11-30). Two long names that differ only at the end stay apart."""
    a, b = tmp_path / ("a" * 246 + "1.png"), tmp_path / ("a" * 246 + "2.png")
    with atomic_path(a) as ta, atomic_path(b) as tb:
        assert ta != tb and len(ta.name.encode()) <= 255 and ta.suffix == ".png" and PARTIAL in ta.name
        ta.write_bytes(b"1")
        tb.write_bytes(b"2")
    assert a.read_bytes() == b"1" and b.read_bytes() == b"2" and not list(tmp_path.glob(f".*{PARTIAL}*"))


def test_another_running_process_s_partial_file_is_kept(tmp_path):
    """Two runs writing into one folder: the second's start must not delete the first's file in progress."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs = tmp_path / f".clip.mp4{PARTIAL}-{live.pid}-0.mp4"
        theirs.write_bytes(b"in progress")
        dead = tmp_path / f".old.png{PARTIAL}-{2 ** 22 + 12345}-0.png"  # above Linux's pid_max default: no process
        dead.write_bytes(b"left by a killed run")
        assert remove_partials(tmp_path) == [dead] and theirs.exists()
    finally:
        live.kill()
        live.wait()
    assert remove_partials(tmp_path) == [theirs]
