"""The layout of a build's work folder, which every stage reads and writes.

``plan.json`` (inputs, document tasks, parameters); per stage a folder of outputs and markers:
``tasks/`` (documents: ``t-NNNNN.parquet``, signatures, markers), ``exact/``, ``bands/``, ``buckets/``, ``near/``,
``shards/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.atomic import read_json
from overton.pipelines.executor import Context

#: The folder of the document stage's outputs and markers.
DOCUMENTS = "tasks"
#: Document tasks per key range of the stages that cut their keys into ranges (copies, exact dedup, the near-dedup
#: merge): a range task holds the keys of their documents, about a million at 8 MB row groups.
TASKS_PER_RANGE = 1024


def task_path(work: str | Path, index: int) -> Path:
    """The rows of document task ``index``."""
    return Path(work) / DOCUMENTS / f"t-{index:05d}.parquet"


def document_tasks(context: Context) -> list[dict[str, Any]]:
    """The document tasks of the build's plan (a refilter's carry ``preferred``)."""
    return read_json(Path(context.work) / "plan.json")["tasks"]


def key_ranges(plan: dict[str, Any]) -> int:
    """How many key ranges a stage cuts its keys into: one per :data:`TASKS_PER_RANGE` document tasks."""
    return max(1, -(-len(plan["tasks"]) // TASKS_PER_RANGE))


def range_tasks(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The tasks of a stage of one task per key range."""
    ranges = key_ranges(plan)
    return [{"index": part, "ranges": ranges} for part in range(ranges)]


def range_start(part: int, ranges: int) -> int:
    """The first 32-bit key head of range ``part`` of ``ranges`` (``part == ranges``: the end, 2^32): the heads
    ``h`` of a range are those with ``h * ranges >> 32 == part``."""
    return -(-part * (1 << 32) // ranges)


def range_bound(part: int, ranges: int) -> int:
    """The smallest 64-bit key of range ``part`` (``part == ranges``: 2^64), a key's range being its head's."""
    return range_start(part, ranges) << 32


def live_batches(context: Context, index: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The rows of a document task that no per-document step rejected."""
    if columns is not None and "reject_reason" not in columns:
        columns = [*columns, "reject_reason"]
    for batch in pq.ParquetFile(task_path(context.work, index)).iter_batches(columns=columns):
        yield batch.filter(pc.is_null(batch.column("reject_reason")))
