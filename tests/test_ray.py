"""``overton build --executor ray``: the same bytes as a local build, also after a killed driver or worker, on
synthetic text, the bundled sample and real text of every profile.

Ray runs in local mode, started once for this file with 2 CPUs and shut down after it (no Ray process
may outlive the tests). Builds run for real: in this process (Ray already initialised is used as it
is) or as ``overton build --address ...`` subprocesses that join this file's cluster, so that killing
one kills a driver, not the cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from overton.corpus.workspace import Workspace
from overton.demo import SAMPLE, sample_dir
from overton.pipelines.build import build
from overton.spiders.ingest import ingest
from tests.conftest import SHARED_DATA
from tests.test_build import _clone, _synthetic_corpus, _tree

ray = pytest.importorskip("ray")

DOCUMENTS = 2000  # about 10 document tasks of 1 MB


def _command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # ended meanwhile
        return ""


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray cluster of this machine with 2 CPUs; checks that shutting it down left nothing."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    started = [p for p in psutil.Process().children(recursive=True) if "ray" in _command_line(p)]
    assert len(started) >= 3  # the cluster's processes and the workers it started (not the builds' pool's)
    ray.shutdown()
    _, alive = psutil.wait_procs(started, timeout=15)
    for process in alive:
        process.kill()
    assert alive == [], f"Ray processes left after shutdown: {[(p.pid, p.cmdline()[:3]) for p in alive]}"


def _real_text() -> list[tuple[str, str, str, list[Path]]]:
    """(source, format, profile, files) of a little real text of every profile from ../shared/data: a sitting
    report (paragraph mode), sentence files of two sittings (which share sentences), Wikipedia articles,
    and labelled sentences in French, English and Italian (the detector's doubtful cases). None when the
    folder is absent: the synthetic corpus and the bundled sample still run."""
    if not SHARED_DATA.is_dir():
        return []
    sentences = sorted((SHARED_DATA / "assemblee-sentences-2016-2017").glob("*.txt"))[:2]
    articles = sorted((SHARED_DATA / "wikipedia" / "parse-html").glob("*.html"))[:3]
    languages = [SHARED_DATA / "langid" / "sentences" / f"{code}.txt" for code in ("fr", "en", "it")]
    return [("assemblee", "text", "debate", [SHARED_DATA / "assemblee-2013" / "txt" / "20130119.txt"]),
            ("assemblee-sentences", "lines", "debate", sentences),
            ("wikipedia", "wikipedia-html", "encyclopedia", articles),
            ("langid", "lines", "web", languages)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Workspace, dict[str, bytes]]:
    """The synthetic corpus of the build tests, the bundled sample and real text (:func:`_real_text`), and the
    files of its local build."""
    root = tmp_path_factory.mktemp("ray")
    workspace = Workspace.init(root / "ws")
    _synthetic_corpus(workspace, documents=DOCUMENTS)
    for filename, source, profile, licence in SAMPLE:
        ingest(workspace, [sample_dir() / filename], source, default_license=licence, profile=profile)
    for source, fmt, profile, paths in _real_text():
        ingest(workspace, paths, source, fmt=fmt, profile=profile)
    expected = _tree(build(_clone(workspace, root / "reference"), jobs=2, progress=False).version.path)
    return workspace, expected


def _command(workspace: Workspace, *extra: str) -> list[str]:
    return [sys.executable, "-m", "overton", "build", "--workspace", str(workspace.root), "--quiet", *extra]


def _markers(workspace: Workspace) -> list[Path]:
    tasks = workspace.state / "build" / "overton" / "v0001" / "tasks"
    return sorted(tasks.glob("t-*.json")) if tasks.is_dir() else []


def _record(workspace: Workspace) -> dict:
    return json.loads(sorted(workspace.runs.glob("*-build.json"))[-1].read_text())


def test_a_ray_build_is_byte_identical_to_a_local_one(cluster, corpus, tmp_path):
    workspace = _clone(corpus[0], tmp_path / "ws")
    result = build(workspace, progress=False, executor="ray")
    assert _tree(result.version.path) == corpus[1]
    assert result.tasks["documents"]["done_before"] == 0 and result.tasks["documents"]["tasks"] >= 8
    assert list(result.tasks) == ["copy_keys", "copies", "documents", "inherit", "parent", "exact_hash", "exact_id",
                                  "exact_dedup", "near_bands", "near_buckets", "near_clusters", "shards"]
    assert ray.is_initialized(), "a cluster the build did not start is left running"
    sources, language = result.version.manifest["counts"]["sources"], result.version.manifest["steps"]["language"]
    if _real_text():  # the real text had the work it was chosen for: the detector, foreign text, exact copies
        assert {"assemblee", "assemblee-sentences", "wikipedia", "langid"} <= set(sources)
        assert language["detector_calls"] > 0 and sources["langid"]["reasons"]["not_french"] > 0
        assert sources["assemblee-sentences"]["reasons"]["exact_duplicate"] > 0


def test_a_killed_driver_resumes_on_ray_or_locally_without_redoing_finished_tasks(cluster, corpus, tmp_path):
    workspace = _clone(corpus[0], tmp_path / "ws")
    driver = subprocess.Popen(_command(workspace, "--executor", "ray", "--address", cluster),
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_markers(workspace)) < 3:
        assert driver.poll() is None, f"the build ended before 3 tasks were done: {driver.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(2)  # Ray stops the dead driver's tasks; one may still finish and leave its marker
    done = len(_markers(workspace))
    locally = _clone(workspace, tmp_path / "local")
    for resumed, executor in ((workspace, ["--executor", "ray", "--address", cluster]),
                              (locally, ["--executor", "local", "--jobs", "2"])):
        rerun = subprocess.run(_command(resumed, *executor), capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        tasks = _record(resumed)["tasks"]["documents"]
        assert 3 <= tasks["done_before"] == done < tasks["tasks"], (tasks, done)
        assert _tree(resumed.datasets / "overton" / "v0001") == corpus[1]


def _task_workers() -> list[psutil.Process]:
    """Ray worker processes running a build task now (Ray titles them ``ray::<function>`` while they run one)."""
    workers = []
    for process in psutil.Process().children(recursive=True):
        if _command_line(process).startswith("ray::run_marked"):
            workers.append(process)
    return workers


def test_a_worker_killed_mid_task_is_retried_with_the_same_result(cluster, corpus, tmp_path):
    workspace = _clone(corpus[0], tmp_path / "ws")
    driver = subprocess.Popen(_command(workspace, "--executor", "ray", "--address", cluster),
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (workers := _task_workers()):
            assert driver.poll() is None, f"the build ended before a task was seen: {driver.communicate()}"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        before = len(_markers(workspace))
        workers[0].kill()
        _, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 0, stderr
    tasks = _record(workspace)["tasks"]["documents"]
    assert before < tasks["tasks"] and tasks["done_before"] == 0
    assert _tree(workspace.datasets / "overton" / "v0001") == corpus[1]


@pytest.mark.parametrize(("address", "message"), [
    ("closed", "cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused): is it started (`ray start "
               "--head`) and is the port open?"),
    ("ray-head", "Ray cluster address 'ray-head': expected HOST:PORT (e.g. 10.0.0.5:6379) or auto"),
])
def test_an_address_where_no_cluster_answers_is_one_line_at_once(tmp_path, address, message):
    """Ray itself would retry such an address for minutes, printing its own warnings."""
    import socket

    with socket.socket() as free:  # a port nothing listens on once this socket is closed
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    address = f"127.0.0.1:{port}" if address == "closed" else address
    workspace = Workspace.init(tmp_path / "ws")
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "a", "text": "Un texte."}) + "\n", encoding="utf-8")
    overton = str(Path(sys.executable).parent / "overton")
    subprocess.run([overton, "ingest", str(tmp_path / "in.jsonl"), "--source", "s", "-w", str(workspace.root)],
                   check=True, capture_output=True)
    started = time.monotonic()
    done = subprocess.run([overton, "build", "-q", "--executor", "ray", "--address", address, "-w",
                           str(workspace.root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr == f"overton: error: {message.format(port=port)}\n"
