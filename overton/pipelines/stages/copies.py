"""The copies stage, one task: which raw documents are exact copies of an earlier one, before anything measures them.

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
to 16 bytes: one sort of 16 bytes per document, on any corpus size that fits that.

Writes ``copies/t-NNNNN.npy`` per document task with at least one copy: rows of (row, owner task, owner
row), and ``copies/tasks.json``: the tasks that hold copies of an earlier task's documents
(``inheriting``, completed by the inherit stage) and those whose documents an other task copies
(``referenced``, which keep their measured rows for it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path, read_json, write_json
from overton.corpus.errors import UserError
from overton.pipelines.executor import Context
from overton.pipelines.stages.work import document_tasks

NAME = "copies"
#: The columns the per-document steps read (besides the profile): equal in these, equal in every output.
STEP_INPUTS = ("text", "meta")
_NO_COPIES = np.empty((0, 3), np.int64)


def copies_path(context: Context, index: int) -> Path:
    return Path(context.work) / NAME / f"t-{index:05d}.npy"


def tasks_path(context: Context) -> Path:
    return Path(context.work) / NAME / "tasks.json"


def read_raw(context: Context, task: dict[str, Any], columns: list[str] | None = None) -> pa.Table:
    """Document task ``task``'s raw row group (its ``path`` is relative to ``context.source``)."""
    path = Path(context.source) / task["path"]
    try:
        return pq.ParquetFile(path).read_row_group(task["row_group"], columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"{path}: cannot read row group {task['row_group']}: {exc}") from None


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    tasks = document_tasks(context)
    keys, owners = [], []
    for t in tasks:
        table = read_raw(context, t, ["content_sha256", "meta"])
        keys.append(copy_keys(table, t["profile"]))
        owners.append(np.full(table.num_rows, t["index"], np.int64))
    task_of = np.concatenate(owners) if owners else np.empty(0, np.int64)
    starts = np.searchsorted(task_of, task_of)  # each document's task's first position
    _, first, inverse = np.unique(np.frombuffer(b"".join(keys), "V16"), return_index=True, return_inverse=True)
    owner = first[inverse.ravel()]
    copy = np.flatnonzero(owner != np.arange(len(owner)))
    inheriting, referenced = set(), set()
    for index in np.unique(task_of[copy]).tolist():
        mine = copy[task_of[copy] == index]
        rows = np.stack([mine - starts[mine], task_of[owner[mine]], owner[mine] - starts[owner[mine]]], axis=1)
        path = copies_path(context, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, rows)
        others = set(rows[:, 1].tolist()) - {index}
        inheriting |= {index} if others else set()
        referenced |= others
    write_json(tasks_path(context), {"inheriting": sorted(inheriting), "referenced": sorted(referenced)})
    return {"stats": {NAME: {"documents": len(owner), "inherited": len(copy)}}}


def copy_keys(table: pa.Table, profile: str | None) -> bytes:
    """16 bytes per raw document, equal for two documents exactly when the steps give them the same outputs."""
    prefix = f"{profile}\0".encode()
    digests, metas = table.column("content_sha256").to_pylist(), table.column("meta").to_pylist()
    return b"".join(hashlib.sha256(prefix + f"{meta}\0{digest}".encode()).digest()[:16]
                    for digest, meta in zip(digests, metas, strict=True))


def task_copies(context: Context, index: int) -> np.ndarray:
    """(row, owner task, owner row) of each copy in document task ``index``, by row."""
    path = copies_path(context, index)
    return np.load(path) if path.is_file() else _NO_COPIES


def roles(context: Context, index: int) -> tuple[bool, bool]:
    """Whether document task ``index`` copies an other task's documents, and whether an other task copies its."""
    tasks = read_json(tasks_path(context))
    return index in tasks["inheriting"], index in tasks["referenced"]
