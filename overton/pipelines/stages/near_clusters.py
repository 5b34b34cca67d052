"""Near-dedup stage 3, one task: the clusters, from the candidate pairs of the merge stage.

It reads every pair file (:mod:`~overton.pipelines.stages.near_buckets`), drops the pairs found in
more than one band, and numbers the documents that are in a pair, in reference order. Only for those
does it read what :meth:`~overton.pipelines.dedup_near.NearDedup.decide` needs: the id, source and
date of the new ones (from their document task's rows), the id of the published ones (from the index
files), their texts to verify pairs, and in ``mode = "fineweb"`` the two signatures of each pair,
by reference from the memory-mapped signature files. ``documents_loaded`` counts them. It writes
``near/clusters.parquet``: the decision for every new document of a cluster of two or more (the
others are alone in theirs). Last, it writes this version's index (the signatures of every new
document it kept, for later builds to dedup against), streamed task by task from the signature files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.corpus.schema import REJECT_FIELDS
from overton.pipelines.dedup_near import Candidates, NearDedup, SignatureReader, TextReader, read_index, write_index
from overton.pipelines.executor import Context
from overton.pipelines.stages import near_bands, near_buckets
from overton.pipelines.stages.exact_dedup import kept_rows
from overton.pipelines.stages.near_dedup import (
    NEW,
    clusters_path,
    near_dedup_step,
    published_indexes,
    published_texts,
    signature_path,
    split_refs,
)
from overton.pipelines.stages.work import document_tasks, live_batches, task_path

_CHUNK = 1 << 16
_DECIDED = pa.schema([pa.field("id", pa.string()), *NearDedup.columns, *REJECT_FIELDS])


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    near = near_dedup_step(context.params)
    found = [np.load(path) for path in near_buckets.pair_files(context)]
    pairs = np.unique(np.concatenate([np.empty((0, 2), np.int64), *found]), axis=0)
    refs, positions = np.unique(pairs, return_inverse=True)
    published = int(np.searchsorted(refs, NEW))
    old, new = _published(context, refs[:published]), _new(context, refs[published:])
    near.stats["documents_loaded"] += len(old.ids) + len(new.ids)
    near.decide(positions.reshape(pairs.shape), new, old, _signatures(context, refs, near.hasher.params.num_perm))
    decided = []
    for start in range(0, len(new.ids), _CHUNK):
        ids = pa.array(new.ids[start:start + _CHUNK], pa.string())
        batch = pa.RecordBatch.from_arrays([ids] + [pa.nulls(len(ids), f.type) for f in _DECIDED][1:], schema=_DECIDED)
        batch = near.apply(batch)
        decided.append(batch.filter(pc.greater(batch.column("dup_cluster_size"), 1)))
    path = clusters_path(context)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_batches(decided, schema=_DECIDED), tmp, compression="zstd")
    write_index(Path(context.index_dir) / f"{Path(context.out).name}.parquet", _kept(context, near),
                near.hasher.params.num_perm)
    return {"stats": {near.name: dict(near.stats)}}


def _published(context: Context, refs: np.ndarray) -> Candidates:
    """The published documents at ``refs`` (positions in the index files): their ids and a reader of their
    texts. Only the id column of the index files is read."""
    ids: list[str] = []
    start = 0
    for _, path in published_indexes(context):
        for block, _ in read_index(path, signatures=False):
            chosen = refs[np.searchsorted(refs, start):np.searchsorted(refs, start + len(block))] - start
            ids += [block[i] for i in chosen.tolist()]
            start += len(block)
    return Candidates(ids, [], [], texts=published_texts(context, ids))


def _new(context: Context, refs: np.ndarray) -> Candidates:
    """The new documents at ``refs``: what the keep rule needs, read from their tasks' rows, and a reader of
    their texts."""
    tasks, rows = split_refs(refs)
    preferred = {t["index"]: bool(t.get("preferred")) for t in document_tasks(context)}
    found = Candidates([], [], [], [], texts=_texts(context, tasks, rows))
    for index, chosen in _by_task(tasks):
        table = _live_rows(context, index, rows[chosen], ["id", "source", "published_at"])
        found.ids += table.column("id").to_pylist()
        found.sources += table.column("source").to_pylist()
        found.published += table.column("published_at").to_pylist()
        found.preferred += [preferred[index]] * table.num_rows
    return found


def _by_task(tasks: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(task, positions of its documents) for each task among sorted ``tasks``."""
    if not len(tasks):
        return
    starts = np.flatnonzero(np.r_[True, tasks[1:] != tasks[:-1]])
    for start, stop in zip(starts.tolist(), np.r_[starts[1:], len(tasks)].tolist(), strict=True):
        yield int(tasks[start]), np.arange(start, stop)


def _live_rows(context: Context, index: int, rows: np.ndarray, columns: list[str]) -> pa.Table:
    """Live rows ``rows`` (sorted) of document task ``index``, read a batch at a time."""
    pieces, offset = [], 0
    for live in live_batches(context, index, columns):
        start, stop = np.searchsorted(rows, [offset, offset + live.num_rows])
        if stop > start:
            pieces.append(live.take(pa.array(rows[start:stop] - offset)))
        offset += live.num_rows
    return pa.Table.from_batches(pieces)


def _texts(context: Context, tasks: np.ndarray, rows: np.ndarray) -> TextReader:
    """The texts of new documents (their tasks and live rows, in reference order) at sorted positions."""

    def read(positions: np.ndarray) -> Iterator[tuple[np.ndarray, list[str]]]:
        for index, chosen in _by_task(tasks[positions]):
            yield positions[chosen], _live_rows(context, index, rows[positions[chosen]], ["text"]).column(
                "text").to_pylist()

    return read


def _signatures(context: Context, refs: np.ndarray, num_perm: int) -> SignatureReader:
    """The signatures of documents at positions in ``refs``, memory-mapped from the document tasks' signature
    files and the published runs of the band stage (written in ``mode = "fineweb"``, the one reader)."""

    def read(positions: np.ndarray) -> np.ndarray:
        chosen = refs[positions]
        new = chosen >= NEW
        result = np.empty((len(chosen), num_perm), np.uint32)
        runs, offsets = np.divmod(chosen[~new], near_bands.PUBLISHED_RUN)
        for run in np.unique(runs).tolist():
            source = near_bands.band_file(context, f"p-{run:05d}", "sig")
            result[np.flatnonzero(~new)[runs == run]] = np.load(source, mmap_mode="r")[offsets[runs == run]]
        tasks, rows = split_refs(chosen[new])
        for index in np.unique(tasks).tolist():
            task_signatures = np.load(signature_path(task_path(context.work, index)), mmap_mode="r")
            result[np.flatnonzero(new)[tasks == index]] = task_signatures[rows[tasks == index]]
        return result

    return read


def _kept(context: Context, near: NearDedup) -> Iterator[tuple[list[str], np.ndarray]]:
    """The ids and signatures of the documents exact dedup and this stage kept, in build order, task by task."""
    for t in document_tasks(context):
        ids = [doc_id for live in live_batches(context, t["index"], ["id"]) for doc_id in live.column("id").to_pylist()]
        rows = [row for row in kept_rows(context, t["index"]).tolist() if near.is_kept(ids[row])]
        signatures = np.load(signature_path(task_path(context.work, t["index"])), mmap_mode="r")
        yield [ids[row] for row in rows], signatures[np.array(rows, np.int64)]
