"""Worker processes end with the process that started them, however it ends.

A worker that outlives its parent keeps its memory and the pipes that other processes wait on: a
killed ``overton build`` once left its pool workers, the fork server and Python's resource tracker
alive for as long as nobody noticed. Orderly stops are the parent's business (it kills its workers
before it exits); this module covers the parent dying without a word (SIGKILL, the OOM killer, a
crash), for the build's process pool and the trainer's loader workers alike.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.connection import wait

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def watch_parent() -> None:
    """End this process when its parent ends: a thread waits on the pipe from the parent that
    multiprocessing keeps open for the parent's whole life (at end of file at once if it is gone)."""
    sentinel = multiprocessing.parent_process().sentinel
    threading.Thread(target=_exit_when_closed, args=(sentinel,), name="parent-watchdog", daemon=True).start()


def _exit_when_closed(sentinel: int) -> None:
    wait([sentinel])
    os._exit(1)


def worker_of(parent: int) -> None:
    """Make this process a worker of ``parent``: it ignores SIGINT and ends when ``parent`` ends.

    Call it first thing in the worker (a pool initializer, a ``worker_init_fn``). SIGINT is what a
    terminal sends to the whole process group on Ctrl-C; the parent decides what happens then. On Linux
    the kernel sends SIGKILL when the thread that started this process ends (``PR_SET_PDEATHSIG``), at
    once and whatever the worker is doing: start workers from a thread that lives as long as they do.
    Elsewhere :func:`watch_parent`, whose thread needs the worker to let go of the GIL.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a parent may block it while it starts workers
    if sys.platform != "linux":
        watch_parent()
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent ended before prctl: no signal will come
        os._exit(1)
