"""Benchmark: throughput and peak memory of ``overton ingest`` + ``overton build`` on real bulk text.

Inputs come from ``../shared/data`` (the folder beside the repository; skipped with a message when
absent), copied ``--repeat`` times under new names into a temporary folder so that the total is
about 100 MB and every copy is an exact duplicate of the first (the build's dedup has real work):

* ``assemblee-sentences-2016-2017/*.txt``: one file per sitting, ingested as one document each (``--format text``);
* ``assemblee-2013/txt/*.txt``: the 25 sitting reports of the 2013 debate, plain text;
* ``viepublique/statements-2020.csv``: speeches with raw HTML bodies (``--field thematics=tags
  --field keywords=topics``).

overton runs as the user runs it: ``overton init`` (with the three sources listed as curated political
text in ``overton.toml``), one ``overton ingest`` per corpus, then
``overton build --jobs J --quiet`` for each J (each J on its own copy of the ingested workspace).
Every command is a subprocess timed with ``time.perf_counter``; its peak memory is the largest sum of
RSS over the process tree (the command and its children: the build's forkserver and pool workers),
sampled every 50 ms with psutil, or at least the kernel's peak RSS of the command itself.

Side by side, what a user would otherwise write: one pandas script (``--baseline-pandas``, run as a
subprocess and measured the same way) that reads the same files into a DataFrame, strips HTML tags
with a regex, unescapes entities, normalises to NFC and squeezes white space, drops exact duplicate
texts with ``drop_duplicates`` and writes one zstd Parquet file. Skipped when pandas is not installed.

Run: ``python bench/ingest_build.py [--repeat N] [--jobs 1,2] [--keep]``. Prints a markdown table and
writes ``bench/results/ingest_build.json``. MB are 10^6 bytes of input files; MB/s per core is
MB / wall seconds / jobs; MB per CPU-second is MB / the CPU time of the command and its children (user +
system), the figure to compare when other processes share the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import measure, psutil, save_results

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MB = 1_000_000
TARGET_MB = 100
SAMPLE_S = 0.05


@dataclass(frozen=True)
class Corpus:
    source: str  # overton source name
    folder: str  # under ../shared/data
    pattern: str
    options: tuple[str, ...]

    @property
    def kind(self) -> str:
        return "csv" if self.pattern.endswith(".csv") else "text"


# Every input is public political text: each is ingested with its profile, as a user of this data would.
CORPORA = (
    Corpus("assemblee-sentences", "assemblee-sentences-2016-2017", "*.txt",
           ("--format", "text", "--profile", "debate")),
    Corpus("assemblee-2013", "assemblee-2013/txt", "*.txt", ("--format", "text", "--profile", "debate")),
    Corpus("vie-publique", "viepublique", "statements-2020.csv",
           ("--format", "csv", "--field", "thematics=tags", "--field", "keywords=topics", "--profile", "speech")),
)


# ---------------------------------------------------------------- measuring a command


def overton_command() -> list[str]:
    script = Path(sys.executable).with_name("overton")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "overton"]


# ---------------------------------------------------------------- inputs


def corpus_files(corpus: Corpus) -> list[Path]:
    return sorted((DATA / corpus.folder).glob(corpus.pattern))


def missing_corpora() -> str | None:
    """The line a benchmark of CORPORA prints before exiting 0 when the real data is not here, or None."""
    if not DATA.is_dir():
        return f"skipped: ../shared/data not found ({DATA})"
    missing = [c.folder for c in CORPORA if not corpus_files(c)]
    return f"skipped: ../shared/data has no {', '.join(missing)} ({DATA})" if missing else None


def prepare_inputs(tmp: Path, repeat: int) -> dict[str, list[Path]]:
    """``repeat`` byte-identical copies of every input file, under new names."""
    inputs = {}
    for corpus in CORPORA:
        folder = tmp / "inputs" / corpus.source
        folder.mkdir(parents=True)
        copies = []
        for k in range(repeat):
            for path in corpus_files(corpus):
                target = folder / f"r{k:03d}-{path.name}"
                shutil.copyfile(path, target)
                copies.append(target)
        inputs[corpus.source] = copies
    return inputs


# ---------------------------------------------------------------- the pandas baseline (runs in its own process)


def baseline_pandas(inputs_dir: Path, out: Path) -> None:
    """What a user would write instead: pandas in one process, regex cleaning, drop_duplicates, to_parquet."""
    import html
    import unicodedata

    import pandas as pd

    frames = []
    for corpus in CORPORA:
        paths = sorted((inputs_dir / corpus.source).iterdir())
        if corpus.kind == "text":
            rows = [{"id": f"{corpus.source}:{p.stem}", "text": p.read_text(encoding="utf-8")} for p in paths]
            frame = pd.DataFrame(rows, columns=["id", "text"])
        else:
            parts = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths]
            frame = pd.concat(parts, ignore_index=True)
            frame = frame[frame["title"] != "title"]  # the file repeats its header row
            frame = frame.rename(columns={"tags": "thematics", "topics": "keywords", "date": "published_at"})
            frame["id"] = corpus.source + ":" + frame.index.astype(str)
        frame["source"] = corpus.source
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    rows_in = len(df)

    text = df["text"]
    text = text.str.replace(r"(?i)<br\s*/?>|</(?:p|div|li|h[1-6]|blockquote|tr)>", "\n", regex=True)
    text = text.str.replace(r"<[^>]+>", "", regex=True)
    text = text.map(html.unescape)
    text = text.map(lambda s: unicodedata.normalize("NFC", s))
    text = text.str.replace(r"[ \t\r\f\v]+", " ", regex=True)
    text = text.str.replace(r" ?\n ?", "\n", regex=True)
    text = text.str.replace(r"\n{3,}", "\n\n", regex=True)
    df["text"] = text.str.strip()

    df = df[df["text"] != ""]
    df = df.drop_duplicates(subset="text")
    df.to_parquet(out, compression="zstd", index=False)
    print(json.dumps({"input": rows_in, "kept": len(df), "rejected": rows_in - len(df),
                      "pandas": pd.__version__}))


# ---------------------------------------------------------------- the benchmark


@dataclass
class Row:
    tool: str
    stage: str
    jobs: int
    mb: float
    seconds: float
    peak_rss: int
    cpu_seconds: float = 0.0
    docs: int | None = None
    kept: int | None = None
    rejected: int | None = None
    processes: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_s(self) -> float:
        return self.mb / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool, "stage": self.stage, "jobs": self.jobs, "input_mb": round(self.mb, 2),
            "documents": self.docs, "kept": self.kept, "rejected": self.rejected,
            "seconds": round(self.seconds, 3), "mb_per_s": round(self.mb_s, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "mb_per_cpu_s": round(self.mb / self.cpu_seconds, 3) if self.cpu_seconds else 0.0,
            "mb_per_s_per_core": round(self.mb_s / self.jobs, 3), "peak_rss_mb": round(self.peak_rss / MB, 1),
            "max_processes": self.processes, **self.extra,
        }


_IMPORTED = re.compile(r"imported (\d+) documents from (\d+) files .*; refused (\d+)")


def run_overton(tmp: Path, inputs: dict[str, list[Path]], mb: float, jobs: list[int],
                warnings: list[str]) -> list[Row]:
    overton = overton_command()
    template = tmp / "ws-ingested"
    rows = []
    init = measure([*overton, "init", str(template)], sample_s=SAMPLE_S).check()
    rows.append(Row("overton", "init", 1, 0.0, init.seconds, init.peak_rss, init.cpu_seconds))

    imported = refused = 0
    ingest_s = ingest_cpu = ingest_peak = 0.0
    per_source = {}
    for corpus in CORPORA:
        argv = [*overton, "ingest", "-w", str(template), "--source", corpus.source, *corpus.options,
                *map(str, inputs[corpus.source])]
        # exit 1 = some records refused (the CSV's repeated headers)
        result = measure(argv, sample_s=SAMPLE_S).check(allowed=(0, 1))
        match = _IMPORTED.search(result.stdout)
        if match is None:
            sys.exit(f"cannot read the ingest summary from: {result.stdout!r}")
        n_imported, n_refused = int(match.group(1)), int(match.group(3))
        imported += n_imported
        refused += n_refused
        ingest_s += result.seconds
        ingest_cpu += result.cpu_seconds
        ingest_peak = max(ingest_peak, result.peak_rss)
        source_mb = sum(p.stat().st_size for p in inputs[corpus.source]) / MB
        per_source[corpus.source] = {"input_mb": round(source_mb, 2), "imported": n_imported, "refused": n_refused,
                                     "seconds": round(result.seconds, 3),
                                     "peak_rss_mb": round(result.peak_rss / MB, 1)}
        print(f"  ingest {corpus.source}: {n_imported} documents, {n_refused} refused, {result.seconds:.2f} s",
              file=sys.stderr)
    rows.append(Row("overton", "ingest", 1, mb, ingest_s, int(ingest_peak), ingest_cpu, docs=imported,
                    rejected=refused, extra={"per_source": per_source}))

    for j in jobs:
        workspace = tmp / f"ws-j{j}"
        shutil.copytree(template, workspace)
        build = measure([*overton, "build", "-w", str(workspace), "--jobs", str(j), "--quiet"],
                        sample_s=SAMPLE_S).check()
        manifest = json.loads((workspace / "datasets" / "overton" / "v0001" / "manifest.json").read_text())
        counts = manifest["counts"]
        print(f"  build --jobs {j}: {build.seconds:.2f} s, {counts['kept']} kept, {counts['rejected']} rejected",
              file=sys.stderr)
        if counts["input"] != imported:
            warnings.append(f"build --jobs {j}: the manifest counts {counts['input']} input documents but ingest "
                            f"imported {imported}")
        if counts["kept"] + counts["rejected"] != counts["input"]:
            warnings.append(f"build --jobs {j}: kept + rejected != input in the manifest")
        extra = {"reasons": counts["reasons"],
                 "input_by_source": {s: c["input"] for s, c in counts["sources"].items()},
                 "output_mb": round(sum(f["bytes"] for f in manifest["files"]) / MB, 2)}
        rows.append(Row("overton", "build", j, mb, build.seconds, build.peak_rss, build.cpu_seconds,
                        docs=counts["input"], kept=counts["kept"], rejected=counts["rejected"],
                        processes=build.processes, extra=extra))
        total_s = init.seconds + ingest_s + build.seconds
        rows.append(Row("overton", "total (init+ingest+build)", j, mb, total_s,
                        int(max(init.peak_rss, ingest_peak, build.peak_rss)),
                        init.cpu_seconds + ingest_cpu + build.cpu_seconds, docs=imported,
                        kept=counts["kept"], rejected=counts["rejected"] + refused, processes=build.processes))
    return rows


def run_baseline(tmp: Path, mb: float, warnings: list[str]) -> list[Row]:
    if importlib.util.find_spec("pandas") is None:
        print("pandas baseline skipped: pandas is not installed (it is not an overton dependency)", file=sys.stderr)
        warnings.append("pandas baseline skipped: pandas not installed")
        return []
    result = measure([sys.executable, str(Path(__file__).resolve()), "--baseline-pandas", str(tmp / "inputs"),
                      str(tmp / "baseline.parquet")], sample_s=SAMPLE_S).check()
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"  pandas baseline: {result.seconds:.2f} s, {counts['kept']} kept", file=sys.stderr)
    return [Row("pandas", "read+clean+dedup+write", 1, mb, result.seconds, result.peak_rss, result.cpu_seconds,
                docs=counts["input"],
                kept=counts["kept"], rejected=counts["rejected"],
                extra={"pandas": counts["pandas"],
                       "output_mb": round((tmp / "baseline.parquet").stat().st_size / MB, 2)})]


def ratios(rows: list[Row]) -> list[dict[str, Any]]:
    """overton total / pandas baseline, per jobs: throughput (>1 = overton faster) and peak memory."""
    baseline = next((r for r in rows if r.tool == "pandas"), None)
    if baseline is None:
        return []
    return [{"jobs": r.jobs, "throughput_ratio": round(r.mb_s / baseline.mb_s, 3),
             "peak_rss_ratio": round(r.peak_rss / baseline.peak_rss, 3)}
            for r in rows if r.tool == "overton" and r.stage.startswith("total")]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def markdown(rows: list[Row], ratio_rows: list[dict[str, Any]]) -> str:
    lines = ["| tool | stage | jobs | input MB | docs | kept | rejected | seconds | MB/s | MB/s/core | CPU s "
             "| MB/CPU-s | peak RSS MB |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        mb = f"{r.mb:.1f}" if r.mb else ""
        speed = f"{r.mb_s:.2f}" if r.mb else ""
        per_core = f"{r.mb_s / r.jobs:.2f}" if r.mb else ""
        per_cpu = f"{r.mb / r.cpu_seconds:.2f}" if r.mb and r.cpu_seconds else ""
        lines.append(f"| {r.tool} | {r.stage} | {r.jobs} | {mb} | {_cell(r.docs)} | {_cell(r.kept)} | "
                     f"{_cell(r.rejected)} | {r.seconds:.2f} | {speed} | {per_core} | {r.cpu_seconds:.2f} | "
                     f"{per_cpu} | {r.peak_rss / MB:.0f} |")
    if ratio_rows:
        lines += ["", "| overton / pandas | jobs | throughput | peak RSS |", "|---|--:|--:|--:|"]
        lines += [f"| total | {x['jobs']} | {x['throughput_ratio']:.2f}x | {x['peak_rss_ratio']:.2f}x |"
                  for x in ratio_rows]
    return "\n".join(lines)


def parse_jobs(value: str) -> list[int]:
    try:
        jobs = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of integers, got {value!r}") from None
    if not jobs or any(j < 1 for j in jobs):
        raise argparse.ArgumentTypeError("every jobs value must be >= 1")
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, help=f"copies of the inputs (default: enough for ~{TARGET_MB} MB)")
    parser.add_argument("--jobs", type=parse_jobs, default=[1, 2], help="build --jobs values (default 1,2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    parser.add_argument("--baseline-pandas", nargs=2, metavar=("INPUTS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.baseline_pandas:
        baseline_pandas(Path(args.baseline_pandas[0]), Path(args.baseline_pandas[1]))
        return 0
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if skipped := missing_corpora():
        print(skipped)
        return 0

    base_bytes = sum(p.stat().st_size for c in CORPORA for p in corpus_files(c))
    repeat = args.repeat or max(1, round(TARGET_MB * MB / base_bytes))
    tmp = Path(tempfile.mkdtemp(prefix="overton-bench-"))
    warnings: list[str] = []
    try:
        inputs = prepare_inputs(tmp, repeat)
        input_bytes = sum(p.stat().st_size for paths in inputs.values() for p in paths)
        mb = input_bytes / MB
        print(f"inputs: {mb:.1f} MB ({repeat} x {base_bytes / MB:.1f} MB, "
              f"{sum(map(len, inputs.values()))} files) in {tmp}", file=sys.stderr)
        rows = run_overton(tmp, inputs, mb, args.jobs, warnings)
        rows += run_baseline(tmp, mb, warnings)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ratio_rows = ratios(rows)
    print(markdown(rows, ratio_rows))
    for warning in warnings:
        print(f"WARNING: {warning}")
    results = {
        "rss": "sum over the process tree, sampled every 50 ms" if psutil else "command's own peak only",
        "repeat": repeat,
        "input_mb": round(mb, 2),
        "inputs": {c.source: {"files": len(inputs[c.source]),
                              "mb": round(sum(p.stat().st_size for p in corpus_files(c)) * repeat / MB, 2)}
                   for c in CORPORA},
        "rows": [r.as_dict() for r in rows],
        "ratios": ratio_rows,
        "warnings": warnings,
    }
    save_results("ingest_build", argv, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
