"""``overton build --refilter``: the latest version re-decided with today's thresholds, nothing re-measured.

Filters store their signals as columns (language score, quality signals…) and decide from those
columns alone. A refilter reads every document of the latest version, kept and rejected, leaves
alone the ones rejected before any signal existed (too large, empty, damaged encoding), replays
each filter's decision on the stored signals with the current thresholds, and runs the dedup steps
again over what survives. MinHash signatures are recomputed (they are cheap); language detection
and the quality signals are not, except for documents an earlier filter had stopped before they
were measured. The result is a new, complete version whose parent is the one it
re-decided. It is a build whose document stage is :func:`run_refilter_task` (the decision stage run
again); the exact dedup, near-dedup and shard stages that follow are a build's.

Its promises: documents the parent kept win every duplicate tie, as published documents do in a build (a
looser threshold never costs a kept document its place to one it admits); a document is judged by the
profile ``[sources.NAME] profile`` now gives its source, else by the one it was judged by; settings
that change what was measured are refused with their names; unchanged settings make no new version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.checksums import CACHE_FILE, ChecksumCache
from overton.corpus.dataset import Version, list_versions, version_name, version_number
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.pipelines.build import BuildResult, executor_for, parameters, prepare, reject_warnings, run_stages
from overton.pipelines.executor import Context, Stage
from overton.pipelines.stages.documents import GLOBAL_STEP_NAMES, WORK_SCHEMA, document_steps, write_task
from overton.pipelines.stages.shards import damaged_parent
from overton.pipelines.stages.work import DOCUMENTS
from overton.pipelines.step import Filter, Step, run_steps, set_column


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


class _Replay(Step):
    """A filter's decision alone, on signals already in the columns."""

    def __init__(self, step: Filter):
        super().__init__()
        self.name = step.name
        self.step = step
        self.stats = step.stats

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return self.step.reject(batch, self.step.decide(batch))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Kept documents have no reject columns; older versions may lack newer signal columns."""
    columns = [table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _chain(steps: list[Step], stopped_by: str | None) -> list[Step]:
    """What runs again on a document the parent version kept (``stopped_by`` None) or a filter rejected.

    The decisions of the filters a document went through are replayed on their stored signals. A
    document a filter stopped never reached the steps after it, so those run for real, measuring
    included: a document a looser threshold lets through is judged by the later filters and
    redacted like any other.
    """
    chain: list[Step] = []
    past = False
    for step in steps:
        if past:
            chain.append(step)
        elif isinstance(step, Filter):
            chain.append(_Replay(step))
        past = past or step.name == stopped_by
    return chain


def run_refilter_task(context: Context, task: dict[str, Any]) -> dict[str, Any]:
    """The document stage of a refilter: one row group of the parent version, its decisions replayed."""
    params = context.params
    version = Version.open(context.source)
    [entry] = [entry for entry in version.manifest["files"] if entry["path"] == task["path"]]
    with version.open_file(entry) as handle:
        table = pq.ParquetFile(handle).read_row_group(task["row_group"])
    steps = document_steps(params)
    filters = sorted(step.name for step in steps if isinstance(step, Filter))
    overrides = {source: settings["profile"] for source, settings in params["sources"].items() if settings["profile"]}
    pieces = []
    for batch in _conform(table, WORK_SCHEMA).to_batches():
        batch = _reassign(batch, overrides)
        stopped_by = batch.column("reject_step")
        again = pc.or_(pc.is_null(stopped_by), pc.is_in(stopped_by, pa.array(filters + sorted(GLOBAL_STEP_NAMES))))
        pieces.append(batch.filter(pc.invert(again)))  # rejected before any signal: stays as it was
        fresh = batch.filter(again)
        for name in [None, *filters]:
            chosen = pc.equal(fresh.column("reject_step"), name) if name else pc.invert(
                pc.is_in(fresh.column("reject_step"), pa.array(filters)))
            rows = fresh.filter(pc.fill_null(chosen, name is None))
            for column in ("reject_reason", "reject_step", "reject_detail"):
                index = WORK_SCHEMA.get_field_index(column)
                rows = rows.set_column(index, WORK_SCHEMA.field(index), pa.nulls(rows.num_rows, pa.string()))
            live, rejected = run_steps(_chain(steps, name), rows)
            pieces += rejected + [live]
    return write_task(context, task["index"], pieces, {step.name: dict(step.stats) for step in steps})


def _reassign(batch: pa.RecordBatch, overrides: dict[str, str]) -> pa.RecordBatch:
    """The profile ``[sources.NAME] profile`` gives each document's source now, else the one it had."""
    if not overrides:
        return batch
    profiles = [overrides.get(source, profile) for source, profile in
                zip(batch.column("source").to_pylist(), batch.column("profile").to_pylist(), strict=True)]
    return set_column(batch, "profile", pa.array(profiles, pa.string()))


