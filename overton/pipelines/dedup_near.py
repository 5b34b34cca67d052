"""Near-duplicate removal over a whole build: MinHash LSH candidates, verified exactly, connected components.

Signatures are computed in the parallel tasks (:mod:`overton.pipelines.minhash`) and stored beside
each task's output. Candidate pairs come from equal band keys: each bucket (documents sharing a key
in one band) links its members to its first one (:func:`band_pairs`). The build finds them through
files, a band and a range of keys at a time (:mod:`overton.pipelines.stages.near_bands`,
:mod:`~overton.pipelines.stages.near_buckets`), then hands them to :meth:`NearDedup.decide`;
:meth:`NearDedup.index` does the same for documents already in memory (benchmarks, tests). Each is
verified by the true Jaccard of the two documents' shingle sets (the shingles the signatures hash,
recomputed from the texts of the documents in candidate pairs, and of no others) against
``threshold``: the 100-slot estimate is off by about 0.04 at 0.8, enough to throw away true pairs
with false ones, and the exact value costs one read of the candidates' texts. With ``verify`` off
(``mode = "fineweb"``) every candidate pair is merged, as datatrove does.

Clusters are the connected components of the verified pairs (scipy's sparse-graph union-find). One
document per cluster is kept by a fixed rule: documents of earlier versions first (they are
published), then preferred ones (in a refilter, those its parent version kept), then source
priority, then the earliest ``published_at``, then the smallest id. Every document gets
``dup_cluster`` (the id of its cluster's kept document) and ``dup_cluster_size``; the others are
rejected as ``near_duplicate`` with ``duplicate_of`` and ``jaccard``, their true Jaccard with the kept
document (the estimate when unverified).

Memory of :meth:`NearDedup.decide`: the candidate pairs, and for the documents in them only (never
for every document) what the keep rule needs and their shingle sets (4 bytes per distinct
shingle), read in groups of ``DOCS_PER_GROUP`` documents, two groups at a time; unverified, the two
signatures of a block of pairs at a time. The decision table holds only the documents that belong
to a cluster of two or more. Band keys and signatures of every document are never held at once in a
build: they stay in files, read a band and a key range at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.pipelines.minhash import EMPTY, MinHasher, MinHashParams, estimated_jaccard
from overton.pipelines.step import Step, set_column

_VERIFY_CHUNK = 1 << 16  # candidate pairs per block when comparing signatures
_SHINGLES_PER_BLOCK = 1 << 24  # shingles of the pairs compared at once: 128 MB of uint64 keys
DOCS_PER_GROUP = 1 << 16  # documents whose shingle sets are read together (two groups are held at a time)
_TEXTS_PER_BATCH = 512
_INDEX_ROWS = 1 << 17  # documents per row group of a version's index (50 MB of signatures)

#: The texts of some of a :class:`Candidates`' documents: given their sorted positions, yields
#: (positions, texts) batches, in any order, that together cover each position exactly once.
TextReader = Callable[[np.ndarray], Iterator[tuple[np.ndarray, list[str]]]]

#: The signatures of some of a :meth:`NearDedup.decide` call's documents, given their positions (any order):
#: a (len(positions), num_perm) uint32 array.
SignatureReader = Callable[[np.ndarray], np.ndarray]


def no_texts(positions: np.ndarray) -> Iterator[tuple[np.ndarray, list[str]]]:
    if len(positions):
        raise ValueError(f"no text for {len(positions)} documents")
    yield from ()


def in_memory(texts: Sequence[str]) -> TextReader:
    """A :data:`TextReader` over texts already in memory."""

    def read(positions: np.ndarray) -> Iterator[tuple[np.ndarray, list[str]]]:
        for start in range(0, len(positions), _TEXTS_PER_BATCH):
            chunk = positions[start:start + _TEXTS_PER_BATCH]
            yield chunk, [texts[i] for i in chunk]

    return read


@dataclass
class Candidates:
    """Documents taking part in near-dedup: ids, what the keep rule needs, and their texts."""

    ids: list[str]
    sources: list[str]
    published: list[datetime | None]
    preferred: list[bool] = field(default_factory=list)  # per document; empty: none
    texts: TextReader = no_texts

    @classmethod
    def empty(cls) -> Candidates:
        return cls([], [], [])


def write_index(path: Path, blocks: Iterable[tuple[Sequence[str], np.ndarray]], num_perm: int) -> None:
    """The signatures of the documents a version added, for later builds to dedup against, written as they
    come, ``_INDEX_ROWS`` documents to a row group (a reader holds one row group at a time)."""
    schema = pa.schema([("id", pa.string()), ("signature", pa.binary(num_perm * 4))])
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        pending: list[pa.Table] = []
        rows = 0
        for ids, signatures in blocks:
            column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(num_perm * 4), len(ids), [
                None, pa.py_buffer(np.ascontiguousarray(signatures, np.uint32).tobytes())])
            pending.append(pa.table([pa.array(list(ids), pa.string()), column], schema=schema))
            rows += len(ids)
            if rows >= _INDEX_ROWS:
                writer.write_table(pa.concat_tables(pending).combine_chunks(), row_group_size=rows)
                pending, rows = [], 0
        if rows:
            writer.write_table(pa.concat_tables(pending).combine_chunks(), row_group_size=rows)


def read_index(path: Path, signatures: bool = True) -> Iterator[tuple[list[str], np.ndarray | None]]:
    """A version's index, a row group at a time: ids, and the signatures if asked."""
    index = pq.ParquetFile(path)
    num_perm = index.schema_arrow.field("signature").type.byte_width // 4
    for group in range(index.num_row_groups):
        table = index.read_row_group(group, columns=["id", "signature"] if signatures else ["id"])
        if not table.num_rows:
            continue
        values = None
        if signatures:
            data = table.column("signature").combine_chunks().buffers()[1]
            values = np.frombuffer(data, np.uint32)[: table.num_rows * num_perm].reshape(table.num_rows, num_perm)
        yield table.column("id").to_pylist(), values


