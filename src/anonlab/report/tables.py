"""Recall tables (detector x defense setting) from summary rows, for the terminal (rich) and summary.md."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}"


def pivot(summary: Sequence[dict], metric: str = "recall") -> tuple[list[str], list[str], dict]:
    """(settings in order, detectors in order, {(setting, detector): value})."""
    settings, detectors, cells = [], [], {}
    for r in summary:
        if r["setting"] not in settings:
            settings.append(r["setting"])
        if r["detector"] not in detectors:
            detectors.append(r["detector"])
        cells[(r["setting"], r["detector"])] = r[metric]
    return settings, detectors, cells


def kinds(summary: Sequence[dict]) -> dict[str, str]:
    return {r["detector"]: r["detector_kind"] for r in summary}


def markdown(summary: Sequence[dict], title: str = "") -> str:
    """Markdown: one recall table, one AP table, one disappearance table (percent)."""
    if not summary:
        return f"# {title}\n\nNo results.\n"
    _, detectors, _ = pivot(summary)
    k = kinds(summary)
    head = "| setting | " + " | ".join(f"{d} ({k[d]})" for d in detectors) + " |"
    sep = "|---|" + "---:|" * len(detectors)
    parts = [f"# {title}\n"] if title else []
    first = summary[0]
    n_gt = {r["detector_kind"]: r["n_gt"] for r in summary if r["setting"] == summary[0]["setting"]}
    parts.append(f"dataset `{first['dataset']}`, camera `{first['camera']}`, regions `{first['regions']}`, "
                 f"{first['n_images']} images, ground truth: "
                 + ", ".join(f"{n} {kind}s" for kind, n in n_gt.items())
                 + (" (**pseudo ground truth** for " + ", ".join(sorted({r["detector_kind"] + "s" for r in summary if r["pseudo_gt"]}))
                    + ": consensus of a detector panel)" if any(r["pseudo_gt"] for r in summary) else "") + "\n")
    parts.append("\n## Recall (%) with 95 % bootstrap interval over images\n\n" + head + "\n" + sep)
    settings, detectors, _ = pivot(summary, "recall")
    cells = {(r["setting"], r["detector"]): r for r in summary}
    for s in settings:
        parts.append(f"| {s} | " + " | ".join(
            "—" if (r := cells.get((s, d))) is None or r["recall"] is None
            else f"{_pct(r['recall'])} [{_pct(r['recall_lo'])}–{_pct(r['recall_hi'])}]" for d in detectors) + " |")
    for metric, what in (("recall", "Recall (%) at each detector's threshold, IoU match"),
                         ("ap", "AP (%) at the match IoU, pycocotools"),
                         ("disappearance", "Disappearance (%): objects found clean, lost after the defense")):
        settings, detectors, cells = pivot(summary, metric)
        parts.append(f"\n## {what}\n\n{head}\n{sep}")
        for s in settings:
            parts.append(f"| {s} | " + " | ".join(_pct(cells.get((s, d))) for d in detectors) + " |")
    return "\n".join(parts) + "\n"


def print_recall_table(summary: Sequence[dict], title: str = "Recall (%)") -> None:
    """Print recall per detector x defense setting with rich (colour: red = still detected, green = hidden)."""
    from rich.console import Console
    from rich.table import Table

    settings, detectors, cells = pivot(summary, "recall")
    k = kinds(summary)
    table = Table(title=title, show_lines=False)
    table.add_column("setting", no_wrap=True)
    for d in detectors:
        table.add_column(f"{d}\n{k[d]}", justify="right", no_wrap=True)
    for s in settings:
        vals = []
        for d in detectors:
            v = cells.get((s, d))
            color = "" if v is None or s == settings[0] else ("green" if v < 0.2 else "yellow" if v < 0.5 else "red")
            vals.append(f"[{color}]{_pct(v)}[/]" if color else _pct(v))
        table.add_row(s, *vals)
    # (no rows at all, e.g. every image failed to load: an empty table, not a crash)
    width = max((len(s) for s in settings), default=0) + 4 + sum(max(len(d), 7) + 3 for d in detectors)
    Console(width=max(80, width)).print(table)


def recall_by(rows: Sequence[dict], key: str, seed: int = 0) -> dict[str, dict[str, dict]]:
    """{detector: {setting: {key value: (recall, lo, hi)}}}: recall pooled over images (sum TP / sum ground
    truth) with a 95 % percentile-bootstrap interval over images; rows with a null ``key`` are left out; numeric
    keys are rounded to whole units (face heights in pixels)."""
    from anonlab.metrics.bootstrap import bootstrap_ratio

    acc: dict = {}
    for r in rows:
        v = r.get(key)
        if v is None:
            continue
        v = round(v) if isinstance(v, float) else v
        acc.setdefault(r["detector"], {}).setdefault(r["setting"], {}).setdefault(v, []).append((r["tp"], r["n_gt"]))
    out: dict = {}
    for det, per in acc.items():
        for setting, cells in per.items():
            for v, pairs in sorted(cells.items()):
                tp, n = (np.array(c, dtype=np.float64) for c in zip(*pairs))
                recall = tp.sum() / n.sum() if n.sum() else None
                out.setdefault(det, {}).setdefault(setting, {})[v] = (recall, *bootstrap_ratio(tp, n, seed=seed))
    return out


def markdown_by(rows: Sequence[dict], key: str) -> str:
    """One Markdown table per detector: settings x ``key`` values, recall in percent [95 % interval]."""
    scalar = sorted(k for k, v in rows[0].items() if not isinstance(v, (list, dict))) if rows else []
    if rows and key not in scalar:  # list columns (boxes, scores: the evidence) cannot label a table's columns
        raise ValueError(f"--by {key!r} is not a scalar result column; valid: {', '.join(scalar)}")
    table = recall_by(rows, key)
    parts = [f"# Recall (%) by {key}, [95 % bootstrap interval over images]\n"]
    if key == "setting":  # settings x detectors, one table (settings x settings would only fill its diagonal)
        dets = list(table)
        settings = list(dict.fromkeys(s for per in table.values() for s in per))
        parts.append("\n| setting | " + " | ".join(dets) + " |")
        parts.append("|---|" + "---:|" * len(dets))
        for setting in settings:
            parts.append(f"| {setting} | " + " | ".join(
                "—" if (c := table[d].get(setting, {}).get(setting)) is None or c[0] is None
                else f"{_pct(c[0])} [{_pct(c[1])}–{_pct(c[2])}]" for d in dets) + " |")
        return "\n".join(parts) + "\n"
    for det, per in table.items():
        values = sorted({v for cells in per.values() for v in cells})
        parts.append(f"\n## {det}\n\n| setting | " + " | ".join(f"{key}={v}" for v in values) + " |")
        parts.append("|---|" + "---:|" * len(values))
        for setting, cells in per.items():
            parts.append(f"| {setting} | " + " | ".join(
                "—" if (c := cells.get(v)) is None or c[0] is None else f"{_pct(c[0])} [{_pct(c[1])}–{_pct(c[2])}]"
                for v in values) + " |")
    return "\n".join(parts) + "\n"


def _num(v: float | None, pct: bool = True) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    return f"{100 * v:.0f}" if pct else f"{v:.2f}"


def identity_side_by_side(identity_rows: Sequence[dict], summary: Sequence[dict]) -> list[dict]:
    """One row per (identity dataset, recognizer, setting): the best face-detector recall of the detection panel on
    that dataset (when the bench ran on it), the share of faces the ``naive`` attacker's detector still finds, and
    the **strongest** attacker (highest rank-1, then verification accuracy) with its rank-1 / rank-5 / accuracy /
    AUC and intervals."""
    recall: dict[tuple[str, str], tuple[float, str]] = {}
    for r in summary:
        if r["detector_kind"] == "face" and r["recall"] is not None:
            key = (r["dataset"], r["setting"])
            if key not in recall or r["recall"] > recall[key][0]:
                recall[key] = (r["recall"], r["detector"])
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in identity_rows:
        groups.setdefault((r["dataset"], r["recognizer"], r["setting"]), []).append(r)
    out = []
    for (ds, rec, setting), rows in groups.items():
        def strength(r: dict) -> tuple[float, float]:
            return tuple(-1.0 if v is None or np.isnan(v) else v for v in (r["rank1"], r["accuracy"]))
        best = max(rows, key=strength)
        naive = next((r for r in rows if r["adversary"] == "naive"), None)
        rec_v = recall.get((ds, setting))
        out.append({"dataset": ds, "recognizer": rec, "setting": setting,
                    "face_recall": rec_v[0] if rec_v else None, "recall_detector": rec_v[1] if rec_v else None,
                    "naive_found": None if naive is None else 1 - naive["n_not_found"] / max(naive["n_images"], 1),
                    "attacker": best["adversary"], **{k: best[k] for k in (
                        "rank1", "rank1_lo", "rank1_hi", "rank5", "accuracy", "accuracy_lo", "accuracy_hi", "auc",
                        "not_embedded_rate")}})
    return out


_SIDE_HEAD = ("dataset", "recognizer", "setting", "face recall % (best detector)", "naive finds %", "strongest attacker",
              "rank-1 % [95 % CI]", "rank-5 %", "verif. acc. % [95 % CI]", "AUC", "not embedded %")


def _side_cells(r: dict) -> list[str]:
    rec = "—" if r["face_recall"] is None else f"{_num(r['face_recall'])} ({r['recall_detector']})"
    return [r["dataset"], r["recognizer"], r["setting"], rec, _num(r["naive_found"]), r["attacker"],
            f"{_num(r['rank1'])} [{_num(r['rank1_lo'])}–{_num(r['rank1_hi'])}]", _num(r["rank5"]),
            f"{_num(r['accuracy'])} [{_num(r['accuracy_lo'])}–{_num(r['accuracy_hi'])}]", _num(r["auc"], pct=False),
            _num(r["not_embedded_rate"])]


def identity_markdown(side: Sequence[dict]) -> str:
    """The side-by-side table (:func:`identity_side_by_side`) as markdown."""
    lines = ["## Detection vs identification (strongest attacker per setting)\n",
             "| " + " | ".join(_SIDE_HEAD) + " |", "|" + "---|" * 3 + "---:|" * 2 + "---|" + "---:|" * 5]
    lines += ["| " + " | ".join(_side_cells(r)) + " |" for r in side]
    return "\n".join(lines) + "\n"


def print_identity_table(side: Sequence[dict], title: str = "Detection vs identification") -> None:
    """Print :func:`identity_side_by_side` rows with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in _SIDE_HEAD:
        table.add_column(h, justify="left" if h in ("dataset", "recognizer", "setting", "strongest attacker") else "right")
    for r in side:
        table.add_row(*_side_cells(r))
    Console(width=200).print(table)