def changed_signal_settings(parent: Version, params: dict[str, Any]) -> list[str]:
    """The settings (overton.toml names) that would change what ``parent``'s documents were measured with."""
    before_params = parent.manifest["parameters"]
    before, now = signal_parameters(before_params), signal_parameters(params)
    changed = {key for key in before.keys() | now.keys() if before.get(key) != now.get(key)}
    old_profiles, new_profiles = before_params.get("profiles", {}), params["profiles"]
    for source, entry in parent.manifest["counts"]["sources"].items():
        override = params["sources"].get(source, {}).get("profile")
        for name in entry.get("profiles", {}):
            new_name = override or name
            if new_name not in new_profiles:
                raise UserError(f"cannot refilter {parent.name}: documents of source {source!r} were judged by "
                                f"profile {name!r}, which overton.toml no longer defines ([profiles.{name}])")
            old, new = profile_signals(old_profiles.get(name)), profile_signals(new_profiles[new_name])
            for key in sorted(k for k in old if old[k] != new[k]):
                changed.add(f"sources.{source}.profile" if new_name != name else f"profiles.{name}.{key}")
    return sorted(changed)


def refilter(workspace: Workspace, jobs: int | None = None, progress: bool = True, executor: str | None = None,
             address: str | None = None) -> BuildResult:
    config = workspace.config()
    params = parameters(config)
    dataset_dir = workspace.dataset_dir(config.dataset.name)
    with workspace.lock("build"):
        names = list_versions(dataset_dir)
        if not names:
            raise UserError(f"nothing to refilter: {dataset_dir} has no version yet (run `overton build`)")
        parent = Version.open(dataset_dir / names[-1])
        changed = changed_signal_settings(parent, params)
        if changed:
            raise UserError(f"cannot refilter {parent.name}: settings that change measured signals differ "
                            f"({', '.join(changed)}); rebuild from raw instead")
        if parent.manifest["parameters"] == params:
            return BuildResult(parent, {}, f"nothing to refilter: the settings are those {parent.name} was decided "
                                           "with")
        with ChecksumCache(workspace.state / CACHE_FILE) as cache:  # every row is rewritten from these files
            damaged = parent.verify_cached(cache)
        if damaged:
            raise damaged_parent(parent, damaged)
        name = version_name(version_number(parent.name) + 1)

        def make() -> dict[str, Any]:
            tasks = []
            for kind in ("data", "rejected"):
                for entry in parent.files(kind):
                    for group in range(len(entry["row_groups"])):
                        tasks.append({"index": len(tasks), "path": entry["path"], "row_group": group,
                                      "preferred": kind == "data"})
            return {"inputs": [], "tasks": tasks, "version": name, "parent": parent.name,
                    "manifest": {"refilter_of": parent.name}}

        plan = prepare(workspace.state / "build" / config.dataset.name / name, params,
                       lambda plan: plan["parent"] == parent.name, make)
        with executor_for(config, jobs, executor, address) as runner:
            first = [Stage("documents", run_refilter_task, plan["tasks"], folder=DOCUMENTS)]
            manifest, report = run_stages(workspace, plan, first, Path(parent.path), [], runner, progress)
        return BuildResult(Version.open(dataset_dir / name), manifest["added"],
                           f"refiltered {parent.name} into {config.dataset.name} {name}",
                           reject_warnings(manifest["added"], config.build.warn_reject_fraction), report)