def band_pairs(keys: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """(k, 2) pairs of ``refs`` from one band's keys, sorted by key and, among equal keys, by ref: each bucket
    (run of equal keys) links its members to its first one."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    leader = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    others = np.flatnonzero(leader != np.arange(len(keys)))
    return np.stack([refs[leader[others]], refs[others]], axis=1)


class ShingleSets:
    """The sorted distinct shingle hashes of some documents (positions in old + new), read from their texts."""

    def __init__(self, hasher: MinHasher, docs: np.ndarray, old: Candidates, new: Candidates):
        self.docs = docs
        self.lengths = np.full(len(docs), -1, np.int64)
        self.offsets = np.zeros(len(docs), np.int64)
        blocks, size = [], 0
        n_old = len(old.ids)
        for candidates, positions, base in ((old, docs[docs < n_old], 0), (new, docs[docs >= n_old] - n_old, n_old)):
            for chosen, texts in candidates.texts(positions):
                shingle, owner = hasher.shingles(texts)
                keys = np.sort((owner.astype(np.uint64) << np.uint64(32)) | shingle.astype(np.uint64))
                keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
                lengths = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=len(texts))
                rows = np.searchsorted(docs, np.asarray(chosen) + base)
                self.lengths[rows] = lengths
                self.offsets[rows] = size + np.cumsum(lengths) - lengths
                blocks.append((keys & np.uint64(0xFFFFFFFF)).astype(np.uint32))
                size += len(keys)
        if (self.lengths < 0).any():
            raise ValueError(f"no text for {int((self.lengths < 0).sum())} documents in candidate pairs")
        self.values = np.concatenate(blocks) if blocks else np.empty(0, np.uint32)

    def _gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sizes = self.lengths[rows]
        starts = np.repeat(self.offsets[rows] - (np.cumsum(sizes) - sizes), sizes)
        return self.values[starts + np.arange(int(sizes.sum()))], sizes

    def jaccard(self, pairs: np.ndarray, other: ShingleSets) -> np.ndarray:
        """True Jaccard of each (k, 2) pair of positions, the first of ``self``'s documents and the second of
        ``other``'s: shared shingles over distinct shingles of the two."""
        rows = np.stack([np.searchsorted(self.docs, pairs[:, 0]), np.searchsorted(other.docs, pairs[:, 1])], axis=1)
        cost = np.cumsum(self.lengths[rows[:, 0]] + other.lengths[rows[:, 1]])
        result = np.empty(len(pairs))
        start = 0
        while start < len(pairs):
            done = cost[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(cost, done + _SHINGLES_PER_BLOCK, side="right")))
            result[start:stop] = self._block(rows[start:stop], other)
            start = stop
        return result

    def _block(self, rows: np.ndarray, other: ShingleSets) -> np.ndarray:
        """Each set is distinct already, so a (pair, shingle) key seen twice is one shared shingle. The keys of
        either side are sorted already: a stable sort (timsort) merges the two runs in linear time."""
        (a, size_a), (b, size_b) = self._gather(rows[:, 0]), other._gather(rows[:, 1])
        pair = np.arange(len(rows), dtype=np.uint64)
        keys = np.concatenate([(np.repeat(pair, size_a) << np.uint64(32)) | a.astype(np.uint64),
                               (np.repeat(pair, size_b) << np.uint64(32)) | b.astype(np.uint64)])
        keys.sort(kind="stable")
        shared = keys[1:][keys[1:] == keys[:-1]] >> np.uint64(32)
        common = np.bincount(shared.astype(np.int64), minlength=len(rows))
        return common / np.maximum(size_a + size_b - common, 1)


