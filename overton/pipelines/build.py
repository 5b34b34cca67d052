"""``overton build``: raw documents not yet built -> the next dataset version.

Three stages, each restartable:

1. **Plan** (``state/build/<name>/<version>/plan.json``): the raw runs consumed, their files with
   checksums, one task per raw row group, and the parameters. A rerun after a crash reuses it.
2. **Tasks** (in parallel): per-document steps (size check, normalisation, admission). Each task
   writes ``tasks/t-NNNNN.parquet`` and then its marker ``t-NNNNN.json``; finished tasks are skipped.
3. **Finalize** (one process): exact dedup over everything (and against the parent version), then
   shards into ``datasets/<name>/<version>/`` and the manifest, written last. A crash here redoes
   only this stage.

Output depends only on the inputs and the parameters, never on ``--jobs`` or task timing, so a
killed and resumed build is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from overton import __version__
from overton.corpus.atomic import atomic_path, read_json, remove_temporaries, sha256_file, write_json
from overton.corpus.checksums import CACHE_FILE, ChecksumCache
from overton.corpus.config import Config, ProfileLanguage, QualityRules, ShardConfig
from overton.corpus.dataset import FORMAT, MANIFEST, Version, list_versions, version_name, version_number
from overton.corpus.errors import Refused, UserError
from overton.corpus.shards import ShardWriter, row_group_rows
from overton.corpus.workspace import RawRun, Workspace
from overton.pipelines.checks import Admission, TooLarge
from overton.pipelines.dedup_exact import ExactDedup
from overton.pipelines.dedup_near import Candidates, NearDedup, TextReader, load_index, save_index
from overton.pipelines.executor import LocalExecutor
from overton.pipelines.language import LanguageFilter
from overton.pipelines.minhash import FINEWEB_BANDS_ROWS, MinHashParams
from overton.pipelines.normalize import Normalize
from overton.pipelines.pii import PiiRedactor
from overton.pipelines.quality import QualityFilter
from overton.pipelines.step import (
    Step,
    data_schema,
    merge_stats,
    profile_names,
    run_steps,
    to_work_batch,
    work_schema,
)

_DEDUP_COLUMNS = ["id", "content_sha256", "reject_reason", "reject_step", "reject_detail"]


@dataclass
class BuildResult:
    version: Version | None
    new_counts: dict[str, Any]
    message: str
    warnings: list[str] = field(default_factory=list)


def parameters(config: Config) -> dict[str, Any]:
    """Everything that changes the output; recorded in the plan and the manifest."""
    params = {
        "normalize": config.normalize.model_dump(),
        "max_doc_bytes": config.build.max_doc_bytes,
        "max_replacement_chars": config.build.max_replacement_chars,
        "language": config.language.model_dump(),
        "quality": config.quality.model_dump(),
        "pii": config.pii.model_dump(),
        "profiles": {name: profile.model_dump() for name, profile in sorted(config.profiles.items())},
        "sources": {name: source.model_dump() for name, source in sorted(config.sources.items())},
        "shards": config.shards.model_dump(),
        "near_dedup": config.near_dedup.model_dump(),
    }
    global_steps = ["dedup_content_sha256", "dedup_id"] + ([NearDedup.name] if config.near_dedup.enabled else [])
    return {"steps": [step.name for step in document_steps(params)] + global_steps, **params}


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


#: The steps that need every document at once, run in the finalize stage.
GLOBAL_STEPS: tuple[type[Step], ...] = (ExactDedup, NearDedup)

#: Every step that can run, in order: their columns make a build's schema, the same whichever steps are
#: enabled (a disabled step's columns stay null), so a version's files and its parent's always agree.
ALL_STEPS: tuple[type[Step], ...] = (TooLarge, Normalize, Admission, LanguageFilter, QualityFilter, PiiRedactor,
                                     *GLOBAL_STEPS)


#: The rejections every build and refilter decides again from scratch.
GLOBAL_STEP_NAMES = frozenset({"dedup_content_sha256", "dedup_id", NearDedup.name})


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"language": {"windows": 5}}`` -> ``{"language.windows": 5}``: settings named as overton.toml names them."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def signal_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The settings that change what the per-document steps measure or rewrite, by their overton.toml names: a
    refilter, which re-decides on stored signals, needs them unchanged. Thresholds that only ``decide`` reads
    are not among them, and profiles are compared for the documents they judge (:func:`profile_signals`)."""
    return flatten({
        **{key: params.get(key) for key in ("normalize", "language", "pii")},
        "build": {key: params.get(key) for key in ("max_doc_bytes", "max_replacement_chars")},
        "quality": {key: params.get("quality", {}).get(key) for key in ("enabled", "stop_words")},
    })


