"""Parquet shards: a rolling writer sized for streaming and a reader that streams record batches.

Row groups are cut by uncompressed size so that a reader never needs more than one row group in
memory; files roll over at a target size. Every file is written under a temporary name and renamed
into place once complete (see :mod:`overton.corpus.atomic`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from overton.corpus.atomic import commit, temporary_name

MB = 1 << 20


@dataclass(frozen=True)
class ShardSettings:
    target_bytes: int = 256 * MB
    row_group_bytes: int = 32 * MB
    compression: str = "zstd"
    compression_level: int = 3


@dataclass
class WrittenShard:
    path: Path
    rows: int
    row_groups: list[int] = field(default_factory=list)


class ShardWriter:
    """Write batches of one schema to ``<folder>/<prefix>-NNNNN.parquet`` files.

    Batches are buffered until ``row_group_bytes`` and written as one row group; a file is closed
    and committed once it reaches ``target_bytes``. ``close()`` commits the last file and returns
    every shard written, in order.
    """

    def __init__(
        self,
        folder: Path,
        schema: pa.Schema,
        settings: ShardSettings = ShardSettings(),
        prefix: str = "part",
        first_index: int = 0,
    ):
        self.folder = folder
        self.schema = schema
        self.settings = settings
        self.prefix = prefix
        self.index = first_index
        self.written: list[WrittenShard] = []
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._current: WrittenShard | None = None
        self._tmp: Path | None = None

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        if batch.schema != self.schema:
            batch = batch.select(self.schema.names).cast(self.schema)
        for piece in batch.to_batches() if isinstance(batch, pa.Table) else [batch]:
            self._buffer.append(piece)
            self._buffered_bytes += piece.nbytes
            if self._buffered_bytes >= self.settings.row_group_bytes:
                self._flush_row_group()

    def close(self) -> list[WrittenShard]:
        self._flush_row_group()
        self._finish_file()
        return self.written

    def abort(self) -> None:
        """Drop the file being written (used when a step fails)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()

    def _open_file(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{self.prefix}-{self.index:05d}.parquet"
        self.index += 1
        self._tmp = temporary_name(final)
        self._current = WrittenShard(path=final, rows=0)
        self._writer = pq.ParquetWriter(
            self._tmp,
            self.schema,
            compression=self.settings.compression,
            compression_level=self.settings.compression_level,
            write_page_index=True,
            write_statistics=True,
            store_schema=True,
        )

    def _flush_row_group(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self._open_file()
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        self._writer.write_table(table, row_group_size=table.num_rows)
        self._current.rows += table.num_rows
        self._current.row_groups.append(table.num_rows)
        self._buffer, self._buffered_bytes = [], 0
        if self._tmp.stat().st_size >= self.settings.target_bytes:
            self._finish_file()

    def _finish_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        commit(self._tmp, self._current.path)
        self.written.append(self._current)
        self._writer, self._current, self._tmp = None, None, None


def iter_batches(
    path: Path,
    columns: Sequence[str] | None = None,
    row_groups: Sequence[int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream a shard row group by row group (never the whole file in memory)."""
    parquet = pq.ParquetFile(path)
    groups = range(parquet.num_row_groups) if row_groups is None else row_groups
    for group in groups:
        table = parquet.read_row_group(group, columns=list(columns) if columns else None)
        yield from table.to_batches()


def row_group_rows(path: Path) -> list[int]:
    metadata = pq.ParquetFile(path).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
