"""The one progress bar of anonlab's commands (rich)."""

from __future__ import annotations


def progress_bar(enabled: bool, note: str):
    """A rich progress bar (description, bar, done/total, ``note`` — a rich format string that may read the task's
    fields — and elapsed time), or None when disabled."""
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(note), TimeElapsedColumn())

