"""Benchmark: overton's French language filter against langdetect and lingua used alone, on real text.

What a user would otherwise write is one call to a language detector per document: seeded langdetect
(``DetectorFactory.seed = 0``; langdetect reads only the first 10,000 characters unless told otherwise) or
lingua (``lingua-language-detector``, all 75 languages, high-accuracy mode). overton's
:class:`~overton.pipelines.language.LanguageFilter` puts a lexical test of French function words in front of
the detector, asks the detector only about the doubtful windows, overrules its "French" when the text has
no French function words, and judges long documents on 5 windows of 1,000 characters.

Three data sets from ``../shared/data`` (skipped with a message when absent):

* **paragraphs**: ``langid/sentences/<code>.txt``, 3 consecutive sentences of one language per paragraph,
  75 languages (12,423 paragraphs, 166 French). French is positive, the 74 others negative.
* **sentences**: the 2,999 aligned lines of ``europarl-fr-en`` (Europarl v7, one sentence per line) in
  French and in English, each line a document: short texts, like forum answers. French is positive.
* **long documents**: the 25 Assemblée nationale sittings of ``assemblee-2013/txt`` (148-466 KB, French,
  normalised as the build does), the same 25 with 10 English paragraphs each injected at random paragraph
  boundaries (3 Europarl English sentences each: still French documents, and paragraph mode should remove
  exactly the injected paragraphs), and 74 foreign documents, one per other language of ``langid`` (its 500
  sentences, 3 per paragraph, 40-150 KB). French documents are positive.

Each method judges each text (French when its French probability or score is >= 0.5). Precision and recall
are of the French class. MB/s per core is UTF-8 MB over the *CPU* seconds of this process
(``time.process_time``: every method is single-threaded, and CPU time does not count the other programs
sharing the machine); models are loaded before timing. overton runs as the build runs it:
``signals`` then ``decide`` on Arrow record batches. For the mixed documents, *English removed* is the part of
the injected English characters paragraph mode removed and *French lost* the French characters it removed.

Run: ``.venv/bin/python bench/language.py [--skip-lingua] [--only paragraphs|sentences|documents]``. Prints markdown
tables and writes ``bench/results/language.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from overton.corpus.schema import DOCUMENT_SCHEMA, text_sha256  # noqa: E402
from overton.corpus.text import clean_whitespace  # noqa: E402
from overton.pipelines.language import (  # noqa: E402
    LangdetectDetector,
    LanguageFilter,
    get_detector,
    windows,
)
from overton.pipelines.step import to_work_batch, work_schema  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = REPO / "bench" / "results" / "language.json"
MB = 1_000_000
INJECTED_PER_DOCUMENT = 10


@dataclass
class Item:
    label: str  # ISO 639-1 code of the text's language ("fr" for the mixed documents too)
    text: str
    kind: str = "paragraph"  # paragraph | french | mixed | foreign
    expected: str | None = None  # mixed documents: the text without the injected paragraphs


@dataclass
class Row:
    data: str
    method: str
    texts: int
    mb: float
    cpu_s: float
    precision: float
    recall: float
    false_positives: dict[str, int] = field(default_factory=dict)
    missed: int = 0
    english_removed: float | None = None
    french_lost: float | None = None

    @property
    def mb_per_s(self) -> float:
        return self.mb / self.cpu_s if self.cpu_s else float("inf")


# ---------------------------------------------------------------- data


def langid_paragraphs() -> list[Item]:
    items = []
    for path in sorted((DATA / "langid" / "sentences").glob("*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        items += [Item(path.stem, " ".join(lines[i:i + 3])) for i in range(0, len(lines) - 2, 3)]
    return items


def europarl_lines() -> list[Item]:
    folder = DATA / "europarl-fr-en"
    items = []
    for label in ("fr", "en"):
        lines = (folder / f"europarl-v7.fr-en.{label}").read_text(encoding="utf-8").splitlines()
        items += [Item(label, line) for line in lines if line.strip()]
    return items


def long_documents() -> list[Item]:
    speeches = clean_whitespace([p.read_text(encoding="utf-8")
                                 for p in sorted((DATA / "assemblee-2013" / "txt").glob("*.txt"))])
    english = (DATA / "europarl-fr-en" / "europarl-v7.fr-en.en").read_text(encoding="utf-8").splitlines()
    quotes = [" ".join(english[i:i + 3]) for i in range(0, len(english) - 2, 3)]
    quotes = [q for q in quotes if len(q) >= 200]
    rng = random.Random(0)
    items = [Item("fr", speech, "french") for speech in speeches]
    for n, speech in enumerate(speeches):
        paragraphs = speech.split("\n\n")
        for j, position in enumerate(sorted(rng.sample(range(1, len(paragraphs)), INJECTED_PER_DOCUMENT),
                                            reverse=True)):
            paragraphs.insert(position, quotes[(n * INJECTED_PER_DOCUMENT + j) % len(quotes)])
        items.append(Item("fr", "\n\n".join(paragraphs), "mixed", expected=speech))
    for path in sorted((DATA / "langid" / "sentences").glob("*.txt")):
        if path.stem == "fr":
            continue
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        text = "\n\n".join(" ".join(lines[i:i + 3]) for i in range(0, len(lines), 3))
        items.append(Item(path.stem, text, "foreign"))
    return items


# ---------------------------------------------------------------- methods


def detector_alone(name: str, mode: str) -> Callable[[list[Item]], list[tuple[bool, str | None]]]:
    """One detector call per text: whole text, langdetect's default first 10,000 chars, or 5 windows."""

    def run(items: list[Item]) -> list[tuple[bool, str | None]]:
        detector = get_detector(name)
        out = []
        for item in items:
            if mode == "windows":
                pieces = windows(item.text, 5, 1000)
                total = sum(map(len, pieces)) or 1
                french = sum(len(p) * detector.detect(p).french for p in pieces) / total
            elif mode == "first10k":
                french = detector.detect(item.text[:10_000]).french
            else:
                french = detector.detect(item.text).french
            out.append((french >= 0.5, None))
        return out

    return run


