"""Recall tables (detector x defense setting) from summary rows, for the terminal (rich) and summary.md."""

from __future__ import annotations

from collections.abc import Sequence


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
    width = max(len(s) for s in settings) + 4 + sum(max(len(d), 7) + 3 for d in detectors)
    Console(width=max(80, width)).print(table)


def recall_by(rows: Sequence[dict], key: str) -> dict[str, dict[str, dict[float, float | None]]]:
    """{detector: {setting: {key value: recall}}} pooled over images (sum TP / sum ground truth); rows with a
    null ``key`` are left out; numeric keys are rounded to whole units (face heights in pixels)."""
    acc: dict = {}
    for r in rows:
        v = r.get(key)
        if v is None:
            continue
        v = round(v) if isinstance(v, float) else v
        cell = acc.setdefault(r["detector"], {}).setdefault(r["setting"], {}).setdefault(v, [0, 0])
        cell[0] += r["tp"]
        cell[1] += r["n_gt"]
    return {d: {s: {v: (tp / n if n else None) for v, (tp, n) in sorted(cells.items())} for s, cells in per.items()}
            for d, per in acc.items()}


def markdown_by(rows: Sequence[dict], key: str) -> str:
    """One Markdown table per detector: settings x ``key`` values, recall in percent."""
    table = recall_by(rows, key)
    parts = [f"# Recall (%) by {key}\n"]
    for det, per in table.items():
        values = sorted({v for cells in per.values() for v in cells})
        parts.append(f"\n## {det}\n\n| setting | " + " | ".join(f"{key}={v}" for v in values) + " |")
        parts.append("|---|" + "---:|" * len(values))
        for setting, cells in per.items():
            parts.append(f"| {setting} | " + " | ".join(_pct(cells.get(v)) for v in values) + " |")
    return "\n".join(parts) + "\n"
