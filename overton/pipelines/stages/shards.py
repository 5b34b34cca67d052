"""The version folder: the parent's files linked in (a stage of its own, before anything reads the parent),
and, last, every row of the build as shards, with the counts.

A version is a complete dataset: :func:`link` hard-links the parent's files into it, each checked against the
parent's manifest, so a damaged parent stops the build before any stage reads it. :func:`run` reads each
document task's rows once, in build order, replays the dedup stages' decisions on its live rows, and writes
kept rows into ``data/<source>/`` and rejected ones into ``rejected/``. Their markers hold the file entries
and counts the manifest needs; a crash here redoes only the stage it stopped.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from overton.corpus.atomic import sha256_file
from overton.corpus.checksums import CACHE_FILE, ChecksumCache
from overton.corpus.config import ShardConfig
from overton.corpus.dataset import Version
from overton.corpus.errors import Refused
from overton.corpus.shards import ShardWriter
from overton.corpus.workspace import Workspace
from overton.pipelines.executor import Context
from overton.pipelines.stages import exact_dedup, near_dedup
from overton.pipelines.stages.documents import DATA_SCHEMA, WORK_SCHEMA
from overton.pipelines.stages.work import document_tasks, task_path
from overton.pipelines.step import profile_names, run_steps

NAME = "shards"
LINK = "parent"


def _parent(context: Context) -> Version | None:
    return Version.open(context.versions[-1]) if context.versions else None


def link(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    """The version folder, holding the parent's files as hard links, never rewritten. Each is checked against
    the parent's manifest as it is linked (its sha256 remembered by inode in state/), so a damaged parent stops
    the build here instead of being carried into this version and every later one."""
    out = Path(context.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    parent = _parent(context)
    if parent is None:
        return {"files": [], "stats": {}}
    with ChecksumCache(Workspace(Path(context.root)).state / CACHE_FILE) as cache:
        damaged = parent.link_into(out, cache)
    if damaged:
        shutil.rmtree(out)
        raise damaged_parent(parent, damaged)
    return {"files": [dict(entry) for entry in parent.manifest["files"]], "stats": {}}


def run(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    out = Path(context.out)
    parent = _parent(context)
    linked = {entry["path"] for entry in parent.manifest["files"]} if parent else set()
    for path in sorted(out.rglob("*")):  # what an interrupted run of this stage wrote
        if path.is_file() and path.relative_to(out).as_posix() not in linked:
            path.unlink()
    near = near_dedup.replayed(context)
    writer = _Writer(out, parent, ShardConfig.model_validate(context.params["shards"]).settings())
    tasks = document_tasks(context)
    for t in tqdm(tasks, desc="writing", unit="task", disable=None if context.progress else True):
        dedup = exact_dedup.replayed(context, t["index"]) + near
        for batch in pq.ParquetFile(task_path(context.work, t["index"])).iter_batches():
            dead = pc.is_valid(batch.column("reject_reason"))
            kept, rejected = run_steps(dedup, batch.filter(pc.invert(dead)))
            writer.write(kept, [batch.filter(dead), *rejected])
    files, counts = writer.close()
    return {"files": files, "counts": counts, "stats": {}}


def damaged_parent(parent: Version, problems: list[str]) -> Refused:
    """The one-line refusal of a job whose parent version differs from its manifest, and the ways out."""
    more = f" (and {len(problems) - 1} more: `overton verify {parent.path}` lists them)" if len(problems) > 1 else ""
    return Refused(f"{parent.path}/{problems[0]}{more}; the parent version is damaged: restore it from a "
                   "backup or a published copy, or rebuild from raw (`overton build` in a new workspace)")


class _Writer:
    """Kept rows by source into ``data/<source>/``, rejected rows into ``rejected/``, numbered after the parent's
    files; counts by source, profile, reason and step."""

    def __init__(self, out: Path, parent: Version | None, settings):
        self.out, self.parent, self.settings = out, parent, settings
        self.writers: dict[str, ShardWriter] = {}
        self.rejected = ShardWriter(out / "rejected", WORK_SCHEMA, settings, first_index=self._next_index("rejected"))
        self.counts: dict[str, Counter] = {}

    def _next_index(self, kind: str, source: str | None = None) -> int:
        return len(self.parent.files(kind, source)) if self.parent is not None else 0

    def write(self, kept: pa.RecordBatch, rejected: list[pa.RecordBatch]) -> None:
        for batch in rejected:
            self._count(batch, "rejected")
            self.rejected.write(batch)
        self._count(kept, "kept")
        for source in sorted(set(kept.column("source").to_pylist())):
            if source not in self.writers:
                self.writers[source] = ShardWriter(self.out / "data" / source, DATA_SCHEMA, self.settings,
                                                   first_index=self._next_index("data", source))
            part = kept.filter(pc.equal(kept.column("source"), source))
            self.writers[source].write(part.select(DATA_SCHEMA.names))

    def _count(self, batch: pa.RecordBatch, outcome: str) -> None:
        sources = batch.column("source").to_pylist()
        profiles = profile_names(batch).tolist()
        nothing = [None] * len(sources)
        reasons = batch.column("reject_reason").to_pylist() if outcome == "rejected" else nothing
        steps = batch.column("reject_step").to_pylist() if outcome == "rejected" else nothing
        for source, profile, reason, step in zip(sources, profiles, reasons, steps, strict=True):
            bucket = self.counts.setdefault(source, Counter())
            bucket["input"] += 1
            bucket[outcome] += 1
            bucket[f"profiles:{profile}"] += 1
            if reason:
                bucket[f"reasons:{reason}"] += 1
                bucket[f"steps:{step}"] += 1

    def close(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        entries = []
        for source, writer in sorted(self.writers.items()):
            entries += [self._entry(shard, "data", source) for shard in writer.close()]
        entries += [self._entry(shard, "rejected") for shard in self.rejected.close()]
        return entries, counts_dict(self.counts)

    def _entry(self, shard, kind: str, source: str | None = None) -> dict[str, Any]:
        entry = {
            "path": shard.path.relative_to(self.out).as_posix(),
            "kind": kind,
            "rows": shard.rows,
            "row_groups": shard.row_groups,
            "bytes": shard.path.stat().st_size,
            "sha256": sha256_file(shard.path),
        }
        if source is not None:
            entry["source"] = source
        return entry


#: Per source: documents by profile, rejections by reason and by the step that made them.
_BREAKDOWNS = ("profiles", "reasons", "steps")


def counts_dict(counts: dict[str, Counter]) -> dict[str, Any]:
    sources = {}
    for source, bucket in sorted(counts.items()):
        sources[source] = {key: bucket[key] for key in ("input", "kept", "rejected")}
        for breakdown in _BREAKDOWNS:
            sources[source][breakdown] = {k.split(":", 1)[1]: v for k, v in sorted(bucket.items())
                                          if k.startswith(f"{breakdown}:")}
    return {"sources": sources, **_totals(sources)}


def _totals(sources: dict[str, Any]) -> dict[str, Any]:
    reasons: Counter = Counter()
    for entry in sources.values():
        reasons.update(entry["reasons"])
    return {
        "input": sum(e["input"] for e in sources.values()),
        "kept": sum(e["kept"] for e in sources.values()),
        "rejected": sum(e["rejected"] for e in sources.values()),
        "reasons": dict(sorted(reasons.items())),
    }


def add_counts(parent: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Counts of a version: its parent's plus what this build added."""
    sources: dict[str, Any] = {}
    for counts in (parent, new):
        for source, entry in counts["sources"].items():
            bucket = sources.setdefault(source, {"input": 0, "kept": 0, "rejected": 0,
                                                 **{breakdown: Counter() for breakdown in _BREAKDOWNS}})
            for key in ("input", "kept", "rejected"):
                bucket[key] += entry[key]
            for breakdown in _BREAKDOWNS:
                bucket[breakdown].update(entry.get(breakdown, {}))  # versions before profiles have no breakdowns
    for bucket in sources.values():
        for breakdown in _BREAKDOWNS:
            bucket[breakdown] = dict(sorted(bucket[breakdown].items()))
    return {"sources": dict(sorted(sources.items())), **_totals(sources)}
