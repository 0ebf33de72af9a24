"""The read-only catalog snapshot the processing kernel matches against (it never opens the
store: DuckDB allows one process per database file). A Parquet file of the
`catalog_matched_album` view, replaced atomically so a reader never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from scanbatch.catalog.schema import VIEW, VIEW_COLUMNS


def export_snapshot(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Write the catalog view to `path` (Parquet) via a temp file and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    columns = ", ".join(VIEW_COLUMNS)
    try:
        # COPY cannot take the file name as a prepared parameter; quote it as a literal.
        target = str(tmp).replace("'", "''")
        con.execute(
            f"COPY (SELECT {columns} FROM {VIEW} ORDER BY id) TO '{target}' (FORMAT parquet)"
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_snapshot(path: Path) -> list[tuple]:
    """Rows of the snapshot in VIEW_COLUMNS order (an in-memory DuckDB reads the Parquet)."""
    with duckdb.connect(":memory:") as con:
        return con.execute(
            f"SELECT {', '.join(VIEW_COLUMNS)} FROM read_parquet(?) ORDER BY id", [str(path)]
        ).fetchall()
