"""The document stage, in parallel tasks: one raw row group through the per-document steps.

Only the documents that copy no earlier one are measured (:mod:`overton.pipelines.stages.copies`); a copy
within the task takes its original's outputs here. Each task writes ``tasks/t-NNNNN.parquet`` (every row,
rejected ones with their reason) and, when near-dedup is on, the MinHash signatures of its live rows beside
it; the executor then writes its marker. A task whose documents copy an other task's leaves that to the
inherit stage, and a task that others copy keeps its measured rows in ``measured/`` for them. The steps'
statistics count what they measured; ``copies.inherited`` counts the documents that inherited instead
(their rejections are in the steps' ``rejected_*`` counts too). This module also fixes the schema every
later stage reads and every version holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.corpus.config import ProfileLanguage, QualityRules
from overton.corpus.errors import UserError
from overton.corpus.schema import DOCUMENT_SCHEMA, text_sha256
from overton.pipelines.checks import Admission, TooLarge
from overton.pipelines.dedup_exact import ExactDedup
from overton.pipelines.dedup_near import NearDedup
from overton.pipelines.executor import Context
from overton.pipelines.language import LanguageFilter
from overton.pipelines.normalize import Normalize
from overton.pipelines.pii import PiiRedactor
from overton.pipelines.quality import QualityFilter
from overton.pipelines.stages import near_dedup
from overton.pipelines.stages.copies import STEP_INPUTS, read_raw, roles, task_copies
from overton.pipelines.stages.work import task_path
from overton.pipelines.step import Step, arranged, data_schema, run_steps_in_order, to_work_batch, work_schema


def document_steps(params: dict[str, Any]) -> list[Step]:
    """The per-document steps, run in parallel tasks, in this order: cheap rejections first, and PII
    last so that it only reads the text the corpus keeps."""
    steps: list[Step] = [
        TooLarge(params["max_doc_bytes"]),
        Normalize(**params["normalize"]),
        Admission(params["max_replacement_chars"]),
    ]
    language, quality, pii, profiles = params["language"], params["quality"], params["pii"], params["profiles"]
    if language["enabled"]:
        steps.append(LanguageFilter({name: ProfileLanguage(**p["language"]) for name, p in profiles.items()},
                                    **{k: v for k, v in language.items() if k != "enabled"}))
    if quality["enabled"]:
        steps.append(QualityFilter({name: QualityRules(**p["quality"]) for name, p in profiles.items()},
                                   stop_words=quality["stop_words"]))
    if pii["enabled"]:
        steps.append(PiiRedactor(name for name, p in profiles.items() if not p["pii"]))
    return steps


#: The steps that need every document at once, run in the stages after this one.
GLOBAL_STEPS: tuple[type[Step], ...] = (ExactDedup, NearDedup)

#: Every step that can run, in order: their columns make a build's schema, the same whichever steps are
#: enabled (a disabled step's columns stay null), so a version's files and its parent's always agree.
ALL_STEPS: tuple[type[Step], ...] = (TooLarge, Normalize, Admission, LanguageFilter, QualityFilter, PiiRedactor,
                                     *GLOBAL_STEPS)

#: The rejections every build and refilter decides again from scratch.
GLOBAL_STEP_NAMES = frozenset({"dedup_content_sha256", "dedup_id", NearDedup.name})

#: Kept documents, and rejected ones (with the reject columns), of every build.
DATA_SCHEMA, WORK_SCHEMA = data_schema(ALL_STEPS), work_schema(ALL_STEPS)

#: The document columns no step writes: a copy keeps its own, and takes every other column from its original.
PASS_THROUGH = frozenset(DOCUMENT_SCHEMA.names) - {*STEP_INPUTS, "content_sha256"}

#: The folder of the measured rows that tasks keep for the inherit stage.
MEASURED = "measured"


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    """One raw row group of ``task["path"]`` (relative to the workspace) through the per-document steps: only its
    documents that copy no earlier one are measured. A task whose documents copy an other task's is completed by
    the inherit stage; a task that others copy keeps its measured rows for them."""
    table = read_raw(context, task)
    copies = task_copies(context, task["index"])
    inheriting, referenced = roles(context, task["index"])
    own = np.ones(table.num_rows, bool)
    own[copies[:, 0]] = False
    if len(copies) or referenced:
        check_content_sha256(context, task, table)
    steps = document_steps(context.params)
    measured = measure(steps, table, own, task["profile"])
    stats = {step.name: dict(step.stats) for step in steps}
    signatures = near_dedup.live_signatures(measured, context.params, stats)
    if inheriting or referenced:
        save_measured(context, task["index"], measured, signatures)
    if inheriting:
        return {"stats": stats}
    origin = np.cumsum(own) - 1  # each row's own row: itself, or the one it copies
    origin[copies[:, 0]] = origin[copies[:, 2]]
    return complete(context, task, table, measured, signatures, origin, ~own, stats)


def measure(steps: list[Step], table: pa.Table, own: np.ndarray, profile: str | None) -> pa.Table:
    """The rows of ``table`` where ``own`` is set, through ``steps``, in table order; batch by batch, as the steps
    always see them."""
    measured, offset = [], 0
    for batch in table.to_batches():
        chosen = own[offset:offset + batch.num_rows]
        offset += batch.num_rows
        if chosen.any():
            work = to_work_batch(batch.filter(pa.array(chosen)), WORK_SCHEMA, profile)
            measured.append(run_steps_in_order(steps, work))
    return pa.Table.from_batches(measured, schema=WORK_SCHEMA)


def complete(context: Context, task: dict[str, Any], table: pa.Table, source: pa.Table,
             signatures: np.ndarray | None, origin: np.ndarray, copy: np.ndarray,
             stats: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Write the task's rows: row ``i`` of the raw ``table`` with the step outputs of row ``origin[i]`` of
    ``source`` (its own, or those of the document it copies, where ``copy[i]``), arranged as the steps
    arrange them, and the signatures of its live rows; the copies' rejections are added to ``stats``."""
    step_names = [step.name for step in document_steps(context.params)]
    pieces, live_origins, offset = [], [], 0
    for batch in table.to_batches():
        rows = origin[offset:offset + batch.num_rows]
        work = to_work_batch(batch, WORK_SCHEMA, task["profile"])
        taken = source.take(rows)
        columns = [work.column(name) if name in PASS_THROUGH else taken.column(name).combine_chunks()
                   for name in WORK_SCHEMA.names]
        full = pa.RecordBatch.from_arrays(columns, schema=WORK_SCHEMA)
        pieces += arranged(full, step_names)
        live = pc.is_null(full.column("reject_reason")).to_numpy(zero_copy_only=False)
        live_origins.append(rows[live])
        copied = full.filter(pa.array(copy[offset:offset + batch.num_rows]))
        for step, reason in zip(copied.column("reject_step").to_pylist(), copied.column("reject_reason").to_pylist(),
                                strict=True):
            if step is not None:
                counts = stats.setdefault(step, {})
                counts[f"rejected_{reason}"] = counts.get(f"rejected_{reason}", 0) + 1
        offset += batch.num_rows
    live_signatures = None if signatures is None else signatures[np.concatenate(live_origins)]
    return write_task(context, task["index"], pieces, stats, live_signatures)


