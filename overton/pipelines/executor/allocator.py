"""The C allocator set for what a build task does: make and drop arrays of megabytes for every batch.

numpy's arrays over a batch's bytes and tokens are megabytes each, made and dropped for every batch. glibc serves a
block above its mmap threshold (128 kB at start, raised as such blocks are freed) straight from the kernel and
unmaps it on free, and gives the top of its heap back beyond twice that threshold: the next batch faults the same
pages in again, each one zero-filled by the kernel. Keeping freed memory in the heap halves a build's page faults
(bench/cleaning.py: 170,000 to 80,000, 0.4 s of system time in 6.5); a process's peak grows by about 80 MB
(ingest_build.py: 545 to about 620 MB), the freed memory it keeps for its next batch. Arrow's buffers
come from its own pool (mimalloc), which this leaves as it is.
"""

from __future__ import annotations

import ctypes
import functools

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>


@functools.cache
def keep_freed_memory() -> None:
    """Blocks up to 32 MB (glibc's largest threshold) from the heap, which keeps up to 1 GB of free memory at its top;
    nothing where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)
