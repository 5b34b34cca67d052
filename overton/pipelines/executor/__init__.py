"""Executors run a build's stages: each task in a process of this machine, or as a Ray task on a cluster.

Both run the same task function (:func:`overton.pipelines.executor.base.run_marked`) and read the same
markers, so a build started by one resumes on the other and both produce the same bytes.
"""

from __future__ import annotations

from overton.corpus.errors import UserError
from overton.pipelines.executor.base import Context, Executor, Stage, stage_results
from overton.pipelines.executor.local import LocalExecutor

EXECUTORS = ("local", "ray")

__all__ = ["EXECUTORS", "Context", "Executor", "LocalExecutor", "Stage", "make_executor", "stage_results"]


def make_executor(kind: str, jobs: int, address: str | None = None) -> Executor:
    """``local`` (``jobs`` processes, 0 = every core) or ``ray`` (the cluster at ``address``, else a
    cluster of this machine started for the build, with ``jobs`` CPUs if set)."""
    if kind == "local":
        if address:
            raise UserError("--address is for --executor ray")
        return LocalExecutor(jobs)
    if kind == "ray":
        from overton.pipelines.executor.ray import RayExecutor

        return RayExecutor(address, jobs)
    raise UserError(f"unknown executor {kind!r} (one of: {', '.join(EXECUTORS)})")
