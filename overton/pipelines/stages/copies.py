"""The copy stages: which raw documents are exact copies of an earlier one, before anything measures them.

What the per-document steps write depends only on a document's text, ``meta`` and profile
(:data:`STEP_INPUTS`); every other column passes through them. Two raw documents equal in those
give the same step outputs, so only the first of them in build order (task order, then row order) is
measured and its copies inherit what it got (:mod:`overton.pipelines.stages.inherit`). Corpora hold many
such copies (a speech published under two ids, a feed collected twice, the same page under two URLs):
exact dedup rejects them anyway, but only after language detection and 30 quality signals would have
measured every one of them.

The key is the raw ``content_sha256`` (every collector writes the SHA-256 of the raw text there; the
document tasks check it against the text of every document that takes part in a copy, so a damaged
raw file cannot make one document inherit another's outputs), ``meta`` and the task's profile, hashed
to 16 bytes. Two stages, so that no task holds the keys of the whole build:

1. ``copy_keys``, one task per document task: ``copy_keys/keys-NNNNN.npy``, its documents' keys as two
   64-bit words and the row, sorted by key;
2. ``copies``, one task per key range (the documents of :data:`~overton.pipelines.stages.work.TASKS_PER_RANGE`
   document tasks, as exact dedup cuts its ranges): the slice of its range from every task's sorted keys
   (memory-mapped), the first document of each key, and ``copies/r-NNNNN.npy``: (task, row, owner task, owner row)
   of every copy in the range, by task and row (stored as four arrays), with ``copies/r-NNNNN-roles.npy``: for
   every document task, whether it holds a copy of an other task's document in the range (``inheriting``: the
   inherit stage completes it) and whether an other task copies one of its documents there (``referenced``: it
   keeps its measured rows for them).

A key's first document depends only on the documents of that key, so the ranges find what one task over
everything would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.corpus.errors import UserError
from overton.pipelines.executor import Context
from overton.pipelines.stages.work import document_tasks, range_bound, range_tasks

NAME, KEYS = "copies", "copy_keys"
#: The columns the per-document steps read (besides the profile): equal in these, equal in every output.
STEP_INPUTS = ("text", "meta")
_NO_COPIES = np.empty((0, 3), np.int64)


def keys_path(context: Context, index: int) -> Path:
    return Path(context.work) / KEYS / f"keys-{index:05d}.npy"


def range_path(context: Context, part: int, kind: str = "") -> Path:
    return Path(context.work) / NAME / f"r-{part:05d}{kind}.npy"


def tasks(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The tasks of the range stage."""
    return range_tasks(plan)


def read_raw(context: Context, task: dict[str, Any], columns: list[str] | None = None) -> pa.Table:
    """Document task ``task``'s raw row group (its ``path`` is relative to ``context.source``)."""
    path = Path(context.source) / task["path"]
    try:
        return pq.ParquetFile(path).read_row_group(task["row_group"], columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"{path}: cannot read row group {task['row_group']}: {exc}") from None


def run_keys(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    """One document task's keys: rows of (high word, low word, row) of its raw documents, in key order, stored
    as three arrays so that a range's slice is found by a binary search of the first."""
    table = read_raw(context, task, ["content_sha256", "meta"])
    words = np.frombuffer(copy_keys(table, task["profile"]), ">u8").reshape(-1, 2).astype(np.uint64)
    rows = np.arange(table.num_rows, dtype=np.uint64)
    order = np.lexsort((rows, words[:, 1], words[:, 0]))
    _save(keys_path(context, task["index"]), np.stack([words[order, 0], words[order, 1], rows[order]]))
    return {"stats": {}}


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    """One key range: the first document of each of its keys, in build order, and the copies of it."""
    part, ranges = task["index"], task["ranges"]
    every = document_tasks(context)
    found = []
    low = np.uint64(range_bound(part, ranges))
    high = None if part + 1 == ranges else np.uint64(range_bound(part + 1, ranges))  # the last: to 2^64
    for t in every:
        keys = np.load(keys_path(context, t["index"]), mmap_mode="r")
        start = int(np.searchsorted(keys[0], low))
        stop = keys.shape[1] if high is None else int(np.searchsorted(keys[0], high))
        found.append(np.vstack([keys[:, start:stop], np.full((1, stop - start), t["index"], np.uint64)]))
    high_word, low_word, row, owner_task = np.hstack(found) if found else np.empty((4, 0), np.uint64)
    order = np.lexsort((row, owner_task, low_word, high_word))  # by key, then build order
    high_word, low_word, row, owner_task = high_word[order], low_word[order], row[order], owner_task[order]
    first = np.r_[True, (high_word[1:] != high_word[:-1]) | (low_word[1:] != low_word[:-1])][:len(order)]
    owner = np.flatnonzero(first)[np.cumsum(first) - 1]
    copy = np.flatnonzero(~first)
    rows = np.stack([owner_task[copy], row[copy], owner_task[owner[copy]], row[owner[copy]]]).astype(np.int64)
    rows = rows[:, np.lexsort((rows[1], rows[0]))]  # (task, row, owner task, owner row) by task and row
    _save(range_path(context, part), rows)
    other = rows[0] != rows[2]
    roles = np.zeros((2, max((t["index"] for t in every), default=-1) + 1), bool)
    roles[0, rows[0, other]] = True
    roles[1, rows[2, other]] = True
    _save(range_path(context, part, "-roles"), roles)
    return {"stats": {NAME: {"documents": len(order), "inherited": len(copy)}}}


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def copy_keys(table: pa.Table, profile: str | None) -> bytes:
    """16 bytes per raw document, equal for two documents exactly when the steps give them the same outputs."""
    prefix = f"{profile}\0".encode()
    digests, metas = table.column("content_sha256").to_pylist(), table.column("meta").to_pylist()
    return b"".join(hashlib.sha256(prefix + f"{meta}\0{digest}".encode()).digest()[:16]
                    for digest, meta in zip(digests, metas, strict=True))


def task_copies(context: Context, index: int) -> np.ndarray:
    """(row, owner task, owner row) of each copy in document task ``index``, by row."""
    found = [_NO_COPIES]
    for path in _range_files(context, ""):
        rows = np.load(path, mmap_mode="r")
        start, stop = np.searchsorted(rows[0], [index, index + 1])
        found.append(np.array(rows[1:, start:stop]).T)
    copies = np.concatenate(found)
    return copies[np.argsort(copies[:, 0], kind="stable")]


def roles(context: Context, index: int) -> tuple[bool, bool]:
    """Whether document task ``index`` copies an other task's documents, and whether an other task copies its."""
    inheriting = referenced = False
    for path in _range_files(context, "-roles"):
        held = np.load(path, mmap_mode="r")
        inheriting, referenced = inheriting or bool(held[0, index]), referenced or bool(held[1, index])
    return inheriting, referenced


def _range_files(context: Context, kind: str) -> list[Path]:
    """The files of every key range (the range stage is done when these are read)."""
    return sorted((Path(context.work) / NAME).glob(f"r-[0-9][0-9][0-9][0-9][0-9]{kind}.npy"))
