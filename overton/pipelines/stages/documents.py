"""Stage 1, in parallel tasks: one raw row group through the per-document steps.

Each task writes ``tasks/t-NNNNN.parquet`` (every row, rejected ones with their reason) and, when
near-dedup is on, the MinHash signatures of its live rows beside it; the executor then writes its
marker. This module also fixes the schema every later stage reads and every version holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.corpus.config import ProfileLanguage, QualityRules
from overton.corpus.errors import UserError
from overton.pipelines.checks import Admission, TooLarge
from overton.pipelines.dedup_exact import ExactDedup
from overton.pipelines.dedup_near import NearDedup
from overton.pipelines.executor import Context
from overton.pipelines.language import LanguageFilter
from overton.pipelines.normalize import Normalize
from overton.pipelines.pii import PiiRedactor
from overton.pipelines.quality import QualityFilter
from overton.pipelines.stages import near_dedup
from overton.pipelines.stages.work import task_path
from overton.pipelines.step import Step, data_schema, run_steps, to_work_batch, work_schema


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


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    """One raw row group of ``task["path"]`` (relative to the workspace) through the per-document steps."""
    source_path = Path(context.source) / task["path"]
    try:
        table = pq.ParquetFile(source_path).read_row_group(task["row_group"])
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"{source_path}: cannot read row group {task['row_group']}: {exc}") from None
    steps = document_steps(context.params)
    pieces = []
    for batch in table.to_batches():
        live, rejected = run_steps(steps, to_work_batch(batch, WORK_SCHEMA, task["profile"]))
        pieces += rejected + [live]
    return write_task(context, task["index"], pieces, {step.name: dict(step.stats) for step in steps})


def write_task(context: Context, index: int, pieces: list[pa.RecordBatch],
               stats: dict[str, dict[str, int]]) -> dict[str, Any]:
    """A task's rows, then the signatures of its live rows; returns what its marker keeps."""
    output = pa.Table.from_batches(pieces, schema=WORK_SCHEMA) if pieces else WORK_SCHEMA.empty_table()
    path = task_path(context.work, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(output, tmp, compression="zstd")
    stats.update(near_dedup.write_signatures(path, output, context.params))
    return {"rows": output.num_rows, "stats": stats}
