"""Benchmark: the same ``overton build`` with 1 and 2 local processes and on Ray (2 CPUs); bytes compared.

Inputs: the real text of ``bench/ingest_build.py`` (``../shared/data``: Assemblée sittings, the 2013
debate, vie-publique speeches; skipped with a message when absent), copied ``--repeat`` times, ingested
once into a template workspace with ``overton ingest``. Each build runs as a subprocess on its own copy
of that workspace and is measured with ``common.measure`` (wall time, summed RSS of its process tree):

* ``local -j 1`` and ``local -j 2``: ``overton build --executor local --jobs J``;
* ``ray, own cluster``: ``overton build --executor ray --jobs 2``, which starts a Ray cluster of this
  machine with 2 CPUs, runs every task as a Ray task and stops the cluster;
* ``ray start+stop``: ``ray.init(num_cpus=2)`` then ``ray.shutdown()`` alone, the fixed part of the above.

Every build's version folder must hold the same bytes (sha256 of every file, manifest included); the
benchmark fails otherwise. MB are 10^6 bytes of input files; MB/s is input MB / wall seconds; Ray's
overhead is its wall time minus ``local -j 2``'s.

Then the memory of each dedup stage per document, at two corpus sizes: the paragraphs of the 2013 sittings
(``--format lines --split block``) and the sentences of the 2016-2017 ones (``--split line``), about 183,000
documents, and the same from the first half of each corpus's files. Each build runs in this process with an
executor that runs every task of the copies, exact dedup and near-dedup stages in a fresh process of its own and
samples its anonymous memory (``RssAnon``, so the memory-mapped band files, which are page cache, do not count)
every 5 ms; a stage's figure is its largest task's growth over what the process held before the task. Bytes per
document divide it by the documents the stage sees (all of them for copies and exact dedup, those exact dedup
kept for near-dedup); the two sizes give a line (fixed + per-document) that is extrapolated, for the stages of
one task over the whole build, to the seed corpus (2 GB) and to 1 TB of text with documents of 7,720 bytes (the
mean of the real speeches of ``bench/cleaning.py``; sentences and paragraphs are far smaller, so the measured
sizes hold many documents for their megabytes).

Run: ``python bench/scale.py [--repeat N] [--keep]`` (Ray: ``pip install -e '.[ray]'``). Prints a markdown
table and writes ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import measure, save_results
from ingest_build import CORPORA, DATA, MB, missing_corpora, overton_command, prepare_inputs

RAY_START_STOP = "import ray; ray.init(num_cpus=2, include_dashboard=False); ray.shutdown()"
#: The dedup stages, by module: one task over the whole build (near clusters: extrapolated), one task per key range
#: (copies and exact dedup: extrapolated up to a range's documents; the copies module's keys tasks, one per document
#: task, are measured with it), or one task per document task (bands) or per band and key range read in chunks of at
#: most 2^22 keys (buckets), bounded by design.
DEDUP_STAGES = {"copies": "copies", "exact_dedup": "exact dedup", "near_bands": "near bands",
                "near_buckets": "near buckets", "near_clusters": "near clusters"}
BOUNDED = {"near_bands", "near_buckets"}
#: The copies' and exact dedup's tasks hold one key range each: the documents of 1024 document tasks of 8 MB row
#: groups.
RANGE_DOCUMENTS = {"copies": 1024 * 8 * MB / 7_720, "exact_dedup": 1024 * 8 * MB / 7_720}
#: Many small distinct documents: the paragraphs of the 2013 sittings and the sentences of the 2016-2017 ones.
PARAGRAPHS = (("assemblee-2013", DATA / "assemblee-2013" / "txt", "block"),
              ("assemblee-sentences", DATA / "assemblee-sentences-2016-2017", "line"))
EXTRAPOLATE_MB = {"seed corpus, 2 GB": 2_000, "1 TB": 1_000_000}
#: Documents at the extrapolated sizes: the mean of the real speeches and sittings of bench/cleaning.py (the seed's
#: 2 GB is then about 259,000 documents), every one assumed to reach near-dedup.
MEAN_DOCUMENT_BYTES = 7_720


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _measured_task(call, results) -> None:
    """In a fresh process: one task, and the most anonymous memory it added (sampled every 5 ms)."""
    import threading

    from overton.pipelines.executor.base import run_marked

    base, peak, done = _rss_anon(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_anon())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run_marked(call)
    done.set()
    sampler.join()
    results.put(max(peak[0], _rss_anon()) - base)


def measuring_executor():
    """An executor that runs the dedup stages' tasks each in a fresh process, recording their memory."""
    import multiprocessing

    from overton.pipelines.executor import Executor

    class Measuring(Executor):
        def __init__(self) -> None:
            self.peaks: dict[str, int] = {}

        def map(self, fn, items):
            spawn = multiprocessing.get_context("spawn")
            for item in items:
                stage = item[0].__module__.rsplit(".", 1)[-1]
                if stage not in DEDUP_STAGES:
                    yield fn(item)
                    continue
                results = spawn.Queue()
                process = spawn.Process(target=_measured_task, args=(item, results))
                process.start()
                grown = results.get()
                process.join()
                if process.exitcode:
                    raise RuntimeError(f"a {stage} task failed")
                self.peaks[stage] = max(self.peaks.get(stage, 0), grown)
                yield None

    return Measuring()