def profile_signals(profile: dict[str, Any] | None) -> dict[str, Any]:
    """The keys of a profile that change what is measured or rewritten (the rest only decides)."""
    profile = profile or {}
    return {"pii": profile.get("pii"),
            "language.skip_undetermined": profile.get("language", {}).get("skip_undetermined")}


def near_dedup_step(params: dict[str, Any]) -> NearDedup | None:
    settings = params["near_dedup"]
    if not settings["enabled"]:
        return None
    fineweb = settings["mode"] == "fineweb"
    return NearDedup(minhash_params(settings), settings["threshold"], settings["source_priority"], verify=not fineweb)


def minhash_params(settings: dict[str, Any]) -> MinHashParams:
    """The MinHash settings of ``[near_dedup]`` as a manifest records them (before modes: verified)."""
    bands, rows = FINEWEB_BANDS_ROWS if settings.get("mode") == "fineweb" else (settings["bands"], settings["rows"])
    return MinHashParams(bands=bands, rows=rows, ngram=settings["ngram"], seed=settings["seed"])


#: Kept documents, and rejected ones (with the reject columns), of every build.
DATA_SCHEMA, WORK_SCHEMA = data_schema(ALL_STEPS), work_schema(ALL_STEPS)


# ---------------------------------------------------------------- plan


def consumed_runs(versions: list[Version]) -> set[str]:
    return {entry["run"] for version in versions for entry in version.manifest["inputs"]}


def make_plan(workspace: Workspace, runs: list[RawRun], config: Config) -> dict[str, Any]:
    """The inputs with their checksums and profile (``[sources.NAME]``, else what the run recorded), and one task
    per raw row group."""
    inputs, tasks = [], []
    for run in runs:
        profile = config.profile_of(run.source, run.record().get("profile"))
        files = []
        for part in run.parts():
            relative = part.relative_to(workspace.root).as_posix()
            try:
                groups = row_group_rows(part)
            except (OSError, pa.ArrowException) as exc:
                raise UserError(f"{part}: not a readable raw Parquet file: {exc}") from None
            files.append(
                {"path": relative, "rows": sum(groups), "bytes": part.stat().st_size, "sha256": sha256_file(part)}
            )
            for group in range(len(groups)):
                tasks.append({"index": len(tasks), "path": relative, "row_group": group, "profile": profile})
        inputs.append({"run": run.key, "profile": profile, "files": files})
    return {"inputs": inputs, "tasks": tasks}


# ---------------------------------------------------------------- tasks


def _task_stem(work: Path, index: int) -> Path:
    return work / "tasks" / f"t-{index:05d}"


def _signature_path(stem: Path) -> Path:
    return stem.with_name(stem.name + ".sig.npy")


