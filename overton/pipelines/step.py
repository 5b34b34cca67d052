"""The one interface every build step implements, and the runner that chains steps.

A step maps a record batch to a record batch with the same rows. It may rewrite columns, add
columns (signals), and reject rows by filling ``reject_reason`` / ``reject_step`` /
``reject_detail``. The runner removes rejected rows before the next step, so a step only ever sees
live documents, and keeps every rejected row with its reason: nothing is dropped silently.
Statistics are plain counters, summed over tasks.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from overton.corpus.schema import DOCUMENT_SCHEMA, REJECTED_SCHEMA

#: What flows between steps: the document columns plus the (null unless rejected) reject columns.
WORK_SCHEMA = REJECTED_SCHEMA

Rejection = tuple[str, dict[str, Any]] | None


class Step(ABC):
    """Record batches in, record batches out, plus statistics in ``self.stats``."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    @abstractmethod
    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Process live documents; return the same rows, possibly with rejections set."""

    def reject(self, batch: pa.RecordBatch, rejections: Sequence[Rejection]) -> pa.RecordBatch:
        """Set the reject columns of the rows whose entry is ``(reason, detail)``."""
        reasons, steps, details = [], [], []
        for rejection in rejections:
            if rejection is None:
                reasons.append(None), steps.append(None), details.append(None)
            else:
                reason, detail = rejection
                self.stats[f"rejected_{reason}"] += 1
                reasons.append(reason)
                steps.append(self.name)
                details.append(json.dumps(detail, ensure_ascii=False, sort_keys=True))
        batch = set_column(batch, "reject_reason", pa.array(reasons, pa.string()))
        batch = set_column(batch, "reject_step", pa.array(steps, pa.string()))
        return set_column(batch, "reject_detail", pa.array(details, pa.string()))


def set_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    index = batch.schema.get_field_index(name)
    field = batch.schema.field(index)
    return batch.set_column(index, field, values.cast(field.type))


def to_work_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A raw document batch with empty reject columns appended."""
    batch = batch.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
    nulls = [pa.nulls(batch.num_rows, pa.string())] * 3
    return pa.RecordBatch.from_arrays(list(batch.columns) + nulls, schema=WORK_SCHEMA)


def run_steps(steps: Sequence[Step], batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[pa.RecordBatch]]:
    """Run ``steps`` in order; return (surviving rows, rejected rows of each step)."""
    rejected = []
    for step in steps:
        if batch.num_rows == 0:
            break
        batch = step.apply(batch)
        dead = pc.is_valid(batch.column("reject_reason"))
        if pc.any(dead).as_py():
            rejected.append(batch.filter(dead))
            batch = batch.filter(pc.invert(dead))
    return batch, rejected


def merge_stats(total: dict[str, dict[str, int]], part: dict[str, dict[str, int]]) -> None:
    for step, counts in part.items():
        bucket = total.setdefault(step, {})
        for key, value in counts.items():
            bucket[key] = bucket.get(key, 0) + value
