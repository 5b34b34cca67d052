"""The exact dedup stage, one task: exact dedup over the whole build, on the normalised text and then on the id.

Reads only the dedup columns of the document tasks' files (and the keys of the parent version, whose
documents win every tie). Writes, per document task, ``exact/t-NNNNN.parquet``: for each of that
task's live rows in file order, the step that rejected it (``dedup_content_sha256``, ``dedup_id`` or
null), the reason and the detail. The shard stage replays these decisions row by row
(:class:`Replayed`), so it never holds the dedup index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.corpus.dataset import Version
from overton.pipelines.dedup_exact import ExactDedup
from overton.pipelines.executor import Context
from overton.pipelines.stages.work import document_tasks, live_batches
from overton.pipelines.step import Rejection, Step

NAME = "exact"
_COLUMNS = ["id", "content_sha256", "reject_reason", "reject_step", "reject_detail"]
_DECISIONS = pa.schema([("step", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


def steps() -> tuple[ExactDedup, ExactDedup]:
    return ExactDedup("content_sha256", "exact_duplicate"), ExactDedup("id", "duplicate_id")


def decisions_path(context: Context, index: int) -> Path:
    return Path(context.work) / NAME / f"t-{index:05d}.parquet"


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    tasks = document_tasks(context)
    by_hash, by_id = (ExactDedup(step.key_column, step.reason, _known(context, step.key_column))
                      for step in steps())
    for t in tasks:  # first pass: the winner of every text; second: of every id among the texts' winners
        for live in live_batches(context, t["index"], _COLUMNS):
            by_hash.index(live, bool(t.get("preferred")))
    for t in tasks:
        for live in live_batches(context, t["index"], _COLUMNS):
            hashed = by_hash.apply(live)
            by_id.index(hashed.filter(pc.is_null(hashed.column("reject_reason"))), bool(t.get("preferred")))
    by_hash.rewind()
    for t in tasks:  # decisions, in the same order
        columns: dict[str, list] = {"step": [], "reason": [], "detail": []}
        for live in live_batches(context, t["index"], _COLUMNS):
            hashed = by_hash.apply(live)
            first = pc.is_null(hashed.column("reject_reason"))
            second = iter(by_id.apply(hashed.filter(first)).to_pylist())
            for row, survived in zip(hashed.to_pylist(), first.to_pylist(), strict=True):
                decided = next(second) if survived else row
                columns["step"].append(decided["reject_step"])
                columns["reason"].append(decided["reject_reason"])
                columns["detail"].append(decided["reject_detail"])
        path = decisions_path(context, t["index"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(pa.table(columns, schema=_DECISIONS), tmp, compression="zstd")
    return {"stats": {step.name: dict(step.stats) for step in (by_hash, by_id)}}


def _known(context: Context, column: str) -> list[tuple[str, str]]:
    """(key, id) of every document the parent version kept."""
    if not context.versions:
        return []
    pairs = []
    for batch in Version.open(context.versions[-1]).iter_batches("data", columns=[column, "id"]):
        pairs += zip(batch.column(column).to_pylist(), batch.column("id").to_pylist(), strict=True)
    return pairs


class Replayed(Step):
    """An exact dedup step's stored decisions, applied to the same rows in the same order as it made them."""

    def __init__(self, name: str, decisions: Iterator[Rejection]):
        super().__init__()
        self.name = name
        self.decisions = decisions

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self.reject(batch, [next(self.decisions) for _ in range(batch.num_rows)])


def replayed(context: Context, index: int) -> list[Step]:
    """The exact dedup steps of document task ``index``, replaying this stage's decisions."""
    rows = pq.read_table(decisions_path(context, index)).to_pylist()
    by_hash, by_id = steps()

    def decisions(name: str, reached: bool) -> Iterator[Rejection]:
        for row in rows:
            if reached or row["step"] != by_hash.name:  # the id step only sees the texts' winners
                yield (row["reason"], json.loads(row["detail"])) if row["step"] == name else None

    return [Replayed(by_hash.name, decisions(by_hash.name, True)), Replayed(by_id.name, decisions(by_id.name, False))]
