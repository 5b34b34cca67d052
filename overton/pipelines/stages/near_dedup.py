"""Near-dedup in the build: its settings, the signatures of the document tasks, how its stages name
documents, and the decisions the shard stage replays.

Every use of :mod:`overton.pipelines.dedup_near` by the build goes through here. The document
tasks store the MinHash signatures of their live rows beside their rows (:func:`write_signatures`).
Three stages follow exact dedup: :mod:`~overton.pipelines.stages.near_bands` (sorted band keys of
every survivor and published document, in files), :mod:`~overton.pipelines.stages.near_buckets`
(the candidate pairs, a band and a key range at a time) and
:mod:`~overton.pipelines.stages.near_clusters` (the clusters, ``near/clusters.parquet``, and this
version's index for later builds). The shard stage applies the stored decisions by id
(:class:`StoredClusters`).

The stages name a document by a **reference**, an int64 that needs no count of the documents before
it: a published document by its position in the published index files (:func:`published_indexes`,
in that order), a new one by ``NEW | task << 32 | row`` (``row``: among its document task's live
rows). References sort as the documents rank on ties (published ones first, newest version first;
then build order), so the pairs they form are those positions in one list of every document would.
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
from overton.pipelines.dedup_near import NearDedup, TextReader
from overton.pipelines.executor import Context
from overton.pipelines.minhash import FINEWEB_BANDS_ROWS, MinHashParams
from overton.pipelines.step import Step, set_column

NAME = "near"
#: The first reference of a new document: every published one ranks before it.
NEW = np.int64(1 << 62)
ROW_BITS = 32


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
    signatures[live] = near.hasher.signatures(pc.filter(measured.column("text"), pa.array(live)))
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
        live_texts = pc.filter(output.column("text"), pc.is_null(output.column("reject_reason")))
        signatures = near.hasher.signatures(live_texts)
        stats = {near.name: {"signatures_computed": len(live_texts)}}
    with atomic_path(signature_path(task_file)) as tmp, open(tmp, "wb") as handle:
        np.save(handle, signatures)
    return stats


def new_refs(task: int, rows: np.ndarray) -> np.ndarray:
    """The references of live rows ``rows`` of document task ``task``."""
    return NEW | (np.int64(task) << np.int64(ROW_BITS)) | rows.astype(np.int64)


def split_refs(refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(task, live row) of new documents' references."""
    return (refs - NEW) >> np.int64(ROW_BITS), refs & np.int64((1 << ROW_BITS) - 1)


def published_indexes(context: Context) -> list[tuple[Version, Path]]:
    """The near-dedup index files of the published versions, in the order their documents rank: newest first,
    down to the last refilter (whose index holds everything before it)."""
    indexes = []
    for location in reversed(context.versions):
        version = Version.open(location)
        path = Path(context.index_dir) / f"{version.name}.parquet"
        if path.is_file():
            indexes.append((version, path))
        if version.manifest.get("refilter_of"):
            break
    return indexes


def published_texts(context: Context, ids: list[str]) -> TextReader:
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


def clusters_path(context: Context) -> Path:
    return Path(context.work) / NAME / "clusters.parquet"


class StoredClusters(Step):
    """The cluster stage's decisions applied by id: what :meth:`NearDedup.apply` gives each document."""

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
