"""What the benchmarks share: running a command and measuring it, and the results file with its description.

Each script in ``bench/`` runs on its own (``python bench/<name>.py``, whose folder is then on ``sys.path``),
measures the commands it compares with :func:`measure` and ends with :func:`save_results`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # psutil is a dev extra; without it peak RSS is the command's own VmHWM only
    psutil = None

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Measured:
    argv: list[str]
    seconds: float
    cpu_seconds: float  # user + system of the command and the children it waited for
    peak_rss: int  # bytes: the most of its process tree's summed RSS (sampled) and its own VmHWM
    processes: int  # most processes seen at once in the tree
    own_cpu_seconds: float  # this process meanwhile (a local HTTP server's threads, the sampler)
    returncode: int
    stdout: str
    stderr: str

    def check(self, allowed: tuple[int, ...] = (0,)) -> Measured:
        if self.returncode not in allowed:
            sys.exit(f"command failed with exit code {self.returncode}: {' '.join(self.argv[:6])} ...\n"
                     f"{self.stderr[-3000:]}")
        return self


def _vm_hwm(pid: int) -> int:
    """The kernel's exact peak RSS of process ``pid`` so far (Linux), 0 where unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(argv: list[str], cwd: Path | None = None, sample_s: float = 0.02) -> Measured:
    """Run ``argv``: wall time, CPU time (``wait4``), peak RSS, the most processes at once, exit code, output.

    Peak RSS is sampled every ``sample_s``: the RSS summed over the process tree (psutil: the command, its
    pool workers, a forkserver) and the command's own ``VmHWM``. ``ru_maxrss`` from ``wait4`` is not used:
    Linux carries the parent's high-water mark into a child started by vfork/exec, and a benchmark process
    may hold a whole corpus.
    """
    peak = {"rss": 0, "processes": 1}
    stop = threading.Event()

    def sample(pid: int) -> None:
        root = None
        if psutil is not None:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
        while not stop.is_set():
            rss = _vm_hwm(pid)
            if root is not None:
                with contextlib.suppress(psutil.Error):
                    tree = [root, *root.children(recursive=True)]
                    total = 0
                    for proc in tree:
                        with contextlib.suppress(psutil.Error):
                            total += proc.memory_info().rss
                    rss = max(rss, total)
                    peak["processes"] = max(peak["processes"], len(tree))
            peak["rss"] = max(peak["rss"], rss)
            stop.wait(sample_s)

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        own0, start = time.process_time(), time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, text=True)
        sampler = threading.Thread(target=sample, args=(proc.pid,), daemon=True)
        sampler.start()
        cpu = 0.0
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
        else:
            proc.wait()
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        own = time.process_time() - own0
        out.seek(0)
        err.seek(0)
        return Measured(argv, seconds, cpu, peak["rss"], peak["processes"], own, proc.returncode, out.read(),
                        err.read())


def save_results(name: str, argv: list[str] | None, results: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json``: the run's description, then ``results``; print where it went."""
    from overton import __version__

    record = {
        "benchmark": name,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", f"bench/{name}.py", *(argv if argv is not None else sys.argv[1:])]),
        "overton": __version__,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        **results,
    }
    path = REPO / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    took = f" ({results['seconds']:.0f} s)" if "seconds" in results else ""
    print(f"\nresults: {path.relative_to(REPO)}{took}")
    return path
