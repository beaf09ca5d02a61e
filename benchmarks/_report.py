"""Shared by the benchmark scripts: print the result JSON and write it where asked; time a call."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def emit(doc: dict[str, Any], out: str | None) -> None:
    text = json.dumps(doc, indent=2)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


def run_job(overrides: list[str]):
    """One ``anonlab bench`` job in this process (results in a temp folder); returns (BenchResult, wall seconds)."""
    import tempfile
    import time

    from hydra import compose, initialize_config_dir

    from anonlab.build import CONF_DIR
    from anonlab.engine import run_bench

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="bench", overrides=overrides)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        res = run_bench(cfg, progress=False, out=out, log=lambda m: None)
    return res, time.perf_counter() - t


def timeit(fn: Callable[[], Any], device: Any, repeats: int) -> float:
    """Best of ``repeats`` wall times of ``fn()`` in seconds, after one warm-up call (cudnn autotune, lazy init);
    on CUDA (``device.type == "cuda"``) the device is synchronised around each call."""
    import torch

    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return best
