"""The one interface every build step implements, and the runner that chains steps.

A step maps a record batch to a record batch with the same rows. It may rewrite columns, fill the
signal columns it declares in ``columns``, and reject rows by filling ``reject_reason`` /
``reject_step`` / ``reject_detail``. A :class:`Filter` splits that in two: ``signals`` measures,
``decide`` judges from the measured columns and configured thresholds only, so thresholds can be
re-tuned without measuring again. The runner removes rejected rows before the next step, so a step only ever sees
live documents, and keeps every rejected row with its reason: nothing is dropped silently.
Statistics are plain counters, summed over tasks.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overton.corpus.config import DEFAULT_PROFILE
from overton.corpus.schema import BUILD_FIELDS, DOCUMENT_SCHEMA, REJECT_FIELDS

Rejection = tuple[str, dict[str, Any]] | None


class Step(ABC):
    """Record batches in, record batches out, plus statistics in ``self.stats``."""

    name: ClassVar[str]
    #: Signal columns this step fills; declared so that every version of a build has one schema.
    columns: ClassVar[tuple[pa.Field, ...]] = ()

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


class Filter(Step):
    """Measure, then judge: the judgement reads only columns, so it can be replayed with new thresholds."""

    @abstractmethod
    def signals(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Fill this step's ``columns`` (and possibly rewrite the text); reject nothing."""

    @abstractmethod
    def decide(self, batch: pa.RecordBatch) -> list[Rejection]:
        """One entry per row from the signal columns and thresholds: ``None`` keeps it."""

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        batch = self.signals(batch)
        return self.reject(batch, self.decide(batch))


def data_schema(steps: Sequence[Step]) -> pa.Schema:
    """Kept documents: the document columns, the build's own (``profile``), then every step's signal columns in
    step order."""
    fields = list(DOCUMENT_SCHEMA) + BUILD_FIELDS
    for step in steps:
        fields += [f for f in step.columns if f.name not in {g.name for g in fields}]
    return pa.schema(fields)


def work_schema(steps: Sequence[Step]) -> pa.Schema:
    """What flows between steps and what ``rejected/`` holds: data columns plus the reject columns."""
    return pa.schema(list(data_schema(steps)) + REJECT_FIELDS)


def set_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    index = batch.schema.get_field_index(name)
    field = batch.schema.field(index)
    return batch.set_column(index, field, values.cast(field.type))


def to_work_batch(batch: pa.RecordBatch, schema: pa.Schema, profile: str | None = None) -> pa.RecordBatch:
    """A raw document batch with the columns of ``schema`` appended: ``profile`` (the profile that judges these
    documents), the signal and reject columns all null."""
    batch = batch.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
    extra = [pa.nulls(batch.num_rows, field.type) for field in schema if field.name not in DOCUMENT_SCHEMA.names]
    batch = pa.RecordBatch.from_arrays(list(batch.columns) + extra, schema=schema)
    return set_column(batch, "profile", pa.array([profile] * batch.num_rows, pa.string())) if profile else batch


def profile_names(batch: pa.RecordBatch, known: Collection[str] | None = None) -> np.ndarray:
    """Each row's profile name (:data:`DEFAULT_PROFILE` where none is set), refusing a name not in ``known``."""
    names = pc.fill_null(batch.column("profile"), DEFAULT_PROFILE).to_numpy(zero_copy_only=False).astype(str)
    unknown = set() if known is None else set(np.unique(names).tolist()) - set(known)
    if unknown:
        raise ValueError(f"documents of unknown profiles {sorted(unknown)} (known: {sorted(known)})")
    return names


def run_steps(steps: Sequence[Step], batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[pa.RecordBatch]]:
    """Run ``steps`` in order; return (surviving rows, rejected rows of each step)."""
    *rejected, live = arranged(run_steps_in_order(steps, batch), [step.name for step in steps])
    return live, rejected


def run_steps_in_order(steps: Sequence[Step], batch: pa.RecordBatch) -> pa.RecordBatch:
    """Run ``steps`` in order; return every row where it was, rejected ones with the columns they had when their
    step rejected them (later steps never see them)."""
    positions, pieces, where = np.arange(batch.num_rows), [], []
    for step in steps:
        if batch.num_rows == 0:
            break
        batch = step.apply(batch)
        dead = pc.is_valid(batch.column("reject_reason"))
        if pc.any(dead).as_py():
            mask = dead.to_numpy(zero_copy_only=False)
            pieces.append(batch.filter(dead))
            where.append(positions[mask])
            batch, positions = batch.filter(pc.invert(dead)), positions[~mask]
    pieces.append(batch)
    where.append(positions)
    table = pa.Table.from_batches(pieces, schema=batch.schema).take(np.argsort(np.concatenate(where)))
    return table.combine_chunks().to_batches()[0] if table.num_rows else batch


def arranged(batch: pa.RecordBatch, step_names: Sequence[str]) -> list[pa.RecordBatch]:
    """A batch's rows as a build's task files hold them: the rows each step rejected (in step order, a piece
    per step that rejected any), then the live rows (a piece, maybe empty); each piece in batch order."""
    steps = pc.fill_null(batch.column("reject_step"), "").to_numpy(zero_copy_only=False).astype(str)
    unknown = set(np.unique(steps).tolist()) - {"", *step_names}
    if unknown:
        raise ValueError(f"rows rejected by steps {sorted(unknown)} that are not among {list(step_names)}")
    pieces = [batch.filter(pa.array(steps == name)) for name in step_names if (steps == name).any()]
    return pieces + [batch.filter(pa.array(steps == ""))]


def merge_stats(total: dict[str, dict[str, int]], part: dict[str, dict[str, int]]) -> None:
    for step, counts in part.items():
        bucket = total.setdefault(step, {})
        for key, value in counts.items():
            bucket[key] = bucket.get(key, 0) + value
