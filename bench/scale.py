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
from ingest_build import CORPORA, MB, missing_corpora, overton_command, prepare_inputs

RAY_START_STOP = "import ray; ray.init(num_cpus=2, include_dashboard=False); ray.shutdown()"


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
        save_results("scale", argv, {"input_mb": round(mb, 2), "repeat": args.repeat, "rows": rows,
                                     "ray_overhead_s": overhead, "identical": identical})
        return 0 if all(identical.values()) else 1
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
