"""Worker processes end with the process that started them, however it ends.

A worker that outlives its parent keeps its memory and the pipes that other processes wait on: a
killed ``overton build`` once left its pool workers, the fork server and Python's resource tracker
alive for as long as nobody noticed. Orderly stops are the parent's business (it kills its workers
before it exits); this module covers the parent dying without a word (SIGKILL, the OOM killer, a
crash), for the build's process pool, the trainer's loader workers and the ranks ``torchrun`` starts.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def watch_parent(parent: int) -> None:
    """End this process once its parent is no longer ``parent``: a thread reads the parent's pid
    every 0.2 s (an ended parent's children get another one)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def die_with_parent(parent: int) -> None:
    """End this process when ``parent``, the process that started it, ends, however it ends.

    On Linux the kernel sends SIGKILL when the thread that started this process ends
    (``PR_SET_PDEATHSIG``), at once and whatever this process is doing: start it from a thread that
    lives as long as it does. Elsewhere :func:`watch_parent`, whose thread needs the GIL to act.
    """
    if sys.platform != "linux":
        watch_parent(parent)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent ended before prctl: no signal will come
        os._exit(1)


def worker_of(parent: int) -> None:
    """Make this process a worker of ``parent``: it ignores SIGINT and ends when ``parent`` ends.

    Call it first thing in the worker (a pool initializer, a ``worker_init_fn``). SIGINT is what a
    terminal sends to the whole process group on Ctrl-C; the parent decides what happens then.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a parent may block it while it starts workers
    die_with_parent(parent)
