"""The Ray executor: each task of a stage is a Ray task running the same function as a local worker.

Tasks read and write the build's work folder and the workspace by path, so every node must see the
workspace at the same path (a shared file system). Ray retries a task whose worker died
(``max_retries``): the retry starts the task over and writes the same bytes, as tasks depend only on
their inputs. An exception raised by a task is not retried; it reaches the driver as the original
exception (a damaged input file stays a one-line error). When the driver stops (Ctrl-C, a stop
signal, an error) the tasks still running are cancelled; whatever finished kept its marker, and the
next build, on Ray or locally, skips it.

``address`` names a running cluster (``ray start --head`` on one node, ``ray start --address ...`` on
the others; ``auto`` finds the one of this node). Without it, a cluster of this machine is started for
the build and stopped after it. When Ray is already initialised in this process (a notebook, a test),
that is used and left running.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from overton.corpus.errors import UserError
from overton.pipelines.executor.base import Executor

T = TypeVar("T")

#: Retries of a task whose worker process or node died.
MAX_RETRIES = 3


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'overton[ray]'") from None
    return ray


def probe(address: str, seconds: float = 5.0) -> None:
    """Refuse in one line an address where nothing answers: Ray itself retries for minutes, printing warnings."""
    if address == "auto":
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Ray cluster address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): is it started "
                        "(`ray start --head`) and is the port open?") from None


class RayExecutor(Executor):
    def __init__(self, address: str | None = None, jobs: int = 0):
        self.address = address or None
        self.jobs = jobs
        self._started = False

    def __enter__(self) -> RayExecutor:
        ray = _ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "logging_level": logging.WARNING}
            if self.address is None and self.jobs:
                options["num_cpus"] = self.jobs
            if self.address is not None:
                probe(self.address)
            try:
                ray.init(address=self.address, **options)
            except ConnectionError as exc:
                raise UserError(f"cannot reach the Ray cluster at {self.address}: {exc}") from None
            self._started = True
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False

    def map(self, fn: Callable[[T], Any], items: Iterable[T]) -> Iterator[Any]:
        ray = _ray()
        remote = ray.remote(fn).options(max_retries=MAX_RETRIES, retry_exceptions=False, num_cpus=1)
        pending = [remote.remote(item) for item in items]
        try:
            while pending:
                [done], pending = ray.wait(pending, num_returns=1)
                try:
                    yield ray.get(done)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause
                    raise cause if isinstance(cause, Exception) else exc from None
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
