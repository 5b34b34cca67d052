"""Near-dedup stage 2, one task per band and key range: the candidate pairs of that range's buckets.

A task reads band ``b``'s keys in ``[lo, hi)`` from every band file (:mod:`near_bands`): a binary
search on each file's sorted keys, memory-mapped, finds the slice, and only the slice is read. It
sorts the slices together by key and reference and links each bucket's members to its first one
(:func:`~overton.pipelines.dedup_near.band_pairs`), as one sort of every document's keys would, and
writes the pairs as references to ``buckets/t-NNNNN.npy``. A bucket is one key, so it never spans two
ranges, and the pairs do not depend on how the key space is cut.

Keys are hashes, spread evenly, so a range holds about its share of the documents. The tasks cut the 64-bit key
space into one range per :data:`~overton.pipelines.stages.work.TASKS_PER_RANGE` document tasks (parallel work for
large builds), as the exact dedup stages cut theirs; a task whose range holds more than ``ENTRIES_PER_CHUNK`` keys
in all (published documents count too, and the plan does not know them) reads it in that many equal sub-ranges, one
after the other, so its memory stays bounded whatever the corpus size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from overton.corpus.atomic import atomic_path, read_json
from overton.pipelines.dedup_near import band_pairs
from overton.pipelines.executor import Context
from overton.pipelines.stages import near_bands
from overton.pipelines.stages.near_dedup import minhash_params
from overton.pipelines.stages.work import key_ranges, range_bound

NAME = "buckets"
ENTRIES_PER_CHUNK = 1 << 22  # keys a task sorts at once: 64 MB of keys and references, twice that sorting
_KEYS = 1 << 64


def tasks(plan: dict[str, Any]) -> list[dict[str, Any]]:
    bands = minhash_params(plan["parameters"]["near_dedup"]).bands
    ranges = key_ranges(plan)
    return [{"index": band * ranges + part, "band": band, "range": part, "ranges": ranges}
            for band in range(bands) for part in range(ranges)]


def pairs_path(context: Context, index: int) -> Path:
    return Path(context.work) / NAME / f"t-{index:05d}.npy"


def pair_files(context: Context) -> list[Path]:
    """The pairs of every task of this stage."""
    return [pairs_path(context, task["index"]) for task in tasks(read_json(Path(context.work) / "plan.json"))]


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    band = task["band"]
    lo, hi = (range_bound(part, task["ranges"]) for part in (task["range"], task["range"] + 1))
    sources = near_bands.sources(context)
    offsets = _offsets(context, sources, band, [lo, hi])
    chunks = max(1, -(-int((offsets[:, 1] - offsets[:, 0]).sum()) // ENTRIES_PER_CHUNK))
    if chunks > 1:
        offsets = _offsets(context, sources, band, [lo + (hi - lo) * part // chunks for part in range(chunks + 1)])
    pairs = [np.empty((0, 2), np.int64)]
    for chunk in range(chunks):
        keys, refs = [], []
        for source, (start, stop) in zip(sources, offsets[:, chunk:chunk + 2].tolist(), strict=True):
            if stop > start:
                keys.append(_band(context, source, "keys", band)[start:stop])
                refs.append(_band(context, source, "refs", band)[start:stop])
        if keys:
            keys, refs = np.concatenate(keys), np.concatenate(refs)
            order = np.lexsort((refs, keys))
            pairs.append(band_pairs(keys[order], refs[order]))
    with atomic_path(pairs_path(context, task["index"])) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.concatenate(pairs))
    return {"stats": {}}


def _band(context: Context, source: str, kind: str, band: int) -> np.ndarray:
    return np.load(near_bands.band_file(context, source, kind), mmap_mode="r")[band]


def _offsets(context: Context, sources: list[str], band: int, edges: list[int]) -> np.ndarray:
    """(sources, edges): where each edge of the key space falls in each source's sorted keys of ``band``."""
    offsets = np.empty((len(sources), len(edges)), np.int64)
    inside = np.array([min(edge, _KEYS - 1) for edge in edges], np.uint64)
    for row, source in enumerate(sources):
        keys = _band(context, source, "keys", band)
        offsets[row] = np.searchsorted(keys, inside)
        offsets[row, [edge >= _KEYS for edge in edges]] = len(keys)
    return offsets
