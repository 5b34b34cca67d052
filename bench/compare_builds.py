"""Check that a revision of overton and the working tree build the same bytes from the same raw data.

A change that only makes a build step faster must leave its output alone: every shard, every signal, every
decision and every statistic of the manifest. This script ingests the inputs once with the working tree's
overton, copies the workspace, builds one copy with the overton of ``REV`` (its ``overton/`` folder taken
with ``git archive`` into a temporary folder, first on ``PYTHONPATH``) and the other with the working tree,
both ``--jobs 1``, and compares every file of the two versions by sha256, then the manifests key by key.

Inputs: the demo sample (as ``overton demo`` ingests it) and, when ``../shared/data`` is present, a few MB
of real text chosen so that every branch of every step has work: raw HTML speeches (``speech``), sitting
reports and sentence files (``debate``), Wikipedia articles (``encyclopedia``), and Europarl lines in French
and English plus labelled sentences of 16 languages (``web``: every quality rule and PII on, most lines
doubtful enough to reach the language detector).

Run: ``python bench/compare_builds.py [REV] [--only overton/pipelines/quality.py ...]`` (default ``HEAD``;
``--only`` compares just those files' change, the rest of the tree being the working tree's). Prints one line
per data set and exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest_build import DATA, REPO

LANGID = ("fr", "en", "es", "it", "ca", "pt", "ro", "la", "de", "nl", "ga", "yo", "el", "ru", "tr", "vi")
SAMPLE = REPO / "overton" / "sample"


def real_inputs() -> list[tuple[str, list[str], list[Path]]]:
    """(source, ingest options, files) of the real-data subset; empty when ../shared/data is absent."""
    if not DATA.is_dir():
        return []
    sentences = sorted((DATA / "assemblee-sentences-2016-2017").glob("*.txt"))
    return [
        ("vie-publique", ["--format", "csv", "--field", "thematics=tags", "--field", "keywords=topics",
                          "--profile", "speech"], [DATA / "viepublique" / "statements-2020.csv"]),
        ("assemblee-2013", ["--format", "text", "--profile", "debate"],
         sorted((DATA / "assemblee-2013" / "txt").glob("*.txt"))[:3]),
        ("assemblee-sentences", ["--format", "text", "--profile", "debate"], sentences[::15]),
        ("wikipedia", ["--format", "wikipedia-html", "--profile", "encyclopedia"],
         sorted((DATA / "wikipedia" / "parse-html").glob("*.html"))[:12]),
        *((f"europarl-{lang}", ["--format", "lines", "--profile", "web"],
           [DATA / "europarl-fr-en" / f"europarl-v7.fr-en.{lang}"]) for lang in ("fr", "en")),
        ("langid", ["--format", "lines", "--profile", "web"],
         [DATA / "langid" / "sentences" / f"{code}.txt" for code in LANGID]),
    ]


def sample_inputs() -> list[tuple[str, list[str], list[Path]]]:
    from overton.demo import SAMPLE as DEMO

    return [(source, ["--profile", profile, "--license", licence], [SAMPLE / name])
            for name, source, profile, licence in DEMO]


def _env(pythonpath: Path | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(pythonpath)} if pythonpath else env


def overton(pythonpath: Path | None, *args: str) -> None:
    """``python -m overton ARGS`` from a neutral folder, so that only PYTHONPATH or the install decides which."""
    result = subprocess.run([sys.executable, "-m", "overton", *args], env=_env(pythonpath), capture_output=True,
                            text=True, cwd=tempfile.gettempdir())
    if result.returncode not in (0, 1):
        sys.exit(f"overton {' '.join(args[:3])} failed ({result.returncode}): {result.stderr[-2000:]}")


def which_overton(pythonpath: Path | None) -> str:
    code = "import overton, pathlib; print(pathlib.Path(overton.__file__).parent)"
    return subprocess.run([sys.executable, "-c", code], env=_env(pythonpath), capture_output=True, text=True,
                          check=True, cwd=tempfile.gettempdir()).stdout.strip()


def base_tree(folder: Path, rev: str, only: list[str]) -> None:
    """``overton/`` as of ``rev`` in ``folder``; with ``only``, the working tree's with just those files from ``rev``
    (others may be changing other modules meanwhile)."""
    folder.mkdir()
    if not only:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "overton"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        return
    shutil.copytree(REPO / "overton", folder / "overton", ignore=shutil.ignore_patterns("__pycache__"))
    for path in only:
        shown = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True, check=True)
        (folder / path).write_bytes(shown.stdout)


def digests(version: Path) -> dict[str, str]:
    return {p.relative_to(version).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(version.rglob("*")) if p.is_file()}


def differences(a: object, b: object, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in differences(a.get(key), b.get(key), f"{path}.{key}")]
    return [] if a == b else [f"{path}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"]


def compare(name: str, inputs: list[tuple[str, list[str], list[Path]]], old: Path, tmp: Path) -> bool:
    template = tmp / f"{name}-ingested"
    overton(None, "init", str(template))
    for source, options, files in inputs:
        overton(None, "ingest", "-w", str(template), "--source", source, *options, *map(str, files))
    versions, seconds = {}, {}
    for label, pythonpath in (("base", old), ("tree", None)):
        workspace = tmp / f"{name}-{label}"
        shutil.copytree(template, workspace)
        start = time.perf_counter()
        overton(pythonpath, "build", "-w", str(workspace), "--jobs", "1", "--quiet")
        seconds[label] = time.perf_counter() - start
        versions[label] = workspace / "datasets" / "overton" / "v0001"
    base, tree = (digests(versions[label]) for label in ("base", "tree"))
    problems = [f"{path}: only in one build" for path in sorted(set(base) ^ set(tree))]
    problems += [f"{path}: sha256 differs" for path in sorted(set(base) & set(tree))
                 if path != "manifest.json" and base[path] != tree[path]]
    manifests = [json.loads((versions[label] / "manifest.json").read_text()) for label in ("base", "tree")]
    problems += [f"manifest{d}" for d in differences(*manifests)]
    mb = sum(p.stat().st_size for _, _, files in inputs for p in files) / 1e6
    shards = sum(path != "manifest.json" for path in base)
    verdict = "identical" if not problems else f"DIFFERENT ({len(problems)} differences)"
    print(f"{name}: {mb:.1f} MB of input, {shards} files and the manifest {verdict}; "
          f"build {seconds['base']:.1f} s (base) / {seconds['tree']:.1f} s (working tree)")
    for problem in problems[:20]:
        print(f"  {problem}")
    return not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", nargs="?", default="HEAD", help="git revision to compare with (default HEAD)")
    parser.add_argument("--only", nargs="+", default=[], metavar="PATH",
                        help="take only these files (under overton/) from REV, the rest from the working tree")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="overton-compare-"))
    try:
        old = tmp / "base"
        base_tree(old, args.rev, args.only)
        if which_overton(old) != str(old / "overton") or which_overton(None) != str(REPO / "overton"):
            sys.exit(f"cannot tell the two overtons apart: {which_overton(old)}, {which_overton(None)}")
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.rev], capture_output=True,
                                text=True, check=True).stdout.strip()
        print(f"{args.rev} ({commit}) against the working tree")
        same = compare("sample", sample_inputs(), old, tmp)
        real = real_inputs()
        if real:
            same &= compare("real", real, old, tmp)
        else:
            print(f"real: skipped, ../shared/data not found ({DATA})")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
