"""What every executor shares: stages of tasks, completion markers, statistics.

A build is a list of :class:`Stage` s run in order. A stage is a module-level function and the tasks it
runs on; a task is a small dict with an ``index``. Stages communicate only through files in the build's
work folder, so any stage can run on any executor, on any node that sees that folder.

The executor owns the markers: :func:`run_marked` runs one task and then writes its marker
``<work>/<stage folder>/t-NNNNN.json`` holding what the task returned (its statistics, and for the
last stages what the manifest needs). A task writes its own outputs first (atomically), so a marker
means the task's outputs are complete; a rerun skips every task that has one. A task killed before its
marker runs again, from scratch, with the same result: tasks depend only on their inputs and the
parameters, never on which worker ran them or when.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from overton.corpus.atomic import read_json, write_json
from overton.pipelines.executor.allocator import keep_freed_memory

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """What every task of one build reads: where things are and the parameters. Paths are absolute
    strings, so that the context travels to other processes and nodes as it is."""

    root: str  # the workspace
    work: str  # the build's work folder: plan, task outputs, markers
    params: dict[str, Any]
    source: str  # where the document tasks read their rows (the workspace, or the version a refilter re-decides)
    versions: tuple[str, ...]  # the published versions the new one builds on, oldest first
    out: str  # the version folder being built
    index_dir: str  # near-dedup signatures of published versions
    progress: bool = False


@dataclass(frozen=True)
class Stage:
    """``run(context, task)`` on every task; it returns what the task's marker keeps (``{"stats": ...}``)."""

    name: str
    run: Callable[[Context, dict[str, Any]], dict[str, Any]]
    tasks: list[dict[str, Any]] = field(default_factory=lambda: [{"index": 0}])
    folder: str = ""  # of its outputs and markers in the work folder; its name if empty

    def directory(self, context: Context) -> Path:
        return Path(context.work) / (self.folder or self.name)


def marker_path(folder: Path, index: int) -> Path:
    return folder / f"t-{index:05d}.json"


def run_marked(call: tuple[Callable, str, Context, dict[str, Any]]) -> dict[str, Any]:
    """One task, then its marker: the unit of work every executor runs, wherever it runs. (The call
    carries the stage's function and folder, not the stage: a stage's task list can be long.)"""
    fn, folder, context, task = call
    keep_freed_memory()
    result = fn(context, task)
    write_json(marker_path(Path(folder), task["index"]), result)
    return result


def stage_results(stage: Stage, context: Context) -> list[dict[str, Any]]:
    """What the markers of a finished stage hold, in task order."""
    return [read_json(marker_path(stage.directory(context), task["index"])) for task in stage.tasks]


class Executor(ABC):
    """Runs the tasks of a stage that have no marker yet. Use as a context manager: entering may start or
    join a cluster, leaving gives it back."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        return None

    @abstractmethod
    def map(self, fn: Callable[[T], Any], items: Iterable[T]) -> Iterator[Any]:
        """Run ``fn`` on every item; yield results as tasks finish (in any order)."""

    def run(self, stage: Stage, context: Context, progress: bool = False) -> dict[str, int]:
        """Run the stage's unfinished tasks; returns how many it had and how many were already done."""
        folder = stage.directory(context)
        folder.mkdir(parents=True, exist_ok=True)
        todo = [task for task in stage.tasks if not marker_path(folder, task["index"]).is_file()]
        done = len(stage.tasks) - len(todo)
        with tqdm(total=len(stage.tasks), initial=done, desc=stage.name, unit="task",
                  disable=None if progress and len(stage.tasks) > 1 else True) as bar:
            for _ in self.map(run_marked, [(stage.run, str(folder), context, task) for task in todo]):
                bar.update()
        return {"tasks": len(stage.tasks), "done_before": done}
