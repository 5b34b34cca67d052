"""The exact dedup stages: exact dedup over the whole build, on the normalised text and then on the id.

Three stages, so that no task holds the keys of the whole build:

1. ``exact_hash``, one task per range of text digests: the winner of every text in its range (reading only the
   dedup columns of the document tasks' files, and the keys of the parent version, whose documents win every
   tie), and ``keys/hash-NNNNN.parquet``: the (task, row) of each loser in its range and the id it duplicates;
2. ``exact_id``, one task per range of id digests, the same for ids among the texts' winners
   (``keys/id-NNNNN.parquet``);
3. ``exact_dedup``, one task per document task: ``exact/t-NNNNN.parquet``, for each of that task's live rows
   in file order, the step that rejected it (``dedup_content_sha256``, ``dedup_id`` or null), the reason and
   the detail. The shard stage replays these decisions row by row (:class:`Replayed`), so it never holds an
   index either.

A range covers the documents of :data:`~overton.pipelines.stages.work.TASKS_PER_RANGE` document tasks (about a
million at 8 MB row groups), whose keys one task holds (:class:`~overton.pipelines.dedup_exact.ExactDedup`: a few
hundred bytes each). A key's winner depends only on the documents of that key, in build order, so the ranges decide
what one task over everything would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.corpus.dataset import Version
from overton.pipelines.dedup_exact import ExactDedup, digest
from overton.pipelines.executor import Context
from overton.pipelines.stages.work import document_tasks, live_batches, range_start, range_tasks
from overton.pipelines.step import Rejection, Step

NAME = "exact"
KEYS = "keys"
_REASONS = {"content_sha256": "exact_duplicate", "id": "duplicate_id"}
_COLUMNS = ["id", "content_sha256", "reject_reason", "reject_step", "reject_detail"]
_DECISIONS = pa.schema([("step", pa.string()), ("reason", pa.string()), ("detail", pa.string())])
_LOSERS = pa.schema([("row", pa.int64()), ("duplicate_of", pa.string())])  # row: task << 32 | live row


def step(column: str, known: Iterable[tuple[str, str]] = ()) -> ExactDedup:
    """The exact dedup step on ``column`` (``content_sha256`` or ``id``), whose ``known`` (key, id) pairs win."""
    return ExactDedup(column, _REASONS[column], known)


def steps() -> tuple[ExactDedup, ExactDedup]:
    """Both steps, in the order they run: the texts' winners, then the ids among those."""
    return step("content_sha256"), step("id")


