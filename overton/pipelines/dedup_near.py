"""Near-duplicate removal over a whole build: MinHash LSH candidates, verified, connected components.

Signatures are computed in the parallel tasks (:mod:`overton.pipelines.minhash`) and stored beside
each task's output; this step only reads them. Candidate pairs come from equal band keys; each is
verified against the estimated Jaccard (``threshold``: the build passes the configured threshold
minus a margin for the estimate's error); clusters are the connected components of
the verified pairs (scipy's sparse-graph union-find). One document per cluster is kept by a fixed
rule: documents of earlier versions first (they are published), then preferred ones (in a refilter,
those its parent version kept), then source priority, then the earliest ``published_at``, then the
smallest id. Every document gets ``dup_cluster`` (the id of its
cluster's kept document) and ``dup_cluster_size``; the others are rejected as ``near_duplicate``
with ``duplicate_of`` and the estimated Jaccard.

Memory: 448 bytes of signature plus a band key per document; the decision table holds only the
documents that belong to a cluster of two or more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from overton.corpus.atomic import atomic_path
from overton.pipelines.minhash import EMPTY, MinHasher, MinHashParams, estimated_jaccard
from overton.pipelines.step import Step, set_column

_VERIFY_CHUNK = 1 << 16
INDEX_FILE = "near_dedup.parquet"


@dataclass
class Candidates:
    """Documents taking part in near-dedup: ids, signatures and what the keep rule needs."""

    ids: list[str]
    signatures: np.ndarray  # (n, num_perm) uint32
    sources: list[str]
    published: list[datetime | None]
    preferred: list[bool] = field(default_factory=list)  # per document; empty: none

    @classmethod
    def empty(cls, num_perm: int) -> Candidates:
        return cls([], np.empty((0, num_perm), np.uint32), [], [])


def save_index(path: Path, ids: Sequence[str], signatures: np.ndarray) -> None:
    """The signatures of the documents a version added, for later builds to dedup against."""
    width = signatures.shape[1] * 4
    column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(ids), [None, pa.py_buffer(np.ascontiguousarray(signatures, np.uint32).tobytes())])
    table = pa.table({"id": pa.array(list(ids), pa.string()), "signature": column})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def load_index(path: Path, num_perm: int) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(path)
    data = table.column("signature").combine_chunks().buffers()[1]
    signatures = np.frombuffer(data, np.uint32)[: table.num_rows * num_perm].reshape(table.num_rows, num_perm)
    return table.column("id").to_pylist(), signatures


class NearDedup(Step):
    name = "near_dedup"
    columns = (pa.field("dup_cluster", pa.string()), pa.field("dup_cluster_size", pa.int32()))

    def __init__(self, params: MinHashParams, threshold: float, source_priority: Sequence[str] = ()):
        super().__init__()
        self.hasher = MinHasher(params)
        self.threshold = threshold
        self.priority = {source: rank for rank, source in enumerate(source_priority)}
        # id -> (kept id, cluster size, estimated Jaccard with the kept one), for clusters of 2 or more
        self._decisions: dict[str, tuple[str, int, float]] = {}

    def index(self, new: Candidates, old: Candidates) -> None:
        """Find the clusters among ``new`` documents and between them and ``old`` (published) ones."""
        signatures = np.concatenate([old.signatures, new.signatures])
        self.stats["signatures_loaded"] += len(old.ids)
        pairs = self._candidate_pairs(signatures)
        self.stats["candidate_pairs"] += len(pairs)
        pairs = pairs[self._similar(signatures, pairs)]
        self.stats["verified_pairs"] += len(pairs)
        n = len(signatures)
        graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        sizes = np.bincount(labels)
        ids = old.ids + new.ids
        n_old = len(old.ids)
        members: dict[int, list[int]] = {}
        for doc in np.flatnonzero(sizes[labels] > 1):
            members.setdefault(int(labels[doc]), []).append(int(doc))
        for docs in members.values():
            kept = min(docs, key=lambda d: self._rank(d, n_old, new))
            for doc in docs:
                if doc >= n_old:
                    similarity = float(estimated_jaccard(signatures[doc], signatures[kept]))
                    self._decisions[ids[doc]] = (ids[kept], len(docs), similarity)
        self.stats["clusters"] += len(members)

    def _rank(self, doc: int, n_old: int, new: Candidates) -> tuple:
        if doc < n_old:
            return (0, 0, 0, 0, "", doc)
        i = doc - n_old
        published = new.published[i]
        preferred = bool(new.preferred) and new.preferred[i]
        return (1, not preferred, self.priority.get(new.sources[i], len(self.priority)), published is None,
                published or datetime.min, new.ids[i])

    def _candidate_pairs(self, signatures: np.ndarray) -> np.ndarray:
        """(k, 2) document pairs sharing a band key; each bucket links its members to its first one."""
        usable = np.flatnonzero(~(signatures == EMPTY).all(axis=1))
        keys = self.hasher.band_keys(signatures[usable])
        pairs = []
        for band in range(keys.shape[1]):
            order = np.argsort(keys[:, band], kind="stable")
            sorted_keys = keys[order, band]
            starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
            leader = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            others = np.flatnonzero(leader != np.arange(len(order)))
            pairs.append(np.stack([usable[order[leader[others]]], usable[order[others]]], axis=1))
        if not pairs:
            return np.empty((0, 2), np.int64)
        return np.unique(np.concatenate(pairs), axis=0)

    def _similar(self, signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        keep = np.empty(len(pairs), bool)
        for start in range(0, len(pairs), _VERIFY_CHUNK):
            chunk = pairs[start:start + _VERIFY_CHUNK]
            keep[start:start + len(chunk)] = (
                estimated_jaccard(signatures[chunk[:, 0]], signatures[chunk[:, 1]]) >= self.threshold)
        return keep

    def is_kept(self, doc_id: str) -> bool:
        return self._decisions.get(doc_id, (doc_id,))[0] == doc_id

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        clusters, sizes, rejections = [], [], []
        for doc_id in batch.column("id").to_pylist():
            kept, size, similarity = self._decisions.get(doc_id, (doc_id, 1, 1.0))
            clusters.append(kept)
            sizes.append(size)
            rejections.append(None if kept == doc_id else
                              ("near_duplicate", {"duplicate_of": kept, "jaccard": round(similarity, 4)}))
        batch = set_column(batch, "dup_cluster", pa.array(clusters, pa.string()))
        batch = set_column(batch, "dup_cluster_size", pa.array(sizes, pa.int32()))
        return self.reject(batch, rejections)
