"""A fresh clone runs offline: the README's default job with no ``../shared``, an empty cache and every socket
connection refused; the same seed gives identical rows.

These run the real ``anonlab`` command in subprocesses, as a new user would. ``sitecustomize`` (imported by
Python at start-up when it is on the path) refuses every non-UNIX socket connection in the child, so any network
call anywhere in the process fails loudly instead of silently reaching out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

_REFUSE_NETWORK = textwrap.dedent(
    """
    import socket

    _real_connect = socket.socket.connect
    _real_connect_ex = socket.socket.connect_ex


    def _refuse(self, address, _real=_real_connect):
        if self.family != socket.AF_UNIX:
            raise ConnectionRefusedError(f"anonlab offline test: network access to {address!r}")
        return _real(self, address)


    def _refuse_ex(self, address, _real=_real_connect_ex):
        if self.family != socket.AF_UNIX:
            raise ConnectionRefusedError(f"anonlab offline test: network access to {address!r}")
        return _real(self, address)


    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse_ex
    """
)


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a new user's machine: no ../shared, empty caches, no weights folder, no network."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_REFUSE_NETWORK)
    for d in ("shared", "cache", "home"):
        (tmp_path / d).mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ANONLAB_WEIGHTS", "ANONLAB_SHARED", "PYTHONPATH")}
    env.update({
        "ANONLAB_SHARED": str(tmp_path / "shared"),  # an empty folder: no models, no data sets
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HOME": str(tmp_path / "home"),  # torch hub, ultralytics settings, matplotlib: all start empty
        "PYTHONPATH": os.pathsep.join([str(guard), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PYTHONWARNINGS": "ignore",
    })
    return env


def _anonlab(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anonlab.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900)


def test_network_guard_refuses_connections(offline_env, tmp_path):
    """The guard itself works: a child that tries to connect fails with the guard's message."""
    proc = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
                          capture_output=True, text=True, env=offline_env, cwd=tmp_path, timeout=60)
    assert proc.returncode != 0 and "anonlab offline test" in proc.stderr


@pytest.mark.slow
def test_readme_default_job_on_a_fresh_clone_offline(offline_env, tmp_path):
    """The README's first command (``anonlab bench``), with nothing but the package: exit 0, every bundled
    detector in the printed table, and results written."""
    from omegaconf import OmegaConf

    from anonlab.build import CONF_DIR
    from anonlab.detectors import DETECTORS

    proc = _anonlab(offline_env, "bench", "progress=false", f"out={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    panel = list(OmegaConf.load(CONF_DIR / "bench.yaml").detectors)
    header = proc.stdout.split("┡", 1)[0]
    for name in panel:
        assert name in header, f"default table lacks detector {name}"
    assert {"yunet", "ultraface", "yolox_nano"} <= set(panel) & set(DETECTORS.names())
    table = pq.read_table(tmp_path / "run" / "results.parquet")
    assert set(table.column("detector").to_pylist()) == set(panel)


def test_other_commands_offline(offline_env, tmp_path):
    """``list``, ``weights list`` and ``datasets list`` answer without the network or ../shared."""
    for args in (["list"], ["weights", "list"], ["datasets", "list"]):
        proc = _anonlab(offline_env, *args, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        assert proc.stdout.strip(), args


def _rows(out: Path):
    t = pq.read_table(out / "results.parquet")
    return t.sort_by([("image", "ascending"), ("setting", "ascending"), ("detector", "ascending")])


def test_same_seed_same_rows(offline_env, tmp_path):
    """Two runs with the same seed give identical rows, including the random parts: camera sensor noise, the
    noise defense and JPEG release on a CCTV camera."""
    args = ["bench", "progress=false", "capture=cctv_720p_far", "release=jpeg",
            "detectors=[centerface,yolox_nano]",
            "sweep=[{name: noise, std: 48}, {name: pixelate, blocks: 8}]", "limit=3", "seed=7"]
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        proc = _anonlab(offline_env, *args, f"out={out}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(_rows(out))
    a, b = outs
    assert a.num_rows > 0
    assert a.equals(b)