def overton(**params) -> Callable[[list[Item]], list[tuple[bool, str | None]]]:
    """The step as the build runs it: signals then decide on record batches of 1,000 documents."""

    def run(items: list[Item]) -> list[tuple[bool, str | None]]:
        step = LanguageFilter(**params)
        out = []
        for start in range(0, len(items), 1000):
            texts = [item.text for item in items[start:start + 1000]]
            rows = [{"id": f"bench:{i}", "source": "bench", "text": t, "content_sha256": text_sha256(t)}
                    for i, t in enumerate(texts)]
            batch = to_work_batch(pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA), work_schema([step]))
            batch = step.signals(batch)
            kept_texts = batch.column("text").to_pylist()
            out += [(rejection is None, kept) for rejection, kept in zip(step.decide(batch), kept_texts, strict=True)]
        run.stats = dict(step.stats)
        return out

    return run


def measure(data: str, method: str, run: Callable, items: list[Item], repeat: int = 1) -> Row:
    """Judge ``items`` with ``run``; CPU seconds are the best of ``repeat`` runs (small sets are noisy)."""
    mb = sum(len(item.text.encode("utf-8")) for item in items) / MB
    cpu = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        results = run(items)
        cpu = min(cpu, time.process_time() - start)
    positives = [item.label == "fr" for item in items]
    kept = [k for k, _ in results]
    tp = sum(k and p for k, p in zip(kept, positives, strict=True))
    fp = Counter(item.label for item, k in zip(items, kept, strict=True) if k and item.label != "fr")
    row = Row(data, method, len(items), round(mb, 3), round(cpu, 3),
              precision=tp / max(1, tp + sum(fp.values())), recall=tp / max(1, sum(positives)),
              false_positives=dict(fp), missed=sum(positives) - tp)
    mixed = [(item, text) for item, (_, text) in zip(items, results, strict=True) if item.kind == "mixed"]
    if mixed and mixed[0][1] is not None:
        injected = sum(len(item.text) - len(item.expected) for item, _ in mixed)
        removed = lost = 0
        for item, text in mixed:
            kept_paragraphs = Counter(text.split("\n\n"))
            original = Counter(item.expected.split("\n\n"))
            lost += sum(len(p) * n for p, n in (original - kept_paragraphs).items())
            removed += len(item.text) - len(text)
        french_chars = sum(len(item.expected) for item, _ in mixed)
        row.english_removed = (removed - lost) / injected
        row.french_lost = lost / french_chars
    return row


# ---------------------------------------------------------------- report


