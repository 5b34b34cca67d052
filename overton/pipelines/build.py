"""``overton build``: raw documents not yet built -> the next dataset version.

A build is a plan and a list of stages (:mod:`overton.pipelines.stages`), run by an executor (local
processes or Ray) in the work folder ``state/build/<name>/<version>/``:

0. **Plan** (``plan.json``): the raw runs consumed, their files with checksums, one document task per raw
   row group, and the parameters. A rerun after a crash reuses it.
1. **Copies** (one task): which raw documents are exact copies of an earlier one (same text, meta and profile).
2. **Documents** (many tasks, in parallel): per-document steps (size check, normalisation, admission,
   language, quality, PII) and MinHash signatures, on the documents that copy no earlier one.
3. **Inherit** (many tasks, in parallel): the copies get what their originals got.
4. **Parent** (one task): the version folder, the parent's files linked in and checked before anything reads them.
5. **Exact dedup**, against the parent version too, in three stages: the texts' winners (one task per range of
   text digests), the ids' winners among them (one task per range of id digests), and the decisions of each
   document task's rows (one task per document task).
6. **Near dedup**, when enabled, against every published version, in three stages: **bands** (one task per
   document task, and one for the published documents: each band's keys, sorted, in files), **buckets** (one
   task per band and key range: the candidate pairs of its buckets) and **clusters** (one task: the pairs
   verified, the clusters, the kept documents, and this version's index).
7. **Shards** (one task): the rows into ``datasets/<name>/<version>/``; then the manifest, written last.

Every task writes its outputs, then its marker; a rerun skips finished tasks, so a killed build resumes at the
stage and task where it stopped. Output depends only on the inputs and the parameters, never on the executor,
``--jobs`` or task timing: a killed and resumed build is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from overton import __version__
from overton.corpus.atomic import read_json, remove_temporaries, sha256_file, write_json
from overton.corpus.config import Config
from overton.corpus.dataset import FORMAT, MANIFEST, Version, list_versions, version_name, version_number
from overton.corpus.errors import UserError
from overton.corpus.shards import row_group_rows
from overton.corpus.workspace import RawRun, Workspace
from overton.pipelines.dedup_near import NearDedup
from overton.pipelines.executor import Context, Executor, Stage, make_executor, stage_results
from overton.pipelines.stages import (
    copies,
    documents,
    exact_dedup,
    inherit,
    near_bands,
    near_buckets,
    near_clusters,
    near_dedup,
    shards,
)
from overton.pipelines.stages.documents import document_steps
from overton.pipelines.stages.near_dedup import near_dedup_step
from overton.pipelines.stages.shards import add_counts
from overton.pipelines.stages.work import DOCUMENTS
from overton.pipelines.step import merge_stats


@dataclass
class BuildResult:
    version: Version | None
    new_counts: dict[str, Any]
    message: str
    warnings: list[str] = field(default_factory=list)
    tasks: dict[str, dict[str, int]] = field(default_factory=dict)  # per stage: its tasks, and those done before


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


def document_stages(plan: dict[str, Any]) -> list[Stage]:
    """A build's first stages: find the exact copies, measure every other document, give the copies what their
    originals got."""
    return [Stage("copy_keys", copies.run_keys, plan["tasks"], folder=copies.KEYS),
            Stage("copies", copies.run, copies.tasks(plan), folder=copies.NAME),
            Stage("documents", documents.run, plan["tasks"], folder=DOCUMENTS),
            Stage("inherit", inherit.run, plan["tasks"], folder=inherit.NAME)]


def stages(plan: dict[str, Any], first: list[Stage]) -> list[Stage]:
    """The stages of a build (or of a refilter, whose ``first`` stage re-decides instead of measuring)."""
    near = [Stage("near_bands", near_bands.run, near_bands.tasks(plan), folder=near_bands.NAME),
            Stage("near_buckets", near_buckets.run, near_buckets.tasks(plan), folder=near_buckets.NAME),
            Stage("near_clusters", near_clusters.run, folder=near_dedup.NAME),
            ] if near_dedup_step(plan["parameters"]) else []
    return [*first,
            Stage("parent", shards.link, folder=shards.LINK),
            Stage("exact_hash", exact_dedup.run_hash, exact_dedup.tasks(plan)),
            Stage("exact_id", exact_dedup.run_id, exact_dedup.tasks(plan)),
            Stage("exact_dedup", exact_dedup.run, plan["tasks"], folder=exact_dedup.NAME),
            *near,
            Stage("shards", shards.run, folder=shards.NAME)]


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


def prepare(work: Path, params: dict[str, Any], usable, make) -> dict[str, Any]:
    """The plan in ``work``: the interrupted one if ``usable(plan)`` accepts it, else a new one from ``make()``."""
    plan_path = work / "plan.json"
    if plan_path.is_file():
        plan = read_json(plan_path)
        if plan["parameters"] == params and usable(plan):
            remove_temporaries(work)
            return {**plan, "work": str(work)}  # where it is now: a workspace may have been moved or copied
        shutil.rmtree(work)
    plan = {**make(), "parameters": params, "work": str(work)}
    work.mkdir(parents=True)
    write_json(plan_path, plan)
    return plan


# ---------------------------------------------------------------- run


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


def run_stages(workspace: Workspace, plan: dict[str, Any], first: list[Stage], source: Path, versions: list[Version],
               executor: Executor, progress: bool) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Run a plan's stages (each skipping its finished tasks), write the manifest last; returns it, and per
    stage its tasks and those done before.

    ``versions`` are the published versions the new one builds on (their documents win dedup ties
    and their files are linked in); a refilter passes none, as it re-decides every document.
    """
    config = workspace.config()
    parent = versions[-1] if versions else None
    context = Context(root=str(workspace.root.resolve()), work=str(Path(plan["work"]).resolve()),
                      params=plan["parameters"], source=str(source.resolve()),
                      versions=tuple(str(Path(v.path).resolve()) for v in versions),
                      out=str((workspace.dataset_dir(config.dataset.name) / plan["version"]).resolve()),
                      index_dir=str((workspace.state / "near_dedup" / config.dataset.name).resolve()),
                      progress=progress)
    plan_stages = stages(plan, first)
    report = {stage.name: executor.run(stage, context, progress) for stage in plan_stages}
    steps: dict[str, dict[str, int]] = {}
    files: list[dict[str, Any]] = []
    for stage in plan_stages:
        for result in stage_results(stage, context):
            merge_stats(steps, result["stats"])
            files += result.get("files", [])
    [result] = stage_results(plan_stages[-1], context)
    manifest = {
        "format": FORMAT,
        "created_by": f"overton {__version__}",
        "name": config.dataset.name,
        "version": plan["version"],
        "parent": plan["parent"],
        "parameters": plan["parameters"],
        "inputs": plan["inputs"],
        "files": sorted(files, key=lambda f: f["path"]),
        "counts": add_counts(parent.manifest["counts"], result["counts"]) if parent else result["counts"],
        "added": result["counts"],
        "steps": steps,
        **plan.get("manifest", {}),
    }
    write_json(Path(context.out) / MANIFEST, manifest)
    shutil.rmtree(context.work)
    return manifest, report


def executor_for(config: Config, jobs: int | None, executor: str | Executor | None, address: str | None) -> Executor:
    """The executor the command line asks for (or one given as it is: a benchmark's), else the one ``[build]``
    names."""
    if isinstance(executor, Executor):
        return executor
    return make_executor(executor or config.build.executor, config.build.jobs if jobs is None else jobs,
                         address if address is not None else (config.build.address or None))


def build(workspace: Workspace, jobs: int | None = None, progress: bool = True, executor: str | Executor | None = None,
          address: str | None = None) -> BuildResult:
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
        with executor_for(config, jobs, executor, address) as runner:
            manifest, report = run_stages(workspace, plan, document_stages(plan), workspace.root, versions, runner,
                                          progress)
        return BuildResult(Version.open(dataset_dir / name), manifest["added"], f"built {config.dataset.name} {name}",
                           reject_warnings(manifest["added"], config.build.warn_reject_fraction), report)