def tasks(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The tasks of each key-range stage."""
    return range_tasks(plan)


def decisions_path(context: Context, index: int) -> Path:
    return Path(context.work) / NAME / f"t-{index:05d}.parquet"


def kept_rows(context: Context, index: int) -> np.ndarray:
    """The live rows of document task ``index`` that exact dedup kept (positions among its live rows)."""
    step = pq.read_table(decisions_path(context, index), columns=["step"]).column("step")
    return np.flatnonzero(pc.is_null(step).to_numpy(zero_copy_only=False))


def losers_path(context: Context, kind: str, index: int) -> Path:
    return Path(context.work) / KEYS / f"{kind}-{index:05d}.parquet"


def _in_range(keys: list[str], task: dict[str, Any]) -> np.ndarray:
    """Which keys fall in the range of ``task``: by the first 4 bytes of their digest."""
    heads = np.array([int.from_bytes(digest(key)[:4], "big") for key in keys], np.int64)
    low, high = (range_start(part, task["ranges"]) for part in (task["index"], task["index"] + 1))
    return (heads >= low) & (heads < high)


def _rows(context: Context, exclude: np.ndarray | None = None) -> Iterator[tuple[pa.RecordBatch, np.ndarray, bool]]:
    """Every live row of the build, batch by batch in build order, with its (task << 32 | live row) and whether its
    task is preferred; without the rows in ``exclude`` (sorted)."""
    for t in document_tasks(context):
        start = 0
        for live in live_batches(context, t["index"], _COLUMNS):
            rows = (np.int64(t["index"]) << np.int64(32)) + np.arange(start, start + live.num_rows, dtype=np.int64)
            start += live.num_rows
            if exclude is not None and len(exclude):
                at = np.minimum(np.searchsorted(exclude, rows), len(exclude) - 1)
                keep = exclude[at] != rows
                live, rows = live.filter(pa.array(keep)), rows[keep]
            yield live, rows, bool(t.get("preferred"))


def _decide(context: Context, task: dict[str, Any], step: ExactDedup, kind: str,
            exclude: np.ndarray | None) -> dict[str, Any]:
    """One key range of ``step``: index its rows, then write the losers."""
    def chosen() -> Iterator[tuple[pa.RecordBatch, np.ndarray, bool]]:
        for live, rows, preferred in _rows(context, exclude):
            mask = _in_range(live.column(step.key_column).to_pylist(), task)
            yield live.filter(pa.array(mask)), rows[mask], preferred

    for live, _, preferred in chosen():
        step.index(live, preferred)
    lost, of = [], []
    for live, rows, _ in chosen():
        decided = step.apply(live)
        dead = pc.is_valid(decided.column("reject_reason")).to_numpy(zero_copy_only=False)
        lost.append(rows[dead])
        of += [json.loads(detail)["duplicate_of"]
               for detail in decided.column("reject_detail").filter(pa.array(dead)).to_pylist()]
    path = losers_path(context, kind, task["index"])
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.concatenate(lost) if lost else np.empty(0, np.int64)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table({"row": rows, "duplicate_of": pa.array(of, pa.string())}, schema=_LOSERS), tmp,
                       compression="zstd", row_group_size=1 << 16)
    return {"stats": {step.name: dict(step.stats)}}


def run_hash(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    return _decide(context, task, step("content_sha256", _known(context, "content_sha256", task)), "hash", None)


def run_id(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    losers = np.sort(_losers(context, "hash")[0])  # the texts' losers of every range: not the id step's business
    return _decide(context, task, step("id", _known(context, "id", task)), "id", losers)


def _losers(context: Context, kind: str, index: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The rows every range of ``kind`` rejected (of document task ``index`` only, if given: each file is in
    build order, so its row groups' statistics skip the others), and the id each duplicates."""
    bounds = None if index is None else [("row", ">=", index << 32), ("row", "<", (index + 1) << 32)]
    tables = [pq.read_table(path, filters=bounds, schema=_LOSERS)
              for path in sorted((Path(context.work) / KEYS).glob(f"{kind}-*.parquet"))]
    table = pa.concat_tables(tables) if tables else _LOSERS.empty_table()
    return table.column("row").to_numpy(), table.column("duplicate_of").to_pylist()


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    """The decisions of one document task's live rows, from the losers of every key range."""
    index = task["index"]
    count = sum(batch.num_rows for batch in live_batches(context, index, ["id"]))
    columns: dict[str, list] = {"step": [None] * count, "reason": [None] * count, "detail": [None] * count}
    by_hash, by_id = steps()
    for kind, step in (("hash", by_hash), ("id", by_id)):
        rows, of = _losers(context, kind, index)
        for position, row in enumerate((rows & 0xFFFFFFFF).tolist()):
            columns["step"][row] = step.name
            columns["reason"][row] = step.reason
            columns["detail"][row] = json.dumps({"duplicate_of": of[position]}, ensure_ascii=False, sort_keys=True)
    path = decisions_path(context, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(columns, schema=_DECISIONS), tmp, compression="zstd")
    return {"stats": {}}


def _known(context: Context, column: str, task: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, id) of every document the parent version kept whose key is in the range of ``task``."""
    if not context.versions:
        return []
    pairs = []
    for batch in Version.open(context.versions[-1]).iter_batches("data", columns=[column, "id"]):
        keys = batch.column(column).to_pylist()
        mask = _in_range(keys, task)
        pairs += zip(pc.filter(batch.column(column), pa.array(mask)).to_pylist(),
                     pc.filter(batch.column("id"), pa.array(mask)).to_pylist(), strict=True)
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
