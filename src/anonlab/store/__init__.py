"""The results store: the row schema lives here and nowhere else."""

from anonlab.store.parquet import (
    EVIDENCE_COLUMNS,
    IDENTITY_SCHEMA,
    RESULT_SCHEMA,
    SUMMARY_SCHEMA,
    read_results,
    write_table,
)
from anonlab.store.shards import Chunk, ShardStore, atomic_write, plan_chunks

__all__ = ["EVIDENCE_COLUMNS", "IDENTITY_SCHEMA", "RESULT_SCHEMA", "SUMMARY_SCHEMA", "Chunk", "ShardStore", "atomic_write",
           "plan_chunks", "read_results", "write_table"]
