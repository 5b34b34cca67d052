"""Executors run independent build tasks; every task writes its own output and completion marker.

The local executor uses a process pool (``forkserver``: workers do not inherit the parent's open
files or locks, and a killed parent leaves no worker holding them). A Ray executor plugs in with
the same ``map`` signature.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")


def default_jobs() -> int:
    return len(os.sched_getaffinity(0))


class LocalExecutor:
    def __init__(self, jobs: int = 0):
        self.jobs = jobs or default_jobs()

    def map(self, fn: Callable[[T], Any], items: Iterable[T]) -> Iterator[Any]:
        """Run ``fn`` on every item; yield results as tasks finish (in any order)."""
        items = list(items)
        if self.jobs == 1 or len(items) <= 1:
            yield from map(fn, items)
            return
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(items)), mp_context=context) as pool:
            futures = [pool.submit(fn, item) for item in items]
            for future in as_completed(futures):
                yield future.result()