def check_content_sha256(context: Context, task: dict[str, Any], table: pa.Table) -> None:
    """Refuse raw documents whose text is not the one their ``content_sha256`` names: copies are found by it."""
    for doc_id, text, digest in zip(table.column("id").to_pylist(), table.column("text").to_pylist(),
                                    table.column("content_sha256").to_pylist(), strict=True):
        if text_sha256(text) != digest:
            raise UserError(f"{Path(context.source) / task['path']}: document {doc_id}: its text does not match its "
                            "content_sha256 (the raw file was changed after it was written): collect or ingest it "
                            "again")


def measured_path(context: Context, index: int) -> Path:
    return Path(context.work) / MEASURED / f"t-{index:05d}.parquet"


def save_measured(context: Context, index: int, measured: pa.Table, signatures: np.ndarray | None) -> None:
    """A task's measured rows (its documents that copy no earlier one, in row order) and their signatures (zero
    for rejected rows), for the inherit stage."""
    path = measured_path(context, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(measured, tmp, compression="zstd")
    if signatures is not None:
        with atomic_path(path.with_suffix(".npy")) as tmp, open(tmp, "wb") as handle:
            np.save(handle, signatures)


def load_measured(context: Context, index: int) -> tuple[pa.Table, np.ndarray | None]:
    path = measured_path(context, index)
    signatures = path.with_suffix(".npy")
    return pq.read_table(path, schema=WORK_SCHEMA), np.load(signatures) if signatures.is_file() else None


def write_task(context: Context, index: int, pieces: list[pa.RecordBatch], stats: dict[str, dict[str, int]],
               signatures: np.ndarray | None = None) -> dict[str, Any]:
    """A task's rows, then the signatures of its live rows (computed here unless given); returns what its marker
    keeps."""
    output = pa.Table.from_batches(pieces, schema=WORK_SCHEMA) if pieces else WORK_SCHEMA.empty_table()
    path = task_path(context.work, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(output, tmp, compression="zstd")
    stats.update(near_dedup.write_signatures(path, output, context.params, signatures))
    return {"rows": output.num_rows, "stats": stats}
