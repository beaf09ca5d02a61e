"""``anonlab patch train|eval``: Hydra-composed from ``conf/patch/{train,eval}.yaml``; trains a patch, or evaluates
patches with their controls through the benchmark engine. Exit codes as ``anonlab bench``: 2 for a bad
configuration or input (one ``error:`` line)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_BAD_CONFIG = 0, 2
COMMANDS = {"train": "optimise a patch against a differentiable detector (EOT, seeded)",
            "eval": "patch vs noise/grey controls on held-out images, transfer across detectors"}
_status = {"code": EXIT_OK}

USAGE = ("usage: anonlab patch {train,eval} [HYDRA OVERRIDES ...]\n\n"
         + "\n".join(f"  {k:<6} {v}" for k, v in COMMANDS.items())
         + "\n\nEach takes Hydra overrides; `anonlab patch train --help` lists its config.\n")


def _bad_config_errors() -> tuple[type[BaseException], ...]:
    from anonlab.attacks.objectives import NotDifferentiableError

    return (ValueError, FileNotFoundError, NotDifferentiableError)


def _fail(e: BaseException) -> None:
    if os.environ.get("ANONLAB_DEBUG"):
        raise e
    print(f"error: {e}", file=sys.stderr)
    _status["code"] = EXIT_BAD_CONFIG


def _train_task(cfg) -> None:
    from anonlab.attacks.train import train_patch

    try:
        train_patch(cfg, progress=bool(cfg.progress))
    except _bad_config_errors() as e:
        _fail(e)


def _eval_task(cfg) -> None:
    from anonlab.attacks.evaluate import evaluate, markdown_tables
    from anonlab.build import CONF_DIR
    from anonlab.cli.bench import write_outputs

    out = Path(str(cfg.out))

    def write(name, bench_cfg, result) -> None:
        write_outputs(result, bench_cfg, out / name)
        print(f"{name}: {result.n_images} held-out images, {len(result.settings)} settings", file=sys.stderr)

    try:
        rows = evaluate(cfg, CONF_DIR, progress=bool(cfg.progress), on_result=write)
    except _bad_config_errors() as e:
        _fail(e)
        return
    from omegaconf import OmegaConf

    conditions = OmegaConf.to_container(cfg.conditions, resolve=True)
    text = markdown_tables(rows, conditions)
    out.mkdir(parents=True, exist_ok=True)
    (out / "patch_eval.md").write_text(text)
    (out / "patch_eval.json").write_text(json.dumps(
        {"patches": [str(p) for p in cfg.patches], "detectors": list(cfg.detectors), "conditions": conditions,
         "rows": rows}, indent=2))
    print(text)
    print(f"wrote {out}/patch_eval.md, patch_eval.json and one bench folder per condition", file=sys.stderr)


def patch(argv: list[str]) -> int:
    """Dispatch ``train``/``eval`` to Hydra with the remaining arguments (overrides, -m, --help, --cfg job)."""
    import hydra

    from anonlab.build import CONF_DIR

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return EXIT_OK if argv else EXIT_BAD_CONFIG
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"error: unknown patch command {cmd!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    from anonlab.cli.main import check_config

    bad = check_config(f"patch/{cmd}", rest)
    if bad is not None:
        return bad
    task = _train_task if cmd == "train" else _eval_task
    sys.argv = [f"anonlab patch {cmd}", *rest]
    hydra.main(config_path=str(CONF_DIR), config_name=f"patch/{cmd}", version_base="1.3")(task)()
    return _status["code"]
