"""The local executor: a stage's tasks in a pool of processes of this machine.

It runs a process pool started with ``spawn``. Its workers are fresh interpreters:
they inherit none of the parent's open files, locks or threads (``fork`` would copy a process that
runs threads), and they are children of the main process itself, so they can be tied to its life
(``overton.corpus.lifetime``: killed with it, whatever kills it; Python's resource tracker then exits
by itself, as the main process and the workers were the only holders of its pipe). ``forkserver``
shares the first point but puts a server process in between whose "alive" pipe every worker holds:
after the main process was killed, the server, the workers and the resource tracker kept one another
alive indefinitely. Starting a worker costs the same either way: each imports the build modules
itself (about 1 s of CPU with the first language detection), which dwarfs the 0.03 s of starting an interpreter.

When an exception leaves ``map`` (Ctrl-C, a stop signal that the command turned into an exception, an
error in the main process) the workers are killed before it goes on: the tasks they were running
wrote no marker and run again on the next build.

A stage of one task, or ``jobs = 1``, runs in the main process itself. The pool lives as long as the
executor (the build), so its workers import the build modules once for every stage.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from overton.corpus.lifetime import worker_of
from overton.pipelines.executor.base import Executor

T = TypeVar("T")


def default_jobs() -> int:
    return len(os.sched_getaffinity(0))


class LocalExecutor(Executor):
    """One pool of worker processes for the whole build, started at the first stage of several tasks: each worker
    imports the build modules once, not once per stage."""

    def __init__(self, jobs: int = 0):
        self.jobs = jobs or default_jobs()
        self._pool: ProcessPoolExecutor | None = None

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=worker_of, initargs=(os.getpid(),))
        return self._pool

    def map(self, fn: Callable[[T], Any], items: Iterable[T]) -> Iterator[Any]:
        """Run ``fn`` on every item; yield results as tasks finish (in any order)."""
        items = list(items)
        if self.jobs == 1 or len(items) <= 1:
            yield from map(fn, items)
            return
        pool = self._workers()
        try:
            # The workers start with SIGINT blocked, so that a Ctrl-C before their initializer ignores it
            # does not print a traceback per worker; the main process gets it once the mask is restored.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                futures = [pool.submit(fn, item) for item in items]  # each submit starts a worker, up to max_workers
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            # Python 3.14 names this ProcessPoolExecutor.kill_workers(); shutdown() alone would wait for running tasks
            for process in list(pool._processes.values()):
                process.kill()
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            raise
