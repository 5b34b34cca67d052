"""A killed or stopped command leaves no process behind, and what it did is kept.

Every command runs for real in a subprocess, in its own session so that a failing test can still
kill what it left; the processes it started are read from /proc (psutil, recursively) while it works,
then only the main process is signalled, as cron's ``timeout``, systemd or the OOM killer do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from overton.corpus.workspace import Workspace
from overton.pipelines.build import build
from tests.test_build import _build_command, _clone, _synthetic_corpus, _tree

GRACE_S = 5.0


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_gone(processes: list[psutil.Process], since: float,
               grace: float = GRACE_S) -> tuple[list[psutil.Process], float]:
    """The processes alive ``grace`` seconds after ``since`` (a ``time.monotonic()``; the signal), and
    the seconds from ``since`` until the last one ended."""
    while _alive(processes) and time.monotonic() - since < grace:
        time.sleep(0.002)
    return _alive(processes), time.monotonic() - since


def _kill_session(process: subprocess.Popen) -> None:
    """What a failed test leaves: its command's session, killed (the orphans keep the session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Workspace, dict[str, bytes]]:
    """The synthetic corpus of the build tests, and the files of its uninterrupted build."""
    root = tmp_path_factory.mktemp("orphans")
    workspace = Workspace.init(root / "ws")
    _synthetic_corpus(workspace)
    expected = _tree(build(_clone(workspace, root / "reference"), jobs=2, progress=False).version.path)
    return workspace, expected