class NearDedup(Step):
    name = "near_dedup"
    columns = (pa.field("dup_cluster", pa.string()), pa.field("dup_cluster_size", pa.int32()))

    def __init__(self, params: MinHashParams, threshold: float, source_priority: Sequence[str] = (),
                 verify: bool = True):
        super().__init__()
        self.hasher = MinHasher(params)
        self.threshold = threshold
        self.verify = verify
        self.priority = {source: rank for rank, source in enumerate(source_priority)}
        # id -> (kept id, cluster size, Jaccard with the kept one), for clusters of 2 or more
        self._decisions: dict[str, tuple[str, int, float]] = {}

    def index(self, new: Candidates, signatures: np.ndarray) -> None:
        """Find the clusters among documents whose (n, num_perm) signatures are in memory: their band keys,
        each band's buckets as the build's merge stage forms them, then :meth:`decide`."""
        usable = np.flatnonzero(~(signatures == EMPTY).all(axis=1))
        keys = self.hasher.band_keys(signatures[usable])
        pairs = [np.empty((0, 2), np.int64)]
        for band in range(keys.shape[1]):
            order = np.argsort(keys[:, band], kind="stable")
            pairs.append(band_pairs(keys[order, band], usable[order]))
        self.decide(np.unique(np.concatenate(pairs), axis=0), new, Candidates.empty(), signatures.__getitem__)

    def decide(self, pairs: np.ndarray, new: Candidates, old: Candidates, signatures: SignatureReader) -> None:
        """Find the clusters from the candidate ``pairs`` (distinct, sorted, first < second) of positions among
        ``old`` (published) documents, then ``new`` ones (after the old). Every document of ``old`` and ``new``
        may be in pairs; the keep rule ranks them by position among published ones, so the order of positions
        must be the order of the documents (published: newest version first; new: build order)."""
        self.stats["candidate_pairs"] += len(pairs)
        if self.verify:
            similarity: Callable[[np.ndarray], np.ndarray] = functools.partial(self._true_jaccard, old=old, new=new)
            scores = similarity(pairs)
            pairs, scores = pairs[scores >= self.threshold], scores[scores >= self.threshold]
        else:  # every candidate pair is merged
            similarity = functools.partial(self._estimate, signatures)
            scores = similarity(pairs)
        self.stats["verified_pairs"] += len(pairs)
        known = dict(zip(map(tuple, pairs.tolist()), scores.tolist(), strict=True))
        # imported here: only the one clusters task needs scipy, and every document worker imports this module
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        n = len(old.ids) + len(new.ids)
        graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        sizes = np.bincount(labels)
        ids = old.ids + new.ids
        n_old = len(old.ids)
        members: dict[int, list[int]] = {}
        for doc in np.flatnonzero(sizes[labels] > 1):
            members.setdefault(int(labels[doc]), []).append(int(doc))
        decided = []  # (new document, the kept one, cluster size)
        for docs in members.values():
            kept = min(docs, key=lambda d: self._rank(d, n_old, new))
            decided += [(doc, kept, len(docs)) for doc in docs if doc >= n_old]
        chained = sorted({(min(d, k), max(d, k)) for d, k, _ in decided if d != k} - known.keys())
        if chained:  # joined to the kept document through others: their own Jaccard is computed now
            known.update(zip(chained, similarity(np.array(chained, np.int64)).tolist(), strict=True))
        for doc, kept, size in decided:
            self._decisions[ids[doc]] = (ids[kept], size, 1.0 if doc == kept else known[min(doc, kept), max(doc, kept)])
        self.stats["clusters"] += len(members)

    def _true_jaccard(self, pairs: np.ndarray, old: Candidates, new: Candidates) -> np.ndarray:
        """The true Jaccard of each pair (first < second), from the texts of its documents: those are split into
        groups of ``DOCS_PER_GROUP`` and the shingle sets of at most two groups are held at a time (one more read
        of the texts for each pair of groups that has pairs; one read in all below that many documents)."""
        docs = np.unique(pairs)
        group = np.searchsorted(docs, pairs) // DOCS_PER_GROUP
        result = np.empty(len(pairs))

        def sets(index: int) -> ShingleSets:
            chosen = docs[index * DOCS_PER_GROUP:(index + 1) * DOCS_PER_GROUP]
            self.stats["texts_read"] += len(chosen)
            self.stats["texts_read_published"] += int((chosen < len(old.ids)).sum())
            return ShingleSets(self.hasher, chosen, old, new)

        for first in np.unique(group[:, 0]).tolist():
            held = sets(first)
            firsts = group[:, 0] == first
            for second in np.unique(group[firsts, 1]).tolist():
                other = held if second == first else sets(second)
                at_once = len(held.values) + (0 if other is held else len(other.values))  # 4 bytes each
                self.stats["shingles_held"] = max(self.stats["shingles_held"], at_once)
                chosen = np.flatnonzero(firsts & (group[:, 1] == second))
                result[chosen] = held.jaccard(pairs[chosen], other)
        return result

    def _rank(self, doc: int, n_old: int, new: Candidates) -> tuple:
        if doc < n_old:
            return (0, 0, 0, 0, "", doc)
        i = doc - n_old
        published = new.published[i]
        preferred = bool(new.preferred) and new.preferred[i]
        return (1, not preferred, self.priority.get(new.sources[i], len(self.priority)), published is None,
                published or datetime.min, new.ids[i])

    @staticmethod
    def _estimate(signatures: SignatureReader, pairs: np.ndarray) -> np.ndarray:
        """The MinHash estimate of each pair's Jaccard, the signatures of a block of pairs at a time."""
        result = np.empty(len(pairs))
        for start in range(0, len(pairs), _VERIFY_CHUNK):
            chunk = pairs[start:start + _VERIFY_CHUNK]
            docs, inverse = np.unique(chunk, return_inverse=True)
            held = signatures(docs)[inverse.reshape(chunk.shape)]
            result[start:start + len(chunk)] = estimated_jaccard(held[:, 0], held[:, 1])
        return result

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
