"""Atomic file writes: the one mechanism by which anonlab puts a file under its final name (results and shards,
report pages, redacted images and videos, leaks.json and its contact sheet, recommend's outputs).

A file is written in full under a temporary name beside its final one, then renamed onto it (``os.replace``: atomic
on one file system, which is why the temporary file lives in the same folder). So the final name holds either the
old file or the complete new one, never a half-written file, whatever kills the writer. The temporary name
``.<name>.anonlab-partial-<pid>-<k><suffix>`` is hidden (a leading dot), marks the file as partial so that a
later run can remove what a killed one left (:func:`remove_partials`), is unique (process id, a per-process
counter, and exclusive creation), and keeps the final suffix, for writers that choose the format by it (PyAV,
Pillow). It is created with the permissions of any new file (``0o666 & ~umask``), not ``mkstemp``'s 0600, so the
renamed result is readable like any other file the user writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

#: marker in the names of temporary files; a name containing it is never an output or an input
PARTIAL = ".anonlab-partial"

_counter = itertools.count()
#: longest file name most file systems accept (ext4, XFS, APFS, NTFS: 255 bytes)
NAME_MAX = 255
#: the process id in a temporary name: ``<PARTIAL>-<pid>-<k>``
_PID = re.compile(re.escape(PARTIAL) + r"-(\d+)-\d+")


def _hidden_name(final: Path, k: int) -> str:
    """``.<name>.anonlab-partial-<pid>-<k><suffix>``; a name too long for :data:`NAME_MAX` keeps its start and
    a short hash of the whole name instead (so long names that differ only at the end stay apart)."""
    tail = f"{PARTIAL}-{os.getpid()}-{k}{final.suffix}"
    name = f".{final.name}"
    if len((name + tail).encode()) > NAME_MAX:
        digest = hashlib.sha1(final.name.encode()).hexdigest()[:12]
        keep = NAME_MAX - len(tail.encode()) - len(digest) - 2
        name = "." + final.name.encode()[:keep].decode(errors="ignore") + "~" + digest
    return name + tail


def partial_path(final: str | os.PathLike) -> Path:
    """Create (empty, exclusively) and return a new temporary file beside ``final`` to write ``final``'s content into
    before ``os.replace(tmp, final)``: ``.<name>.anonlab-partial-<pid>-<k><suffix>`` in ``final``'s folder (created
    if missing). The caller removes it if the write fails (``tmp.unlink(missing_ok=True)`` in a ``finally``), or
    uses :func:`atomic_path`, which does all of that."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = final.with_name(_hidden_name(final, next(_counter)))
        try:  # 0o666 & ~umask, like open(..., "w"); O_EXCL: never another writer's file, nor a stale one
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # a killed run of the same process id left this name: take the next
            continue
        return tmp


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(final) as tmp:`` write ``tmp`` (:func:`partial_path`); when the block ends normally it is
    renamed onto ``final``, when it raises it is removed and ``final`` is left as it was. Several of these in one
    ``contextlib.ExitStack`` rename nothing unless every block's writes succeed."""
    final = Path(final)
    tmp = partial_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(final: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically (:func:`atomic_path`); returns ``final`` as a Path."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def _writer_alive(name: str) -> bool:
    """True when the process whose id the partial file ``name`` carries is running and is not this one: a run
    writing into the same folder at the same time, whose file is not a leftover."""
    m = _PID.search(name)
    if m is None or int(m.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(m.group(1)), 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # gone, or not a process id at all
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_partials(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the temporary files (:data:`PARTIAL` in the name, from :func:`partial_path`) that killed runs left in
    ``folder`` (and its subfolders with ``recursive``); returns them. A missing folder has none. A file whose
    writer (the process id in its name) is still running on this machine is left alone: two runs into one folder
    do not delete each other's files in progress (found by the breaker: the second ``anonlab redact`` into an
    ``--out`` removed the first's video as it was being written). On a file system shared by several machines a
    process id may be reused, and such a file then waits for a later start."""
    folder = Path(folder)
    gone: list[Path] = []
    if folder.is_dir():
        for f in (folder.rglob if recursive else folder.glob)(f".*{PARTIAL}-*"):
            if f.is_file() and not _writer_alive(f.name):
                f.unlink(missing_ok=True)
                gone.append(f)
    return gone