def dedup_memory(tmp: Path) -> dict[str, Any]:
    """Each dedup stage's memory per document at two sizes, and the extrapolation (see the module docstring)."""
    from overton.corpus.workspace import Workspace
    from overton.pipelines.build import build
    from overton.spiders.ingest import ingest

    sizes = []
    for name, share in (("half", 0.5), ("whole", 1.0)):
        workspace = Workspace.init(tmp / f"memory-{name}")
        settings = workspace.settings_path.read_text()  # many document tasks, as a large corpus has
        workspace.settings_path.write_text(settings.replace("row_group_mb = 8", "row_group_mb = 1"))
        mb = 0.0
        for source, folder, split in PARAGRAPHS:
            files = sorted(folder.glob("*.txt"))
            chosen = files[: round(len(files) * share)]
            ingest(workspace, chosen, source, fmt="lines", split=split, profile="debate")
            mb += sum(p.stat().st_size for p in chosen) / MB
        executor = measuring_executor()
        version = build(workspace, progress=False, executor=executor).version
        counts = version.manifest["counts"]
        near = counts["input"] - sum(n for reason, n in counts["reasons"].items() if reason != "near_duplicate")
        sizes.append({"corpus": name, "mb": round(mb, 2), "documents": counts["input"], "near_dedup_documents": near,
                      "stages": executor.peaks})
        shutil.rmtree(workspace.root)
    half, whole = sizes
    rows = []
    for stage, label in DEDUP_STAGES.items():
        key = "near_dedup_documents" if stage.startswith("near") else "documents"
        per_doc = (whole["stages"][stage] - half["stages"][stage]) / max(whole[key] - half[key], 1)
        fixed = whole["stages"][stage] - per_doc * whole[key]
        docs_per_mb = MB / MEAN_DOCUMENT_BYTES
        row = {"stage": label, **{f"{s['corpus']}_bytes_per_doc": round(s["stages"][stage] / max(s[key], 1))
                                  for s in sizes}, "slope_bytes_per_doc": round(per_doc)}
        for corpus, mb in EXTRAPOLATE_MB.items():
            documents = min(docs_per_mb * mb, RANGE_DOCUMENTS.get(stage, float("inf")))
            row[corpus] = None if stage in BOUNDED else round(max(fixed + per_doc * documents, 0) / MB)
        rows.append(row)
    return {"sizes": sizes, "rows": rows}


