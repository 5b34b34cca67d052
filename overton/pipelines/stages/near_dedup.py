"""Near-dedup in the build: signatures in the document tasks, then stage 3, one task, the clusters.

Every use of :mod:`overton.pipelines.dedup_near` by the build is here. The document tasks store the
MinHash signatures of their live rows beside their rows (:func:`write_signatures`). This stage takes
the documents exact dedup kept, with their signatures, and the signatures of every published
document (the index in ``state/near_dedup/<name>/``), finds the clusters, and writes
``near/clusters.parquet``: the decision for every document of a cluster of two or more (the others
are alone in theirs). It also writes this version's index, for later builds to dedup against. The
shard stage applies the stored decisions by id (:class:`StoredClusters`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.corpus.dataset import Version
from overton.corpus.errors import Refused
from overton.corpus.schema import REJECT_FIELDS
from overton.pipelines.dedup_near import Candidates, NearDedup, TextReader, load_index, save_index
from overton.pipelines.executor import Context
from overton.pipelines.minhash import FINEWEB_BANDS_ROWS, MinHashParams
from overton.pipelines.stages.exact_dedup import decisions_path
from overton.pipelines.stages.work import document_tasks, live_batches, task_path
from overton.pipelines.step import Step, set_column

NAME = "near"
_CHUNK = 1 << 16
_DECIDED = pa.schema([pa.field("id", pa.string()), *NearDedup.columns, *REJECT_FIELDS])


def near_dedup_step(params: dict[str, Any]) -> NearDedup | None:
    settings = params["near_dedup"]
    if not settings["enabled"]:
        return None
    fineweb = settings["mode"] == "fineweb"
    return NearDedup(minhash_params(settings), settings["threshold"], settings["source_priority"], verify=not fineweb)


def minhash_params(settings: dict[str, Any]) -> MinHashParams:
    """The MinHash settings of ``[near_dedup]`` as a manifest records them (before modes: verified)."""
    bands, rows = FINEWEB_BANDS_ROWS if settings.get("mode") == "fineweb" else (settings["bands"], settings["rows"])
    return MinHashParams(bands=bands, rows=rows, ngram=settings["ngram"], seed=settings["seed"])


def signature_path(task_file: Path) -> Path:
    return task_file.with_name(task_file.stem + ".sig.npy")


def live_signatures(measured: pa.Table, params: dict[str, Any], stats: dict[str, dict[str, int]]) -> np.ndarray | None:
    """The signatures of the live rows of ``measured`` (zero for the others), or None when near-dedup is off;
    counted in ``stats``."""
    near = near_dedup_step(params)
    if near is None:
        return None
    live = pc.is_null(measured.column("reject_reason")).to_numpy(zero_copy_only=False)
    signatures = np.zeros((measured.num_rows, near.hasher.params.num_perm), np.uint32)
    signatures[live] = near.hasher.signatures(pc.filter(measured.column("text"), pa.array(live)).to_pylist())
    stats[near.name] = {"signatures_computed": int(live.sum())}
    return signatures


def write_signatures(task_file: Path, output: pa.Table, params: dict[str, Any],
                     signatures: np.ndarray | None = None) -> dict[str, dict[str, int]]:
    """The signatures of a document task's live rows, in file order (computed here unless given); returns the
    statistics of what it computed."""
    near = near_dedup_step(params)
    if near is None:
        return {}
    stats = {}
    if signatures is None:
        live_texts = pc.filter(output.column("text"), pc.is_null(output.column("reject_reason"))).to_pylist()
        signatures = near.hasher.signatures(live_texts)
        stats = {near.name: {"signatures_computed": len(live_texts)}}
    with atomic_path(signature_path(task_file)) as tmp, open(tmp, "wb") as handle:
        np.save(handle, signatures)
    return stats


def clusters_path(context: Context) -> Path:
    return Path(context.work) / NAME / "clusters.parquet"


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    near = near_dedup_step(context.params)
    candidates = _survivors(context, near)
    near.index(candidates, _published(context, near))
    decided = []
    for start in range(0, len(candidates.ids), _CHUNK):
        ids = pa.array(candidates.ids[start:start + _CHUNK], pa.string())
        batch = pa.RecordBatch.from_arrays([ids] + [pa.nulls(len(ids), f.type) for f in _DECIDED][1:], schema=_DECIDED)
        batch = near.apply(batch)
        decided.append(batch.filter(pc.greater(batch.column("dup_cluster_size"), 1)))
    path = clusters_path(context)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_batches(decided, schema=_DECIDED), tmp, compression="zstd")
    kept = [i for i, doc_id in enumerate(candidates.ids) if near.is_kept(doc_id)]
    save_index(Path(context.index_dir) / f"{Path(context.out).name}.parquet", [candidates.ids[i] for i in kept],
               candidates.signatures[kept])
    return {"stats": {near.name: dict(near.stats)}}


def _survivors(context: Context, near: NearDedup) -> Candidates:
    """The documents exact dedup kept, in build order, with the signatures their tasks computed and a reader of
    their texts."""
    ids, blocks, sources, published, preferred, chosen = [], [], [], [], [], []
    offset = 0  # of the task's first live row among every task's live rows
    for t in document_tasks(context):
        live = pa.Table.from_batches(list(live_batches(context, t["index"], ["id", "source", "published_at"])))
        kept = pc.is_null(pq.read_table(decisions_path(context, t["index"])).column("step"))
        mask = kept.to_numpy(zero_copy_only=False).astype(bool)
        live = live.filter(kept)
        blocks.append(np.load(signature_path(task_path(context.work, t["index"])))[mask])
        chosen.append(offset + np.flatnonzero(mask))
        offset += len(mask)
        ids += live.column("id").to_pylist()
        sources += live.column("source").to_pylist()
        published += live.column("published_at").to_pylist()
        preferred += [bool(t.get("preferred"))] * live.num_rows
    width = near.hasher.params.num_perm
    signatures = np.concatenate(blocks) if blocks else np.empty((0, width), np.uint32)
    rows = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
    return Candidates(ids, signatures, sources, published, preferred, _live_texts(context, rows))


def _live_texts(context: Context, rows: np.ndarray) -> TextReader:
    """The texts of the live task rows at ``rows`` (positions among every task's live rows, in build order)."""

    def read(positions: np.ndarray) -> Iterator[tuple[np.ndarray, list[str]]]:
        wanted, offset = rows[positions], 0
        for t in document_tasks(context):
            for live in live_batches(context, t["index"], ["text"]):
                start, stop = np.searchsorted(wanted, [offset, offset + live.num_rows])
                if stop > start:
                    yield positions[start:stop], live.column("text").take(wanted[start:stop] - offset).to_pylist()
                offset += live.num_rows

    return read


def _published(context: Context, near: NearDedup) -> Candidates:
    """Signatures of every document already published, from the index kept in state/ (computed again from
    the parent's texts for a version indexed with other MinHash settings), and a reader of their texts."""
    params = near.hasher.params
    ids, blocks, stale = [], [], []
    for location in reversed(context.versions):  # a refiltered version's index holds everything before it
        version = Version.open(location)
        path = Path(context.index_dir) / f"{version.name}.parquet"
        if path.is_file():
            version_ids, signatures = load_index(path)
            then = minhash_params(version.manifest["parameters"]["near_dedup"])
            if (then.num_perm, then.ngram, then.seed) != (params.num_perm, params.ngram, params.seed):
                stale.append(np.arange(len(ids), len(ids) + len(version_ids)))
                signatures = np.empty((len(version_ids), params.num_perm), np.uint32)
            ids += version_ids
            blocks.append(signatures)
        if version.manifest.get("refilter_of"):
            break
    signatures = np.concatenate(blocks) if blocks else np.empty((0, params.num_perm), np.uint32)
    texts = _published_texts(context, ids)
    if stale:
        for positions, chunk in texts(np.concatenate(stale)):
            signatures[positions] = near.hasher.signatures(chunk)
            near.stats["signatures_recomputed"] += len(chunk)
    return Candidates(ids, signatures, [], [], texts=texts)


def _published_texts(context: Context, ids: list[str]) -> TextReader:
    """The texts of published documents by id, from the parent version's data shards (a version holds every
    document published before it), read row group by row group."""

    def read(positions: np.ndarray) -> Iterator[tuple[np.ndarray, list[str]]]:
        wanted = {ids[position]: position for position in positions.tolist()}
        if not wanted:
            return
        parent = Version.open(context.versions[-1])
        value_set = pa.array(sorted(wanted), pa.string())
        found = 0
        for entry in parent.files("data"):
            with parent.open_file(entry) as handle:
                shard = pq.ParquetFile(handle)
                for group in range(shard.num_row_groups):
                    hit = pc.is_in(shard.read_row_group(group, columns=["id"]).column("id"), value_set=value_set)
                    if pc.any(hit).as_py():
                        rows = shard.read_row_group(group, columns=["id", "text"]).filter(hit)
                        found += rows.num_rows
                        yield (np.array([wanted[i] for i in rows.column("id").to_pylist()], np.int64),
                               rows.column("text").to_pylist())
        if found != len(wanted):
            raise Refused(f"{parent.path}: {len(wanted) - found} documents of the near-dedup index "
                          f"{context.index_dir} are not in the version's data; rebuild from raw (`overton build` in "
                          "a new workspace)")

    return read


class StoredClusters(Step):
    """This stage's decisions applied by id: what :meth:`NearDedup.apply` gives each document."""

    name = NearDedup.name

    def __init__(self, decided: pa.Table):
        super().__init__()
        self.decided = {row["id"]: row for row in decided.to_pylist()}

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        ids = batch.column("id").to_pylist()
        rows = [self.decided.get(doc_id) for doc_id in ids]
        clusters = [row["dup_cluster"] if row else doc_id for row, doc_id in zip(rows, ids, strict=True)]
        batch = set_column(batch, "dup_cluster", pa.array(clusters, pa.string()))
        batch = set_column(batch, "dup_cluster_size", pa.array([row["dup_cluster_size"] if row else 1 for row in rows],
                                                               pa.int32()))
        return self.reject(batch, [(row["reject_reason"], json.loads(row["reject_detail"]))
                                   if row and row["reject_reason"] else None for row in rows])


def replayed(context: Context) -> list[Step]:
    """The near-dedup step of the shard stage, if near-dedup is on."""
    if near_dedup_step(context.params) is None:
        return []
    return [StoredClusters(pq.read_table(clusters_path(context)))]
