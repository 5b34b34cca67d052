"""Near-dedup stage 1, in parallel tasks: the band keys of every document, sorted, in files.

One task per document task writes, for the rows exact dedup kept (its decisions,
:func:`~overton.pipelines.stages.exact_dedup.decisions_path`) and that have a signature of at least
one word, ``bands/t-NNNNN.keys.npy`` and ``.refs.npy``: (bands, n) arrays whose row ``b`` holds band
``b``'s keys in increasing order and the document reference of each
(:mod:`~overton.pipelines.stages.near_dedup`; equal keys in reference order). One more task does the
same for every published document, read from the index files row group by row group and cut into
runs of ``PUBLISHED_RUN`` documents (``bands/p-NNNNN.*``), so that no task holds more than a run's
keys however large the published versions are; in ``mode = "fineweb"`` it also writes each run's
signatures (``p-NNNNN.sig.npy``), which the cluster stage reads by reference for its estimates.

The merge stage (:mod:`~overton.pipelines.stages.near_buckets`) then reads one band and one key range
from every file at a time: sorted files let it find that range by binary search on a memory map.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from overton.corpus.atomic import atomic_path
from overton.pipelines.dedup_near import NearDedup, read_index
from overton.pipelines.executor import Context
from overton.pipelines.minhash import EMPTY
from overton.pipelines.stages.exact_dedup import kept_rows
from overton.pipelines.stages.near_dedup import (
    minhash_params,
    near_dedup_step,
    new_refs,
    published_indexes,
    published_texts,
    signature_path,
)
from overton.pipelines.stages.work import document_tasks, task_path

NAME = "bands"
PUBLISHED_RUN = 1 << 18  # published documents per run: 84 MB of keys and references at 20 bands


def tasks(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One task per document task, then one for the published documents."""
    return [{"index": t["index"]} for t in plan["tasks"]] + [{"index": len(plan["tasks"]), "published": True}]


def band_file(context: Context, source: str, kind: str) -> Path:
    """``kind`` ``keys``, ``refs`` or ``sig`` of ``source`` (``t-NNNNN``: a document task; ``p-NNNNN``: a run of
    published documents)."""
    return Path(context.work) / NAME / f"{source}.{kind}.npy"


def sources(context: Context) -> list[str]:
    """Every source of band files: the document tasks, then the runs of published documents."""
    runs = sorted(path.name.split(".")[0] for path in (Path(context.work) / NAME).glob("p-*.keys.npy"))
    return [f"t-{t['index']:05d}" for t in document_tasks(context)] + runs


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    near = near_dedup_step(context.params)
    if task.get("published"):
        return _published(context, near)
    index = task["index"]
    rows = kept_rows(context, index)
    signatures = np.load(signature_path(task_path(context.work, index)), mmap_mode="r")[rows]
    _write(context, f"t-{index:05d}", near, signatures, new_refs(index, rows))
    return {"stats": {}}


def _write(context: Context, source: str, near: NearDedup, signatures: np.ndarray, refs: np.ndarray) -> None:
    """Each band's keys of the documents with a word, sorted (stable: equal keys stay in reference order)."""
    usable = ~(signatures == EMPTY).all(axis=1)
    keys = near.hasher.band_keys(signatures[usable]).T
    order = np.argsort(keys, axis=1, kind="stable")
    for kind, values in (("keys", np.take_along_axis(keys, order, axis=1)), ("refs", refs[usable][order])):
        with atomic_path(band_file(context, source, kind)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(values))


def _published(context: Context, near: NearDedup) -> dict[str, Any]:
    stats: Counter[str] = Counter(signatures_loaded=0)
    start = 0
    for run, signatures in enumerate(_runs(_published_signatures(context, near, stats), PUBLISHED_RUN)):
        source = f"p-{run:05d}"
        _write(context, source, near, signatures, np.arange(start, start + len(signatures), dtype=np.int64))
        if not near.verify:
            with atomic_path(band_file(context, source, "sig")) as tmp, open(tmp, "wb") as handle:
                np.save(handle, signatures)
        start += len(signatures)
    return {"stats": {near.name: dict(stats)}}


def _published_signatures(context: Context, near: NearDedup, stats: Counter[str]) -> Iterator[np.ndarray]:
    """The signatures of every published document, in reference order, from the index kept in state/ (computed
    again from the parent's texts for a version indexed with other MinHash settings)."""
    params = near.hasher.params
    for version, path in published_indexes(context):
        then = minhash_params(version.manifest["parameters"]["near_dedup"])
        stale = (then.num_perm, then.ngram, then.seed) != (params.num_perm, params.ngram, params.seed)
        for ids, signatures in read_index(path, signatures=not stale):
            stats["signatures_loaded"] += len(ids)
            if stale:
                signatures = np.empty((len(ids), params.num_perm), np.uint32)
                for positions, texts in published_texts(context, ids)(np.arange(len(ids))):
                    signatures[positions] = near.hasher.signatures(texts)
                    stats["signatures_recomputed"] += len(texts)
            yield signatures


def _runs(blocks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The rows of ``blocks`` in runs of ``size`` (the last one shorter)."""
    pending: list[np.ndarray] = []
    count = 0
    for block in blocks:
        pending.append(block)
        count += len(block)
        while count >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            pending, count = [joined[size:]], count - size
    if count:
        yield np.concatenate(pending)
