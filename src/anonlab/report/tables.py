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
