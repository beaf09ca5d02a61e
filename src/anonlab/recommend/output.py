"""What ``anonlab recommend`` leaves in ``--out``: ``recommend.yaml`` (an ``anonlab redact --preset`` file, written
only when a setting qualifies), ``recommend.json`` (the evidence table, for ``anonlab report``) and before/after
thumbnails of the user's own frames (``thumb_<k>_before.png``, ``thumb_<k>_after.png``). Every file is written
under a temporary name and renamed, so none is ever half-written; a stale ``recommend.yaml`` from an earlier run is
removed when no setting qualifies.

``recommend.json`` (for ``anonlab report``): ``threat``, ``n_frames``, ``n_faces``, ``n_persons``, ``pseudo_gt``
(true: face ground truth is the detector panel's), ``options`` (sample size, seed, region, bounds, adversaries),
``not_measured``, ``recommendation`` (the preset mapping, or null), ``recommended_setting`` /
``weakest_passing_setting`` (engine labels, or null), ``why``, ``advice``, ``failures``, ``wall_s``,
``thumbnails`` (``[{frame, before, after}]``, file names in the same folder) and ``candidates``: one per setting,
weakest first, ``{setting, defense, param, value, ladder_step, pixel_change (0-255), passed, adversaries: [{name,
kind: detector|identification, k, n, value, lo, hi, bound, passed}]}`` (``k`` found or identified of ``n`` faces;
``lo``/``hi`` the 95 % interval; a setting passes when every ``hi <= bound``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from anonlab.recommend.core import Recommendation


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def print_evidence(rec: Recommendation, console: Console | None = None) -> None:
    """The candidates (weakest first) with every adversary's rate and 95 % interval against its bound."""
    # (a pipe or a log file gets a wide table rather than rich's 80 columns; a terminal keeps its own width)
    console = console or Console(width=shutil.get_terminal_size((160, 24)).columns)
    o = rec.options
    t = Table(title=f"anonlab recommend — threat {rec.threat}: {rec.n_frames} frame(s), {rec.n_faces} face(s) "
                    f"(pseudo ground truth){f', {rec.n_persons} person(s)' if o['persons'] else ''}; region "
                    f"{o['shape']} x {o['mask_scale']:g}")
    t.add_column("setting", no_wrap=True)
    t.add_column("Δpx", justify="right")
    names = [a.name for a in rec.rows[0].adversaries] if rec.rows else []
    for n in names:
        t.add_column(n.replace("_", " ").replace(" (", "\n("), justify="right", overflow="fold")
    t.add_column("ok")
    for r in rec.rows:
        mark = "◀ pick" if rec.pick and r.candidate.label == rec.pick.label else ""
        cells = []
        for a in r.adversaries:
            cell = "-" if a.hi is None else f"{a.k}/{a.n} ≤{a.hi:.2f}"
            cells.append(cell if a.passed else f"[red]{cell}[/red]")
        t.add_row(r.candidate.short, f"{r.change:.1f}", *cells, ("yes " if r.passed else "no ") + mark)
    console.print(t)
    bounds = rec.options["bounds"]
    console.print(f"cells: found (or identified) / faces, ≤ the upper end of the 95 % interval (recommend.json has "
                  f"both ends). Bounds on that upper end: detector recall <= {bounds['recall']}, identification <= "
                  f"chance + {bounds['identification_margin']}. Δpx: mean absolute pixel change (0-255) inside the "
                  f"face boxes.", highlight=False)


def write_outputs(rec: Recommendation, out: Path) -> dict[str, Path]:
    """Write recommend.yaml (when there is a pick), recommend.json and the thumbnails into ``out``; returns them."""
    from anonlab.io.atomic import atomic_path, write_text
    from anonlab.io.images import write_image

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("thumb_*_*.png"):  # an earlier run's thumbnails never mix with this run's
        old.unlink()
    written: dict[str, Path] = {}
    files = []
    for k, (image_id, by_label) in enumerate(sorted(rec.thumbs.items())):
        if rec.pick is None or "none" not in by_label or rec.pick.label not in by_label:
            continue
        for tag, label in (("before", "none"), ("after", rec.pick.label)):
            path = out / f"thumb_{k}_{tag}.png"
            with atomic_path(path) as tmp:
                write_image(tmp, by_label[label], "PNG")
            written[f"thumb_{k}_{tag}"] = path
        files.append({"frame": image_id, "before": f"thumb_{k}_before.png", "after": f"thumb_{k}_after.png"})
    data = rec.to_json()
    data["thumbnails"] = files
    write_text(out / "recommend.json", json.dumps(data, indent=1))
    written["json"] = out / "recommend.json"
    path = out / "recommend.yaml"
    if rec.pick is None:
        path.unlink(missing_ok=True)
        return written
    head = (f"# anonlab recommend --threat {rec.threat}: {rec.pick.label}.\n# {rec.why}.\n"
            f"# Measured on {rec.n_frames} frame(s) with {rec.n_faces} face(s); evidence in recommend.json.\n"
            f"# Use: anonlab redact --preset recommend.yaml INPUT... --out DIR\n")
    write_text(path, head + yaml.safe_dump(rec.preset(), sort_keys=False))
    written["yaml"] = path
    return written