def run_task(args: tuple[str, str, dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """One raw row group through the per-document steps; output file first, marker last."""
    root, work, task, params = args
    stem = _task_stem(Path(work), task["index"])
    source_path = Path(root) / task["path"]
    try:
        table = pq.ParquetFile(source_path).read_row_group(task["row_group"])
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"{source_path}: cannot read row group {task['row_group']}: {exc}") from None
    steps = document_steps(params)
    pieces = []
    for batch in table.to_batches():
        live, rejected = run_steps(steps, to_work_batch(batch, WORK_SCHEMA, task["profile"]))
        pieces += rejected + [live]
    return write_task(stem, pieces, WORK_SCHEMA, params, {step.name: dict(step.stats) for step in steps})


def write_task(stem: Path, pieces: list[pa.RecordBatch], schema: pa.Schema, params: dict[str, Any],
               stats: dict[str, dict[str, int]]) -> dict[str, Any]:
    """A task's rows, then the MinHash signatures of its live rows (in file order), then its marker."""
    output = pa.Table.from_batches(pieces, schema=schema) if pieces else schema.empty_table()
    stem.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(stem.with_suffix(".parquet")) as tmp:
        pq.write_table(output, tmp, compression="zstd")
    near = near_dedup_step(params)
    if near is not None:
        live_texts = pc.filter(output.column("text"), pc.is_null(output.column("reject_reason"))).to_pylist()
        with atomic_path(_signature_path(stem)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, near.hasher.signatures(live_texts))
        stats[near.name] = {"signatures_computed": len(live_texts)}
    write_json(stem.with_suffix(".json"), {"rows": output.num_rows, "stats": stats})
    return {"stats": stats}


# ---------------------------------------------------------------- finalize


class _Finalizer:
    """Dedup over the whole build, then write shards and the manifest into the version folder."""

    def __init__(self, work: Path, plan: dict[str, Any], out: Path, versions: list[Version], index_dir: Path,
                 progress: bool):
        self.work, self.plan, self.out, self.progress = work, plan, out, progress
        self.versions, self.parent = versions, (versions[-1] if versions else None)
        self.index_dir = index_dir
        self.settings = ShardConfig.model_validate(plan["parameters"]["shards"]).settings()
        self.task_files = [_task_stem(work, t["index"]).with_suffix(".parquet") for t in plan["tasks"]]
        # a refilter's tasks that read documents its parent kept: those win every dedup tie, as published ones do
        self.preferred = [bool(t.get("preferred")) for t in plan["tasks"]]

    def _live(self, columns: list[str] | None = None) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch, bool]]:
        """(rows already rejected by a task, live rows, whether they are preferred) for every batch of every task,
        in build order."""
        for path, preferred in zip(self.task_files, self.preferred, strict=True):
            for batch in pq.ParquetFile(path).iter_batches(columns=columns):
                dead = pc.is_valid(batch.column("reject_reason"))
                yield batch.filter(dead), batch.filter(pc.invert(dead)), preferred

    def run(self) -> dict[str, Any]:
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        files = self._link_parent()
        by_hash = ExactDedup("content_sha256", "exact_duplicate", self._known("content_sha256"))
        by_id = ExactDedup("id", "duplicate_id", self._known("id"))
        for _, live, preferred in self._live(_DEDUP_COLUMNS):
            by_hash.index(live, preferred)
        for _, live, preferred in self._live(_DEDUP_COLUMNS):
            survivors, _ = run_steps([by_hash], live)
            by_id.index(survivors, preferred)
        by_hash.rewind()
        steps: list[Step] = [by_hash, by_id]
        near = near_dedup_step(self.plan["parameters"])
        if near is not None:
            candidates = self._survivors(by_hash, by_id, near)
            near.index(candidates, self._published(near))
            steps.append(near)
        new_files, counts = self._write(steps)
        if near is not None:
            self._save_index(near, candidates)
        stats: dict[str, dict[str, int]] = {}
        for marker in sorted((self.work / "tasks").glob("t-*.json")):
            merge_stats(stats, read_json(marker)["stats"])
        merge_stats(stats, {s.name: dict(s.stats) for s in steps})
        return {"files": files + new_files, "counts": counts, "steps": stats}

    def _survivors(self, by_hash: ExactDedup, by_id: ExactDedup, near: NearDedup) -> Candidates:
        """The documents left after exact dedup, with their signatures computed by the tasks."""
        positions, ids, sources, published, preferred = [], [], [], [], []
        offset = 0
        for _, live, is_preferred in self._live([*_DEDUP_COLUMNS, "source", "published_at"]):
            first = pc.is_null(by_hash.apply(live).column("reject_reason")).to_numpy(zero_copy_only=False)
            after_hash = live.filter(first)
            second = pc.is_null(by_id.apply(after_hash).column("reject_reason")).to_numpy(zero_copy_only=False)
            kept = after_hash.filter(second)
            positions.append(offset + np.flatnonzero(first)[second])
            ids += kept.column("id").to_pylist()
            sources += kept.column("source").to_pylist()
            published += kept.column("published_at").to_pylist()
            preferred += [is_preferred] * kept.num_rows
            offset += live.num_rows
        by_hash.rewind()
        by_id.rewind()
        signatures = [np.load(_signature_path(path.with_suffix(""))) for path in self.task_files]
        width = near.hasher.params.num_perm
        everything = np.concatenate(signatures) if signatures else np.empty((0, width), np.uint32)
        chosen = np.concatenate(positions) if positions else np.empty(0, np.int64)
        return Candidates(ids, everything[chosen], sources, published, preferred, self._live_texts(chosen))

    def _live_texts(self, rows: np.ndarray) -> TextReader:
        """The texts of the live task rows at ``rows`` (positions among every task's live rows, in build order)."""

        def read(positions: np.ndarray) -> Iterator[tuple[np.ndarray, list[str]]]:
            wanted, offset = rows[positions], 0
            for _, live, _ in self._live(["reject_reason", "text"]):
                start, stop = np.searchsorted(wanted, [offset, offset + live.num_rows])
                if stop > start:
                    yield positions[start:stop], live.column("text").take(wanted[start:stop] - offset).to_pylist()
                offset += live.num_rows

        return read

    def _published(self, near: NearDedup) -> Candidates:
        """Signatures of every document already published, from the index kept in state/ (computed again from
        the parent's texts for a version indexed with other MinHash settings), and a reader of their texts."""
        params = near.hasher.params
        ids, blocks, stale = [], [], []
        for version in reversed(self.versions):  # a refiltered version's index holds everything before it
            path = self.index_dir / f"{version.name}.parquet"
            if path.is_file():
                version_ids, signatures = load_index(path)
                then = minhash_params(version.manifest["parameters"]["near_dedup"])
                if (then.num_perm, then.ngram, then.seed) != (params.num_perm, params.ngram, params.seed):
                    stale.append(np.arange(len(ids), len(ids) + len(version_ids)))
                    signatures = np.empty((len(version_ids), params.num_perm), np.uint32)
                ids += version_ids
                blocks.append(signatures)
            if version.manifest.get("refilter_of"):
                break
        signatures = np.concatenate(blocks) if blocks else np.empty((0, params.num_perm), np.uint32)
        texts = self._published_texts(ids)
        if stale:
            for positions, chunk in texts(np.concatenate(stale)):
                signatures[positions] = near.hasher.signatures(chunk)
                near.stats["signatures_recomputed"] += len(chunk)
        return Candidates(ids, signatures, [], [], texts=texts)

    def _published_texts(self, ids: list[str]) -> TextReader:
        """The texts of published documents by id, from the parent version's data shards (a version holds every
        document published before it), read row group by row group."""

        def read(positions: np.ndarray) -> Iterator[tuple[np.ndarray, list[str]]]:
            wanted = {ids[position]: position for position in positions.tolist()}
            value_set = pa.array(sorted(wanted), pa.string())
            found = 0
            for entry in self.parent.files("data") if wanted else []:
                with self.parent.open_file(entry) as handle:
                    shard = pq.ParquetFile(handle)
                    for group in range(shard.num_row_groups):
                        hit = pc.is_in(shard.read_row_group(group, columns=["id"]).column("id"), value_set=value_set)
                        if pc.any(hit).as_py():
                            rows = shard.read_row_group(group, columns=["id", "text"]).filter(hit)
                            found += rows.num_rows
                            yield (np.array([wanted[i] for i in rows.column("id").to_pylist()], np.int64),
                                   rows.column("text").to_pylist())
            if found != len(wanted):
                raise Refused(f"{self.parent.path}: {len(wanted) - found} documents of the near-dedup index "
                              f"{self.index_dir} are not in the version's data; rebuild from raw (`overton build` in "
                              "a new workspace)")

        return read

    def _save_index(self, near: NearDedup, candidates: Candidates) -> None:
        kept = [i for i, doc_id in enumerate(candidates.ids) if near.is_kept(doc_id)]
        save_index(self.index_dir / f"{self.out.name}.parquet", [candidates.ids[i] for i in kept],
                   candidates.signatures[kept])

    def _known(self, column: str) -> list[tuple[str, str]]:
        if self.parent is None:
            return []
        pairs = []
        for batch in self.parent.iter_batches("data", columns=[column, "id"]):
            pairs += zip(batch.column(column).to_pylist(), batch.column("id").to_pylist(), strict=True)
        return pairs

    def _link_parent(self) -> list[dict[str, Any]]:
        """A version is a complete dataset: the parent's files are hard links, never rewritten. Each is checked
        against the parent's manifest as it is linked (its sha256 remembered by inode in state/), so a damaged
        parent stops the build here instead of being carried into this version and every later one."""
        if self.parent is None:
            return []
        state = Workspace(self.out.parents[2]).state  # the workspace of datasets/<name>/<version>
        with ChecksumCache(state / CACHE_FILE) as cache:
            damaged = self.parent.link_into(self.out, cache)
        if damaged:
            shutil.rmtree(self.out)
            raise damaged_parent(self.parent, damaged)
        return [dict(entry) for entry in self.parent.manifest["files"]]

    def _next_index(self, kind: str, source: str | None = None) -> int:
        if self.parent is None:
            return 0
        return len(self.parent.files(kind, source))

    def _write(self, dedup: list[Step]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        writers: dict[str, ShardWriter] = {}
        rejected = ShardWriter(self.out / "rejected", WORK_SCHEMA, self.settings,
                               first_index=self._next_index("rejected"))
        counts: dict[str, Counter] = {}

        def count(batch: pa.RecordBatch, outcome: str) -> None:
            sources = batch.column("source").to_pylist()
            profiles = profile_names(batch).tolist()
            nothing = [None] * len(sources)
            reasons = batch.column("reject_reason").to_pylist() if outcome == "rejected" else nothing
            steps = batch.column("reject_step").to_pylist() if outcome == "rejected" else nothing
            for source, profile, reason, step in zip(sources, profiles, reasons, steps, strict=True):
                bucket = counts.setdefault(source, Counter())
                bucket["input"] += 1
                bucket[outcome] += 1
                bucket[f"profiles:{profile}"] += 1
                if reason:
                    bucket[f"reasons:{reason}"] += 1
                    bucket[f"steps:{step}"] += 1

        for dead, live, _ in tqdm(self._live(), desc="writing", unit="batch", disable=None if self.progress else True):
            kept, dup_rejected = run_steps(dedup, live)
            for batch in [dead, *dup_rejected]:
                count(batch, "rejected")
                rejected.write(batch)
            count(kept, "kept")
            for source in sorted(set(kept.column("source").to_pylist())):
                if source not in writers:
                    writers[source] = ShardWriter(self.out / "data" / source, DATA_SCHEMA, self.settings,
                                                  first_index=self._next_index("data", source))
                part = kept.filter(pc.equal(kept.column("source"), source))
                writers[source].write(part.select(DATA_SCHEMA.names))
        entries = []
        for source, writer in sorted(writers.items()):
            entries += [self._entry(shard, "data", source) for shard in writer.close()]
        entries += [self._entry(shard, "rejected") for shard in rejected.close()]
        return entries, _counts_dict(counts)

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


def _counts_dict(counts: dict[str, Counter]) -> dict[str, Any]:
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


def damaged_parent(parent: Version, problems: list[str]) -> Refused:
    """The one-line refusal of a job whose parent version differs from its manifest, and the ways out."""
    more = f" (and {len(problems) - 1} more: `overton verify {parent.path}` lists them)" if len(problems) > 1 else ""
    return Refused(f"{parent.path}/{problems[0]}{more}; the parent version is damaged: restore it from a "
                   "backup or a published copy, or rebuild from raw (`overton build` in a new workspace)")


def reject_warnings(added: dict[str, Any], fraction: float) -> list[str]:
    """One line per (source, step) where the step rejected more than ``fraction`` of the source's new documents:
    most often a source judged by the wrong profile."""
    warnings = []
    for source, entry in added["sources"].items():
        for step, rejected in entry["steps"].items():
            if rejected > fraction * entry["input"]:
                profiles = ", ".join(entry["profiles"])
                warnings.append(f"step {step} rejected {rejected} of the {entry['input']} new documents of source "
                                f"{source} ({rejected / entry['input']:.0%}; profile {profiles}): if they are good, "
                                f"judge them by another profile ([sources.{source}] profile = ...)")
    return warnings


# ---------------------------------------------------------------- entry point


def execute(workspace: Workspace, params: dict[str, Any], plan: dict[str, Any], task_fn, task_args: tuple,
            versions: list[Version], jobs: int | None, progress: bool, executor=None) -> dict[str, Any]:
    """Run a plan's missing tasks, finalize, write the manifest last; returns the manifest.

    ``versions`` are the published versions the new one builds on (their documents win dedup ties
    and their files are linked in); a refilter passes none, as it re-decides every document.
    """
    config = workspace.config()
    work = Path(plan["work"])
    todo = [t for t in plan["tasks"] if not _task_stem(work, t["index"]).with_suffix(".json").is_file()]
    executor = executor or LocalExecutor(jobs if jobs is not None else config.build.jobs)
    with tqdm(total=len(plan["tasks"]), initial=len(plan["tasks"]) - len(todo), desc="documents",
              unit="task", disable=None if progress else True) as bar:
        for _ in executor.map(task_fn, [(*task_args, str(work), t, params) for t in todo]):
            bar.update()
    out = workspace.dataset_dir(config.dataset.name) / plan["version"]
    index_dir = workspace.state / "near_dedup" / config.dataset.name
    result = _Finalizer(work, plan, out, versions, index_dir, progress).run()
    parent = versions[-1] if versions else None
    manifest = {
        "format": FORMAT,
        "created_by": f"overton {__version__}",
        "name": config.dataset.name,
        "version": plan["version"],
        "parent": plan["parent"],
        "parameters": params,
        "inputs": plan["inputs"],
        "files": sorted(result["files"], key=lambda f: f["path"]),
        "counts": add_counts(parent.manifest["counts"], result["counts"]) if parent else result["counts"],
        "added": result["counts"],
        "steps": result["steps"],
        **plan.get("manifest", {}),
    }
    write_json(out / MANIFEST, manifest)
    shutil.rmtree(work)
    return manifest


def prepare(work: Path, params: dict[str, Any], usable, make) -> dict[str, Any]:
    """The plan in ``work``: the interrupted one if ``usable(plan)`` accepts it, else a new one from ``make()``."""
    plan_path = work / "plan.json"
    if plan_path.is_file():
        plan = read_json(plan_path)
        if plan["parameters"] == params and usable(plan):
            remove_temporaries(work)
            return plan
        shutil.rmtree(work)
    plan = {**make(), "parameters": params, "work": str(work)}
    work.mkdir(parents=True)
    write_json(plan_path, plan)
    return plan


def build(workspace: Workspace, jobs: int | None = None, progress: bool = True, executor=None) -> BuildResult:
    """Build the next version from raw runs not yet in any version; resume an interrupted one."""
    config = workspace.config()
    params = parameters(config)
    dataset_dir = workspace.dataset_dir(config.dataset.name)
    with workspace.lock("build"):
        remove_temporaries(dataset_dir)
        versions = [Version.open(dataset_dir / name) for name in list_versions(dataset_dir)]
        parent = versions[-1] if versions else None
        done = consumed_runs(versions)
        pending = [run for run in workspace.raw_runs() if run.key not in done]
        if not pending:
            return BuildResult(parent, {}, "nothing new to build: every raw run is already in a version")
        name = version_name(version_number(parent.name) + 1 if parent else 1)
        pending_keys = {run.key for run in pending}

        def make() -> dict[str, Any]:
            return {**make_plan(workspace, pending, config), "version": name,
                    "parent": parent.name if parent else None}

        plan = prepare(workspace.state / "build" / config.dataset.name / name, params,
                       lambda plan: {i["run"] for i in plan["inputs"]} <= pending_keys, make)
        manifest = execute(workspace, params, plan, run_task, (str(workspace.root),), versions, jobs, progress,
                           executor)
        version = Version.open(dataset_dir / name)
        return BuildResult(version, manifest["added"], f"built {config.dataset.name} {name}",
                           reject_warnings(manifest["added"], config.build.warn_reject_fraction))