def version_digest(workspace: Path) -> dict[str, str]:
    version = workspace / "datasets" / "overton" / "v0001"
    return {p.relative_to(version).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(version.rglob("*")) if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="copies of the inputs (default 2: 39 MB)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if (skipped := missing_corpora()) is not None:
        print(skipped)
        return 0
    has_ray = importlib.util.find_spec("ray") is not None
    if not has_ray:
        print("ray is not installed: only the local builds run (pip install -e '.[ray]')")
    overton = overton_command()
    tmp = Path(tempfile.mkdtemp(prefix="overton-scale-"))
    try:
        inputs = prepare_inputs(tmp, args.repeat)
        mb = sum(p.stat().st_size for files in inputs.values() for p in files) / MB
        template = tmp / "ingested"
        measure([*overton, "init", str(template)]).check()
        for corpus in CORPORA:
            measure([*overton, "ingest", "-w", str(template), "--source", corpus.source, *corpus.options,
                     *map(str, inputs[corpus.source])]).check(allowed=(0, 1))
        runs = {"local -j 1": ["--executor", "local", "--jobs", "1"],
                "local -j 2": ["--executor", "local", "--jobs", "2"]}
        if has_ray:
            runs["ray, own cluster (2 CPUs)"] = ["--executor", "ray", "--jobs", "2"]
        rows: list[dict[str, Any]] = []
        digests = {}
        for name, options in runs.items():
            workspace = tmp / name.split(",")[0].replace(" ", "")
            shutil.copytree(template, workspace)
            result = measure([*overton, "build", "-w", str(workspace), "--quiet", *options]).check()
            digests[name] = version_digest(workspace)
            rows.append({"build": name, "seconds": round(result.seconds, 2), "mb_s": round(mb / result.seconds, 2),
                         "peak_rss_mb": round(result.peak_rss / MB), "processes": result.processes})
            print(f"  {name}: {result.seconds:.1f} s", file=sys.stderr)
            shutil.rmtree(workspace)
        if has_ray:
            fixed = measure([sys.executable, "-c", RAY_START_STOP]).check()
            rows.append({"build": "ray start+stop alone", "seconds": round(fixed.seconds, 2), "mb_s": None,
                         "peak_rss_mb": round(fixed.peak_rss / MB), "processes": fixed.processes})
        reference = digests["local -j 1"]
        identical = {name: digest == reference for name, digest in digests.items()}
        seconds = {row["build"]: row["seconds"] for row in rows}
        overhead = None
        if has_ray:
            overhead = round(seconds["ray, own cluster (2 CPUs)"] - seconds["local -j 2"], 2)
        print(f"\ninput: {mb:.1f} MB ({args.repeat} copies), {len(reference)} files in the version\n")
        print("| build | seconds | MB/s | peak RSS MB | processes |\n|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['build']} | {row['seconds']} | {row['mb_s'] if row['mb_s'] is not None else ''} | "
                  f"{row['peak_rss_mb']} | {row['processes']} |")
        if overhead is not None:
            print(f"\nRay's overhead over local -j 2: {overhead} s, of which {seconds['ray start+stop alone']} s "
                  "start and stop a cluster")
        print(f"byte-identical to local -j 1: {identical}")
        memory = dedup_memory(tmp)
        print("\n| corpus | MB | documents | reaching near-dedup |\n|---|---|---|---|")
        for size in memory["sizes"]:
            print(f"| {size['corpus']} | {size['mb']} | {size['documents']} | {size['near_dedup_documents']} |")
        columns = ["half_bytes_per_doc", "whole_bytes_per_doc", "slope_bytes_per_doc", *EXTRAPOLATE_MB]
        print("\n| stage (largest task) | bytes/doc, half | bytes/doc, whole | bytes/doc, slope | "
              + " | ".join(f"MB at {corpus}" for corpus in EXTRAPOLATE_MB) + " |")
        print("|---|" + "---|" * len(columns))
        for row in memory["rows"]:
            print(f"| {row['stage']} | " + " | ".join("bounded" if row[c] is None else f"{row[c]:,}" for c in columns)
                  + " |")
        save_results("scale", argv, {"input_mb": round(mb, 2), "repeat": args.repeat, "rows": rows,
                                     "ray_overhead_s": overhead, "identical": identical, "dedup_memory": memory})
        return 0 if all(identical.values()) else 1
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
