"""The results store: the row schema lives here and nowhere else."""

from anonlab.store.parquet import (
    RESULT_SCHEMA,
    SUMMARY_SCHEMA,
    read_results,
    write_table,
)

__all__ = ["RESULT_SCHEMA", "SUMMARY_SCHEMA", "read_results", "write_table"]