def _build_while_tasks_run(workspace: Workspace) -> tuple[subprocess.Popen, list[psutil.Process], list[Path]]:
    """Start ``overton build --jobs 2``; once its workers have finished a task and others run, return
    the process, every process it started and the finished tasks' markers."""
    tasks = workspace.state / "build" / "overton" / "v0001" / "tasks"
    process = subprocess.Popen(_build_command(workspace), start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    main = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"the build ended before its tasks were seen: {process.communicate()}"
        assert time.monotonic() < deadline
        started = main.children(recursive=True)
        markers = sorted(tasks.glob("t-*.json")) if tasks.is_dir() else []
        if len(started) >= 3 and markers:
            return process, started, markers
        time.sleep(0.002)


def _roles(processes: list[psutil.Process]) -> list[str]:
    roles = []
    for process in processes:
        command = " ".join(process.cmdline())
        roles.append("resource tracker" if "resource_tracker" in command
                     else "worker" if "multiprocessing.spawn" in command else command)
    return sorted(roles)


def test_sigkill_of_the_build_leaves_no_process_and_the_rerun_equals_an_uninterrupted_build(corpus, tmp_path):
    workspace = _clone(corpus[0], tmp_path / "ws")
    process, started, markers = _build_while_tasks_run(workspace)
    try:
        assert _roles(started) == ["resource tracker", "worker", "worker"]
        killed = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)  # the main process only, not its process group
        left, seconds = _wait_gone(started, killed)
        assert left == [], f"alive {GRACE_S} s after SIGKILL: {_roles(left)}"
        process.communicate(timeout=30)  # returns once the last holder of its stdout and stderr is gone
        print(f"SIGKILL: the {len(started)} processes it started gone {seconds:.3f} s after the signal")
    finally:
        _kill_session(process)
    assert all(marker.is_file() for marker in markers)
    done = subprocess.run(_build_command(workspace), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _tree(workspace.datasets / "overton" / "v0001") == corpus[1]


@pytest.mark.parametrize(("stop", "to_group"), [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGTERM-to-the-main-process", "SIGINT-to-the-group-as-ctrl-c"])
def test_a_stop_signal_stops_the_pool_exits_128_plus_n_with_one_line_and_the_build_resumes(
        corpus, tmp_path, stop, to_group):
    workspace = _clone(corpus[0], tmp_path / "ws")
    process, started, markers = _build_while_tasks_run(workspace)
    try:
        stopped = time.monotonic()
        (os.killpg if to_group else os.kill)(process.pid, stop)
        out, err = process.communicate(timeout=30)
        left, seconds = _wait_gone(started, stopped)
        assert left == [], f"alive {GRACE_S} s after {stop.name}: {_roles(left)}"
        print(f"{stop.name}: the {len(started)} processes it started gone {seconds:.3f} s after the signal")
    finally:
        _kill_session(process)
    assert process.returncode == 128 + stop
    assert err == f"overton: build stopped by {stop.name}; the same command resumes it\n"  # no worker's traceback
    assert out == ""
    [record] = [json.loads(path.read_text()) for path in workspace.runs.glob("*-build.json")]
    assert (record["status"], record["exit_code"]) == ("failed", 128 + stop)
    assert all(marker.is_file() for marker in markers)
    assert not (workspace.datasets / "overton" / "v0001" / "manifest.json").exists()
    done = subprocess.run(_build_command(workspace), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _tree(workspace.datasets / "overton" / "v0001") == corpus[1]


# A parent (this script) that starts one child with a start method and lets it make itself a worker;
# the test kills the parent and watches the child.
_PARENT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from overton.corpus import lifetime

    def child(parent, how):
        if how == "late":  # the parent is gone before the child ties itself to it
            while os.getppid() == parent:
                time.sleep(0.005)
        if how == "watch":
            lifetime.watch_parent(parent)
        else:
            lifetime.worker_of(parent)
        print("tied", file=sys.stderr, flush=True)  # not stdout: a forked child's line could meet the pid's
        time.sleep(120)

    if __name__ == "__main__":
        method, how = sys.argv[1:]
        process = multiprocessing.get_context(method).Process(target=child, args=(os.getpid(), how))
        process.start()
        print(process.pid, flush=True)
        process.join()  # a child that failed ends this parent too, and the test reads end of file
""")


@pytest.mark.parametrize(("method", "how"), [("spawn", "worker_of"), ("fork", "worker_of"), ("spawn", "watch"),
                                             ("fork", "watch"), ("spawn", "late")])
def test_a_worker_ends_with_its_killed_parent(tmp_path, method, how):
    """worker_of (prctl on Linux); watch_parent, the thread used elsewhere, run here too; late: the parent
    ended before the child called worker_of, so no death signal will ever come and the child ends itself."""
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), method, how], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        if how != "late":
            assert parent.stderr.readline() == "tied\n"
        killed = time.monotonic()
        parent.kill()
        left, _seconds = _wait_gone([child], killed)
        assert left == [], f"the child of a killed parent ({method}, {how}) is alive {GRACE_S} s later"
    finally:
        _kill_session(parent)


@pytest.fixture(scope="module")
def train_base(tmp_path_factory) -> Path:
    """The sample built, a tokenizer and a tiny GPT-J config, as the training tests have them."""
    pytest.importorskip("torch")
    from overton.corpus.dataset import Version
    from overton.train.loader import Tokenizer
    from overton.train.tiny import train_tokenizer, write_gptj_config
    from tests.train_fixtures import documents, sample_workspace

    base = tmp_path_factory.mktemp("train") / "base"
    texts = [d["text"] for d in documents(Version.open(sample_workspace(base).datasets / "overton"))]
    write_gptj_config(base / "tiny.json", vocab_size=400,
                      eos_id=Tokenizer(str(train_tokenizer(base / "tokenizer", texts))).eos_id)
    return base


@pytest.mark.parametrize("processes", [1, 2], ids=["overton-train", "torchrun-2-processes"])
def test_sigkill_of_the_trainer_leaves_no_rank_and_no_loader_worker(train_base, tmp_path, processes):
    """``loader_workers = 2``: torch's own check of the parent takes up to 5 s, so 2 s is asserted here.
    Under torchrun the ranks are in sessions of their own: only their tie to torchrun ends them."""
    from tests.test_train_run import command, workspace

    ws = workspace(train_base, tmp_path / "ws", steps=10_000, save_every=10_000, eval_every=0, log_every=1,
                   micro_batch=2, global_batch=4, loader_workers=2)
    metrics = ws / "train" / "metrics.jsonl"
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(command(ws, processes), start_new_session=True, stdout=subprocess.DEVNULL,
                                   stderr=stderr)
    started: list[psutil.Process] = []
    try:
        main = psutil.Process(process.pid)
        deadline = time.monotonic() + 180
        while not (metrics.is_file() and '"loss"' in metrics.read_text()):  # steps ran on the workers' batches
            assert process.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = main.children(recursive=True)
        names = sorted(p.name() for p in started)
        assert names == ["pt_data_worker"] * 2 if processes == 1 else ["pt_data_worker"] * 4 + ["python"] * 2
        killed = time.monotonic()
        process.kill()
        left, seconds = _wait_gone(started, killed, grace=2.0)
        assert left == [], f"alive 2 s after SIGKILL: {[p.name() for p in left]}"
        print(f"train SIGKILL ({processes} process(es)): the {len(started)} processes started gone {seconds:.3f} s"
              " after the signal")
    finally:
        _kill_session(process)
        for leftover in _alive(started):
            leftover.kill()
