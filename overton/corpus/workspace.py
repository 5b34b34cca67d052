"""A workspace: one folder holding one corpus project (settings, raw data, state, versions, runs).

Layout (see DESIGN.md)::

    overton.toml   raw/<source>/<run-id>/   state/   datasets/<name>/v<NNNN>/   runs/
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from overton.corpus.atomic import read_json, write_json
from overton.corpus.config import TEMPLATE, Config, load_config
from overton.corpus.errors import UserError

SETTINGS_FILE = "overton.toml"
RUN_MARKER = "run.json"  # written last in a raw run folder: without it the run does not exist


def utc_stamp(moment: datetime | None = None) -> str:
    """Sortable, filesystem-safe UTC timestamp, e.g. ``20261126T164648.123456Z``."""
    return (moment or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


@dataclass(frozen=True)
class RawRun:
    """One completed collection run: ``raw/<source>/<run-id>/`` with its ``run.json``."""

    source: str
    run_id: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.source}/{self.run_id}"

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"))

    def record(self) -> dict[str, Any]:
        return read_json(self.path / RUN_MARKER)


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        self.settings_path = root / SETTINGS_FILE
        self.raw = root / "raw"
        self.state = root / "state"
        self.datasets = root / "datasets"
        self.runs = root / "runs"

    @classmethod
    def init(cls, root: Path) -> Workspace:
        root = root.resolve()
        if (root / SETTINGS_FILE).exists():
            raise UserError(f"{root} is already an overton workspace")
        if root.exists() and not root.is_dir():
            raise UserError(f"{root} exists and is not a folder")
        workspace = cls(root)
        for folder in (workspace.raw, workspace.state, workspace.datasets, workspace.runs):
            folder.mkdir(parents=True, exist_ok=True)
        workspace.settings_path.write_text(TEMPLATE, encoding="utf-8")
        return workspace

    @classmethod
    def open(cls, root: Path) -> Workspace:
        root = root.resolve()
        if not (root / SETTINGS_FILE).is_file():
            raise UserError(
                f"{root} is not an overton workspace (no {SETTINGS_FILE}); "
                "create one with `overton init DIR` or pass --workspace"
            )
        return cls(root)

    def config(self) -> Config:
        return load_config(self.settings_path)

    def dataset_dir(self, name: str) -> Path:
        return self.datasets / name

    def raw_runs(self) -> list[RawRun]:
        """Completed raw runs, sorted by source then run id (run ids sort by time)."""
        runs = []
        for marker in sorted(self.raw.glob(f"*/*/{RUN_MARKER}")):
            runs.append(RawRun(source=marker.parent.parent.name, run_id=marker.parent.name, path=marker.parent))
        return runs

    def new_raw_run(self, source: str, job: str) -> tuple[str, Path]:
        """A fresh, empty raw run folder (not visible to builds until its run.json exists)."""
        while True:
            run_id = f"{utc_stamp()}-{job}"
            path = self.raw / source / run_id
            try:
                path.mkdir(parents=True)
                return run_id, path
            except FileExistsError:
                time.sleep(0.001)

    @contextlib.contextmanager
    def lock(self, job: str) -> Iterator[None]:
        """Refuse to run two jobs of the same kind on one workspace at once."""
        lock_dir = self.state / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{job}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"another `overton {job}` is running on {self.root}") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class RunRecord:
    """``runs/<timestamp>-<job>.json``: what one job did, how long it took and how it ended.

    Use as a context manager: the record is written when the block ends, also on failure, so a
    scheduler always finds one. Put counts into ``record.data``; set ``record.exit_code``.
    """

    def __init__(self, workspace: Workspace, job: str, argv: list[str] | None = None):
        self.workspace = workspace
        self.job = job
        self.started = datetime.now(UTC)
        self.exit_code = 0
        self.data: dict[str, Any] = {}
        self.argv = list(sys.argv if argv is None else argv)
        self.path = workspace.runs / f"{utc_stamp(self.started)}-{job}.json"
        self._t0 = time.monotonic()

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "ok" if exc is None and self.exit_code == 0 else "failed"
        if exc is not None:
            self.exit_code = self.exit_code or (2 if isinstance(exc, UserError) else 1)
            self.data.setdefault("error", f"{exc_type.__name__}: {exc}")
        self.workspace.runs.mkdir(parents=True, exist_ok=True)
        write_json(
            self.path,
            {
                "job": self.job,
                "argv": self.argv,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": self.started.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
                "duration_s": round(time.monotonic() - self._t0, 3),
                "status": status,
                "exit_code": self.exit_code,
                **self.data,
            },
        )
