"""Benchmark: overton's Wikipedia extractor against trafilatura, and ``overton ingest`` of a large dump.

What a user would otherwise do with saved Wikipedia HTML is hand it to a general article extractor:
``trafilatura.extract(html)`` with its defaults (it keeps tables) and with ``include_tables=False``.

Inputs from ``../shared/data/wikipedia`` (skipped with a message when absent):

* ``parse-html/``: 33 French articles as ``action=parse`` returns them (parser output), and ``html-cleaned/``
  the plain text OpenLLM-France's wikiplaintext made of them: the reference;
* ``enterprise-dump-html/``: 2 pages in the Wikimedia Enterprise dump's Parsoid HTML, with their references
  in ``enterprise-dump-html-cleaned/``.

Quality: word F1 (:func:`overton.spiders.wikipedia_html.word_f1`: casefolded NFKC runs of letters and digits,
counted as a bag of words) of each tool's text against the reference without its heading lines (``#``...,
which the reference repeats before every section). The reference keeps tables (``wikitable`` ones) and gallery
captions; overton is measured with its default (tables dropped) and with ``tables=True``.

Speed: MB (10^6 bytes) of HTML per CPU-second of this process (``time.process_time``, the HTML already in
memory as ``str``), the best of ``--rounds`` passes over the 35 pages.

Dump: synthetic Enterprise dumps of 5 MB and of ``--dump-mb`` MB of NDJSON (the two real Parsoid pages repeated
under new page ids and names, one article per line) packed as ``.tar.gz``, then ``overton init`` and ``overton
ingest`` of each as subprocesses (:func:`common.measure`): wall and CPU time, peak RSS, articles imported. Peak
RSS that does not grow from the small dump to the large one is memory that follows the article, not the dump.

Run: ``.venv/bin/python bench/wikipedia.py [--rounds N] [--dump-mb MB] [--keep]``. Prints markdown tables and
writes ``bench/results/wikipedia.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import REPO, measure, save_results

sys.path.insert(0, str(REPO))

from overton.spiders.wikipedia_html import extract, word_f1  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "wikipedia"
SETS = (("parse", "parse-html", "html-cleaned"), ("enterprise", "enterprise-dump-html",
                                                   "enterprise-dump-html-cleaned"))
MB = 1_000_000
OVERTON = Path(sys.executable).with_name("overton")


def pages() -> list[tuple[str, str, str, str]]:
    """(set, "set/name", html, reference without its headings) of every page with a reference (Espéranto is in
    both sets, two revisions)."""
    found = []
    for kind, html_folder, reference_folder in SETS:
        for path in sorted((DATA / html_folder).glob("*.html")):
            reference = (DATA / reference_folder / f"{path.stem}.txt").read_text(encoding="utf-8")
            found.append((kind, f"{kind}/{path.stem}", path.read_text(encoding="utf-8"),
                          "\n".join(line for line in reference.splitlines() if not line.startswith("#"))))
    return found


def tools() -> dict[str, Callable[[str], str]]:
    import trafilatura

    return {
        "overton": lambda html: extract(html).text,
        "overton tables=True": lambda html: extract(html, tables=True).text,
        "trafilatura": lambda html: trafilatura.extract(html) or "",
        "trafilatura include_tables=False": lambda html: trafilatura.extract(html, include_tables=False) or "",
    }


def quality_and_speed(found: list[tuple[str, str, str, str]], rounds: int) -> dict[str, dict]:
    size = sum(len(html.encode("utf-8")) for _, _, html, _ in found)
    results = {}
    for name, tool in tools().items():
        scores = {page: word_f1(tool(html), reference) for _, page, html, reference in found}
        best = float("inf")
        for _ in range(rounds):
            started = time.process_time()
            for _, _, html, _ in found:
                tool(html)
            best = min(best, time.process_time() - started)
        by_set = {kind: [scores[page] for k, page, _, _ in found if k == kind] for kind, _, _ in SETS}
        results[name] = {"scores": scores, "mean_parse": sum(by_set["parse"]) / len(by_set["parse"]),
                         "min_parse": min(by_set["parse"]),
                         "mean_enterprise": sum(by_set["enterprise"]) / len(by_set["enterprise"]),
                         "cpu_seconds": best, "mb_per_cpu_second": size / MB / best}
    return results


def enterprise_line(html: str, name: str, pageid: int) -> bytes:
    """One article in the Enterprise article model (the fields overton reads, and a few others)."""
    url = f"https://fr.wikipedia.org/wiki/{name.replace(' ', '_')}"
    record = {"name": name, "identifier": pageid, "date_modified": "2023-11-23T09:01:02Z",
              "version": {"identifier": pageid * 10}, "url": url, "namespace": {"identifier": 0},
              "in_language": {"identifier": "fr"}, "is_part_of": {"identifier": "frwiki"},
              "categories": [{"name": "Catégorie:Test", "url": "https://fr.wikipedia.org/wiki/Catégorie:Test"}],
              "article_body": {"html": html, "wikitext": ""}, "license": [{"identifier": "CC-BY-SA-4.0"}]}
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def dump_ingest(found: list[tuple[str, str, str, str]], dump_mb: int, tmp: Path) -> dict:
    tmp.mkdir()
    sources = [html for kind, _, html, _ in found if kind == "enterprise"]
    lines = tmp / "frwiki_namespace_0_0.ndjson"
    size = articles = 0
    with open(lines, "wb") as handle:
        while size < dump_mb * MB:
            line = enterprise_line(sources[articles % len(sources)], f"Article {articles}", 10_000_000 + articles)
            handle.write(line)
            size += len(line)
            articles += 1
    dump = tmp / "frwiki-NS0-ENTERPRISE-HTML.json.tar.gz"
    with tarfile.open(dump, "w:gz") as archive:
        archive.add(lines, arcname=lines.name)
    lines.unlink()
    measure([str(OVERTON), "init", str(tmp / "ws")]).check()
    run = measure([str(OVERTON), "ingest", str(dump), "--source", "wikipedia", "-w", str(tmp / "ws")]).check()
    return {"ndjson_mb": size / MB, "tar_gz_mb": dump.stat().st_size / MB, "articles": articles,
            "stdout": run.stdout.strip(), "seconds": run.seconds, "cpu_seconds": run.cpu_seconds,
            "peak_rss_mib": run.peak_rss / 2**20, "mb_per_cpu_second": size / MB / run.cpu_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per tool, the best is kept")
    parser.add_argument("--dump-mb", type=int, default=200, help="size of the synthetic dump's NDJSON (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder of the dump ingest")
    args = parser.parse_args()
    if not all((DATA / folder).is_dir() for _, *folders in SETS for folder in folders):
        print(f"skipped: ../shared/data not found or incomplete ({DATA})")
        return
    started = time.perf_counter()
    found = pages()
    results = quality_and_speed(found, args.rounds)
    print("| tool | mean F1, 33 parse-html | lowest | mean F1, 2 Enterprise | MB of HTML per CPU-second |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['mean_parse']:.3f} | {row['min_parse']:.3f} | {row['mean_enterprise']:.3f} "
              f"| {row['mb_per_cpu_second']:.1f} |")
    print("\n| page | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    for _, page, _, _ in found:
        print(f"| {page} | " + " | ".join(f"{row['scores'][page]:.3f}" for row in results.values()) + " |")

    dump = None
    if args.dump_mb:
        tmp = Path(tempfile.mkdtemp(prefix="overton-bench-wikipedia-"))
        try:
            dump = [dump_ingest(found, size, tmp / f"{size}mb") for size in (5, args.dump_mb)]
        finally:
            if args.keep:
                print(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        for run in dump:
            print(f"\ndump: {run['ndjson_mb']:.0f} MB of NDJSON ({run['tar_gz_mb']:.1f} MB .tar.gz, "
                  f"{run['articles']} articles): {run['stdout']}\n  {run['seconds']:.1f} s, "
                  f"{run['cpu_seconds']:.1f} CPU-s ({run['mb_per_cpu_second']:.1f} MB/CPU-s), "
                  f"peak RSS {run['peak_rss_mib']:.0f} MiB")
    save_results("wikipedia", None, {"seconds": time.perf_counter() - started, "pages": len(found),
                                     "html_mb": sum(len(h.encode("utf-8")) for _, _, h, _ in found) / MB,
                                     "tools": results, "dump": dump})


if __name__ == "__main__":
    main()
