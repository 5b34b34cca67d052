"""The inherit stage, in parallel tasks: the document tasks whose documents copy an other task's, completed.

Such a task measured only its own documents (:func:`overton.pipelines.stages.documents.run`); here each
copy takes the step outputs and signature its original got, from the measured rows the original's task
kept, and the task's rows are written as if every document had been measured. Every other task has
nothing to do: its document task wrote its rows already.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from overton.pipelines.executor import Context
from overton.pipelines.stages.copies import read_raw, roles, task_copies
from overton.pipelines.stages.documents import complete, load_measured

NAME = "inherit"


def own_rows(copies: np.ndarray, rows: int) -> np.ndarray:
    """The rows of a task of ``rows`` documents that copy none (in row order): those its measured rows hold."""
    return np.setdiff1d(np.arange(rows), copies[:, 0], assume_unique=True)


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    index = task["index"]
    if not roles(context, index)[0]:
        return {"stats": {}}
    table = read_raw(context, task)
    copies = task_copies(context, index)
    measured, signatures = load_measured(context, index)
    sources, blocks = [measured], [signatures]
    origin = np.full(table.num_rows, -1, np.int64)
    origin[own_rows(copies, table.num_rows)] = np.arange(measured.num_rows)
    size = measured.num_rows
    for owner in np.unique(copies[:, 1]).tolist():
        mine = copies[copies[:, 1] == owner]
        if owner == index:
            origin[mine[:, 0]] = origin[mine[:, 2]]
            continue
        theirs, their_signatures = load_measured(context, owner)
        rows = np.searchsorted(own_rows(task_copies(context, owner), int(mine[:, 2].max()) + 1), mine[:, 2])
        sources.append(theirs.take(rows))
        blocks.append(None if their_signatures is None else their_signatures[rows])
        origin[mine[:, 0]] = size + np.arange(len(mine))
        size += len(mine)
    source = pa.concat_tables(sources)
    block = None if signatures is None else np.concatenate(blocks)
    copy = np.zeros(table.num_rows, bool)
    copy[copies[:, 0]] = True
    return complete(context, task, table, source, block, origin, copy, {})