def table(rows: list[Row]) -> str:
    lines = ["| data | method | texts | MB | CPU s | MB/s per core | French precision | French recall "
             "| kept non-French | English removed | French lost |",
             "|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|"]
    for r in rows:
        fps = ", ".join(f"{k} {v}" for k, v in sorted(r.false_positives.items(), key=lambda kv: -kv[1])) or "-"
        extra = ("-", "-") if r.english_removed is None else (f"{r.english_removed:.1%}", f"{r.french_lost:.3%}")
        lines.append(f"| {r.data} | {r.method} | {r.texts} | {r.mb:.2f} | {r.cpu_s:.2f} | {r.mb_per_s:.2f} "
                     f"| {r.precision:.4f} | {r.recall:.4f} | {fps} | {extra[0]} | {extra[1]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-lingua", action="store_true", help="leave lingua out even when installed")
    parser.add_argument("--only", choices=("paragraphs", "sentences", "documents"), help="run one data set only")
    args = parser.parse_args()
    if not DATA.exists():
        print("skipped: ../shared/data not found")
        return 0
    lingua = not args.skip_lingua
    if lingua:
        try:
            get_detector("lingua").detect("Chargement des modèles de toutes les langues.")  # 10 s, 1 GB
        except ValueError as error:
            print(f"lingua left out: {error}")
            lingua = False
    LangdetectDetector().detect("Chargement des profils.")  # profiles loaded before timing

    rows: list[Row] = []
    if args.only in (None, "paragraphs"):
        items = langid_paragraphs()
        methods = [("langdetect alone", detector_alone("langdetect", "whole"))]
        if lingua:
            methods.append(("lingua alone", detector_alone("lingua", "whole")))
        methods += [
            ("overton: lexical test + langdetect, no second opinion", overton(veto_score=0.0)),
            ("overton: lexical test + langdetect + second opinion (default)", overton()),
        ]
        if lingua:
            methods.append(("overton with lingua backend", overton(backend="lingua")))
        for name, run in methods:
            rows.append(measure("3-sentence paragraphs, 75 languages", name, run, items))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        french = [item for item in items if item.label == "fr"]
        rows.append(measure("French 3-sentence paragraphs only (166)", "overton default", overton(), french, repeat=5))
        print(table(rows[-1:]).splitlines()[-1], flush=True)

    if args.only in (None, "sentences"):
        items = europarl_lines()
        methods = [("langdetect alone", detector_alone("langdetect", "whole"))]
        if lingua:
            methods.append(("lingua alone", detector_alone("lingua", "whole")))
        methods.append(("overton default", overton()))
        for name, run in methods:
            rows.append(measure("Europarl lines, 1 sentence each (2,994 FR + 3,000 EN)", name, run, items))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        rows.append(measure("Europarl French lines only (2,994 one-sentence documents)", "overton default",
                            overton(), [item for item in items if item.label == "fr"], repeat=3))
        print(table(rows[-1:]).splitlines()[-1], flush=True)

    if args.only in (None, "documents"):
        items = long_documents()
        french_only = [item for item in items if item.kind == "french"]
        methods = [
            ("langdetect alone, whole text", detector_alone("langdetect", "whole")),
            ("langdetect alone, first 10,000 chars (its default)", detector_alone("langdetect", "first10k")),
            ("langdetect alone, 5 windows x 1,000 chars", detector_alone("langdetect", "windows")),
        ]
        if lingua:
            methods += [
                ("lingua alone, whole text", detector_alone("lingua", "whole")),
                ("lingua alone, 5 windows x 1,000 chars", detector_alone("lingua", "windows")),
            ]
        methods += [
            ("overton, whole text (windows=1, window_chars=10^9), no paragraph mode",
             overton(windows=1, window_chars=10**9, paragraph_mode=False)),
            ("overton, 5 windows, no paragraph mode", overton(paragraph_mode=False)),
            ("overton, 5 windows + paragraph mode (default)", overton()),
        ]
        for name, run in methods:
            rows.append(measure("long documents (25 FR, 25 FR+EN, 74 foreign)", name, run, items))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        run = overton()
        rows.append(measure("French speeches only (25 long documents)", "overton default", run, french_only,
                            repeat=3))
        print(f"overton default on French speeches: {run.stats}")

    print()
    print(table(rows))
    print()
    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()},"
          f" {datetime.now().isoformat(timespec='seconds')}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([{**asdict(r), "mb_per_s": r.mb_per_s} for r in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
