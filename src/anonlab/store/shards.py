"""Resumable results: one Parquet shard per chunk of images, keyed by the job's config hash.

A job (one dataset x camera x region source x defense settings x detector panel, see ``engine.job_hash``) splits
its images into fixed chunks of ``shard_images`` consecutive dataset indices. Each finished chunk is written as
``<root>/<job hash>/part-<first>-<stop>.parquet``, atomically (temp file + rename), with the chunk's failures and
skipped frames in the file's metadata. A re-run of the same job finds the finished shards and computes only the
missing ones, so a killed run resumes without losing or duplicating rows; a changed configuration hashes to a
new folder and never mixes with old shards.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from anonlab.io.atomic import atomic_path, remove_partials

_META_KEY = b"anonlab"
#: deterministic fault injection, for the resume tests: ``kill_after_write:N`` SIGKILLs this process right after
#: its N-th shard is in place, ``kill_mid_write:N`` during its N-th shard write, after the temporary file is
#: complete and before the rename. Unset (normal use) it does nothing.
FAULT_ENV = "ANONLAB_FAULT"


def _fault(point: str, k: int) -> None:
    if os.environ.get(FAULT_ENV) == f"kill_{point}:{k}":
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Chunk:
    """Dataset indices ``[start, stop)`` of one shard."""

    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"part-{self.start:07d}-{self.stop:07d}.parquet"

    def __len__(self) -> int:
        return self.stop - self.start


def plan_chunks(n: int, shard_images: int, split_index: int = 0, split_count: int = 1) -> list[Chunk]:
    """The chunks of ``n`` images this job evaluates: every ``split_count``-th chunk from ``split_index``
    (``split_count`` > 1 spreads one job's images over several processes or cluster jobs)."""
    if shard_images < 1:
        raise ValueError(f"store.shard_images must be >= 1 images, got {shard_images}")
    if split_count < 1 or not 0 <= split_index < split_count:
        raise ValueError(f"split.index must be in [0, split.count) with split.count >= 1, got index={split_index} "
                         f"count={split_count}")
    chunks = [Chunk(a, min(a + shard_images, n)) for a in range(0, n, shard_images)]
    return chunks[split_index::split_count]


class ShardStore:
    """The shards of one job under ``root/<job_hash>/``."""

    def __init__(self, root: str | os.PathLike, job_hash: str, schema: pa.Schema) -> None:
        self.dir = Path(root) / job_hash
        self.schema = schema
        self._writes = 0  # shards this store wrote (counts fault-injection points)

    def path(self, chunk: Chunk) -> Path:
        return self.dir / chunk.name

    def done(self, chunk: Chunk) -> bool:
        return self.path(chunk).is_file()

    def write(self, chunk: Chunk, rows: list[dict], meta: dict[str, Any]) -> Path:
        """Write one chunk's rows (and ``meta``: JSON-able facts such as failures) atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=self.schema)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta)})
        self._writes += 1
        k = self._writes
        path = atomic_write(table, self.path(chunk), before_rename=lambda: _fault("mid_write", k))
        _fault("after_write", k)
        return path

    def read(self, chunks: list[Chunk]) -> tuple[pa.Table, list[dict]]:
        """The rows of ``chunks`` in chunk order, and each chunk's metadata."""
        tables, metas = [], []
        for c in chunks:
            p = self.path(c)
            try:
                t = pq.read_table(p)
            except (OSError, pa.ArrowInvalid) as e:
                raise ValueError(f"results shard {p} is unreadable ({e}); delete it to recompute that chunk") from e
            if not t.schema.remove_metadata().equals(self.schema.remove_metadata()):
                raise ValueError(f"results shard {p} has another column layout than this anonlab version writes; "
                                 f"delete {self.dir} to recompute")
            metas.append(json.loads((t.schema.metadata or {}).get(_META_KEY, b"{}")))
            tables.append(t.replace_schema_metadata(None))
        table = pa.concat_tables(tables) if tables else self.schema.empty_table()
        return table, metas

    def clean_temp(self) -> int:
        """Remove the temporary files a killed writer left (:func:`anonlab.io.atomic.remove_partials`); returns how
        many."""
        return len(remove_partials(self.dir, recursive=False))


def atomic_write(table: pa.Table, path: str | os.PathLike, before_rename: Callable[[], None] | None = None) -> Path:
    """Write ``table`` to ``path`` as Parquet through :func:`anonlab.io.atomic.atomic_path` (a temporary file beside
    it, then a rename: never a half file); ``before_rename`` runs between the two (a fault-injection point)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
        if before_rename is not None:
            before_rename()
    return path
