"""Benchmark: near-dedup recall and precision by true Jaccard, and the throughput of every cleaning step.

The documents are real text from ``../shared/data`` (skipped with a message when absent), cut into
documents of about 2-20 KB at paragraph (line) boundaries:

* ``assemblee-2013/txt/*.txt``: the 25 sitting reports (source ``assemblee``);
* ``assemblee-sentences-2016-2017/*.txt``: each sitting file's sentences joined, one per line (``assemblee``);
* ``viepublique/statements-2020.csv``: speech bodies through ``html_to_text`` then ``clean_whitespace``,
  the trailing "Source :" line split off as the build does (``vie-publique``).

Exact duplicates are removed first (overton's exact dedup runs before near-dedup). Then near-duplicates of
known Jaccard are injected: for ``--pairs`` random documents, one variant each, made by word substitutions,
insertions, deletions, a truncation, or a mix of the first three, aimed at a Jaccard drawn in one of the
bands [0.5,0.6) ... [0.9,1.0] and calibrated in four rounds. Each variant's TRUE Jaccard with its original is
computed on the shingles overton uses (``MinHasher.shingles``: word 5-grams of the folded text), and pairs are
binned by it. One variant per original, so a cluster can only join a pair through real text.

Measured in the same run on the same documents, each tool in its own subprocess on one core (pyarrow's
thread pool set to 1): wall and CPU time of its work only, the corpus already in memory as Python strings;
peak RSS of the subprocess (its own ``VmHWM``, and its process tree sampled with psutil every 20 ms), and
"work" memory = peak minus the RSS once the corpus is loaded and the tool imported:

1. overton: the build's near-dedup step with the default settings: signatures (20 bands x 5 rows, 5-grams) in
   ~8 MB batches, then ``NearDedup.index`` (candidates verified by the true Jaccard of their texts' shingle
   sets, >= 0.8); an injected pair is found when both documents end in one cluster. The same at
   ``threshold = 0.7`` (``overton-0.7``), in ``mode = "fineweb"`` (14 x 8, unverified: ``overton-fineweb``), and
   on half of the corpus (``overton-half``, half of the injected pairs): its memory and the whole corpus's give
   the memory per document, extrapolated to the seed's 2 GB corpus and to 1 TB of text.
2. datasketch the usual way: ``MinHash(num_perm=128)``, ``m.update(shingle.encode())`` per 5-gram string,
   ``MinHashLSH(threshold=0.8, num_perm=128)``, ``insert`` then ``query`` per document, clusters by union-find
   over the query results (candidates are not verified: that is how it is used).
3. datasketch done well: ``MinHash.bulk`` (``update_batch``) with xxhash (sha1 without it), 112 permutations,
   ``MinHashLSH(num_perm=112, params=(14, 8))`` through an insertion session; reported with the raw candidates
   and with candidates verified by the estimated Jaccard >= 0.8, as overton does.
4. datatrove's MinHash dedup (signature, buckets, cluster stages with ``LocalPipelineExecutor``, one worker),
   its default 14 x 8 x 5-grams, fed the same folded words through a custom word tokenizer.
   text-dedup is not run: it pins ``urllib3<=2.0`` and pulls pyspark, onnxruntime and Sphinx.

Clustered pairs that are not injected pairs are checked against their true Jaccard: >= 0.7 between two real
documents is a genuine near-duplicate of the real text, >= 0.7 involving a variant is "derived" (a variant of a
document that has a genuine near-duplicate), anything below 0.7 is a false positive. Every clustered pair
(injected or not, joined directly or through a chain) below the tool's threshold minus 0.05 is counted.

5. Per-step throughput of ``document_steps(parameters(Config()))`` (whatever steps the build has), then the
   MinHash signatures and the near-dedup index, on the same documents in ~8 MB batches; and
   ``overton init`` + ``overton ingest --format jsonl`` + ``overton build --jobs 1`` end to end as subprocesses.

Run: ``python bench/cleaning.py [--pairs N] [--usual-fraction F] [--keep]``. Prints markdown tables and
writes ``bench/results/cleaning.json``. MB are 10^6 bytes of UTF-8 document text.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from common import measure, psutil, save_results
from ingest_build import DATA, MB, overton_command

BANDS = ((0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0))
EDITS = ("substitution", "insertion", "deletion", "truncation", "mixed")
GENUINE = 0.7  # a clustered pair at or above this true Jaccard is a real near-duplicate, not a false positive
MIN_DOC, MAX_DOC = 2_000, 20_000  # bytes; document sizes drawn log-uniformly between them
MIN_WORDS = 300  # originals of injected pairs have at least this many words
BATCH_BYTES = 8 * MB  # like the ingest's row groups
SEED = 20261126
TARGET_MB_S = 5.0  # the build, raw documents to a version with every step on, per core
#: overton's rows: [near_dedup] settings of each (the defaults but for these), and the share of the corpus it gets
OVERTON = {"overton": ({}, 1.0), "overton-0.7": ({"threshold": 0.7}, 1.0),
           "overton-fineweb": ({"mode": "fineweb"}, 1.0), "overton-half": ({}, 0.5)}
TOOLS = (*OVERTON, "datasketch-usual", "datasketch-bulk", "datatrove")
TOOL_MODULES = {
    # scipy's sparse graphs: imported by the clusters step when it runs, not with the module
    **{tool: ("overton.pipelines.dedup_near", "scipy.sparse.csgraph") for tool in OVERTON},
    "datasketch-usual": ("datasketch",),
    "datasketch-bulk": ("datasketch", "xxhash"),
    "datatrove": ("datatrove.executor", "datatrove.pipeline.dedup.minhash", "loguru"),
    "steps": ("overton.pipelines.build", "scipy.sparse.csgraph"),
}
csv.field_size_limit(1 << 30)


def band_name(jaccard: float) -> str:
    for lo, hi in BANDS:
        if lo <= jaccard < hi or (hi == 1.0 and jaccard == 1.0):
            return f"[{lo:.1f},{hi:.1f}{']' if hi == 1.0 else ')'}"
    return "<0.5"


BAND_NAMES = [band_name(lo) for lo, _ in BANDS]


# ---------------------------------------------------------------- measuring a command


def own_peak_rss() -> int:
    """This process's exact peak RSS in bytes (Linux VmHWM; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


# ---------------------------------------------------------------- the documents


@dataclass
class Doc:
    id: str
    source: str
    text: str


def split_paragraphs(text: str, rng) -> list[str]:
    """Cut a long text at line boundaries into pieces of log-uniform size between MIN_DOC and MAX_DOC bytes."""
    if len(text.encode("utf-8")) <= MAX_DOC:
        return [text]

    def draw() -> float:
        return math.exp(rng.uniform(math.log(MIN_DOC), math.log(MAX_DOC)))

    pieces, current, size, target = [], [], 0, draw()
    for line in text.splitlines(keepends=True):
        current.append(line)
        size += len(line.encode("utf-8"))
        if size >= target:
            pieces.append("".join(current).strip())
            current, size, target = [], 0, draw()
    rest = "".join(current).strip()
    if rest:
        if pieces and size < MIN_DOC:
            pieces[-1] += "\n\n" + rest
        else:
            pieces.append(rest)
    return [p for p in pieces if p]


#: The source profile of each source of the real documents.
PROFILES = {"assemblee": "debate", "vie-publique": "speech"}


def read_documents(rng) -> tuple[list[Doc], dict[str, Any]]:
    """The real documents, cleaned, cut to 2-20 KB, without exact duplicates."""
    from overton.corpus.text import clean_whitespace, html_to_text, split_source_line

    long_texts: list[tuple[str, str, str]] = []  # (id prefix, source, raw text)
    for path in sorted((DATA / "assemblee-2013" / "txt").glob("*.txt")):
        long_texts.append((f"assemblee:2013-{path.stem}", "assemblee", path.read_text(encoding="utf-8")))
    for path in sorted((DATA / "assemblee-sentences-2016-2017").glob("*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        long_texts.append((f"assemblee:{path.stem}", "assemblee", "\n".join(x for x in lines if x)))
    with open(DATA / "viepublique" / "statements-2020.csv", newline="", encoding="utf-8") as handle:
        for row, record in enumerate(csv.DictReader(handle)):
            if record["title"] == "title" or not record["text"].strip():  # the file repeats its header row
                continue
            long_texts.append((f"vie-publique:2020-{row:04d}", "vie-publique", html_to_text(record["text"])))
    cleaned = clean_whitespace([text for _, _, text in long_texts])

    docs, seen, exact = [], set(), 0
    for (prefix, source, _), text in zip(long_texts, cleaned, strict=True):
        if source == "vie-publique":
            text, _ = split_source_line(text)
        for k, piece in enumerate(split_paragraphs(text, rng)):
            if piece in seen:
                exact += 1
                continue
            seen.add(piece)
            docs.append(Doc(f"{prefix}-{k:03d}", source, piece))
    return docs, {"long_texts": len(long_texts), "exact_duplicates_removed": exact}


_TOKENS = re.compile(r"(\s+)")


def make_variant(text: str, kind: str, strength: float, seed: int, vocabulary: list[str]) -> str:
    """A copy of ``text`` with word edits at rate ``strength`` (or truncated to that fraction of its words).

    The random draws depend only on ``seed``, so a larger strength edits a superset of the positions.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = _TOKENS.split(text)
    words, separators = tokens[0::2], tokens[1::2] + [""]
    n = len(words)
    if kind == "truncation":
        keep = min(n - 1, max(1, round(strength * n)))
        return "".join(tokens[: 2 * keep - 1])
    draws = rng.random(n)
    new_words = [vocabulary[i] for i in rng.integers(len(vocabulary), size=n)]
    if kind == "mixed":
        cuts = (strength / 3, 2 * strength / 3, strength)  # substitution, insertion, deletion
    else:
        cuts = {"substitution": (strength, 0, 0), "insertion": (0, strength, 0), "deletion": (0, 0, strength)}[kind]
        cuts = (cuts[0], cuts[0] + cuts[1], cuts[0] + cuts[1] + cuts[2])
    if not (draws < cuts[2]).any():  # at least one edit: a variant is never the original
        draws[int(rng.integers(n))] = cuts[2] / 2
    out = []
    for i in range(n):
        d = draws[i]
        if d < cuts[0]:
            out += [new_words[i], separators[i]]
        elif d < cuts[1]:
            out += [new_words[i], " ", words[i], separators[i]]
        elif d < cuts[2]:
            continue
        else:
            out += [words[i], separators[i]]
    return "".join(out).strip()


def shingle_sets(texts: list[str]) -> list[Any]:
    """The set of 32-bit shingle hashes of each text, sorted: exactly what overton's MinHash sees."""
    import numpy as np

    from overton.pipelines.minhash import MinHasher, MinHashParams

    hasher = MinHasher(MinHashParams())
    sets = []
    start = 0
    while start < len(texts):
        stop, size = start, 0
        while stop < len(texts) and (size < BATCH_BYTES or stop == start):
            size += len(texts[stop])
            stop += 1
        shingle, owner = hasher.shingles(texts[start:stop])
        order = np.lexsort((shingle, owner))
        shingle, owner = shingle[order], owner[order]
        first = np.r_[True, (shingle[1:] != shingle[:-1]) | (owner[1:] != owner[:-1])]
        shingle, owner = shingle[first], owner[first]
        bounds = np.searchsorted(owner, np.arange(stop - start + 1))
        sets += [shingle[bounds[i]:bounds[i + 1]] for i in range(stop - start)]
        start = stop
    return sets


def jaccard(a, b) -> float:
    import numpy as np

    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (len(a) + len(b) - inter)


def inject(docs: list[Doc], n_pairs: int, rng) -> tuple[list[Doc], list[dict[str, Any]]]:
    """One variant for each of ``n_pairs`` random documents; target Jaccards spread over the bands."""
    words_of = [len(d.text.split()) for d in docs]
    eligible = [i for i, n in enumerate(words_of) if n >= MIN_WORDS]
    chosen = sorted(rng.sample(eligible, min(n_pairs, len(eligible))))
    vocabulary = sorted({w for i in rng.sample(range(len(docs)), min(300, len(docs))) for w in docs[i].text.split()})
    pairs = []
    for k, i in enumerate(rng.sample(chosen, len(chosen))):
        lo, hi = BANDS[(k // len(EDITS)) % len(BANDS)]
        target = lo + (hi - lo) * rng.uniform(0.05, 0.95)
        kind = EDITS[k % len(EDITS)]
        survive = 2 * target / (1 + target)  # share of the original's shingles the variant keeps
        strength = target if kind == "truncation" else 1 - survive ** (1 / 5)
        pairs.append({"original": docs[i].id, "index": i, "kind": kind, "target": target, "strength": strength,
                      "seed": rng.randrange(1 << 30)})
    originals = shingle_sets([docs[p["index"]].text for p in pairs])
    for _ in range(4):  # calibrate the strength towards the target Jaccard
        texts = [make_variant(docs[p["index"]].text, p["kind"], p["strength"], p["seed"], vocabulary) for p in pairs]
        for p, text, a, b in zip(pairs, texts, originals, shingle_sets(texts), strict=True):
            p["text"], p["jaccard"] = text, jaccard(a, b)
            if abs(p["jaccard"] - p["target"]) <= 0.01:
                continue
            if p["kind"] == "truncation":
                p["strength"] = min(0.999, max(0.05, p["strength"] + p["target"] - p["jaccard"]))
            else:
                want = math.log(2 * p["target"] / (1 + p["target"]))
                have = math.log(max(1e-9, min(1 - 1e-9, 2 * p["jaccard"] / (1 + p["jaccard"]))))
                p["strength"] = min(0.9, max(1e-4, p["strength"] * want / have))
    variants = []
    for p in pairs:
        original = docs[p.pop("index")]
        p["variant"] = f"{original.id}~v"
        variants.append(Doc(p["variant"], original.source, p.pop("text")))
        p["band"] = band_name(p["jaccard"])
        p["jaccard"] = round(p["jaccard"], 4)
        p["target"] = round(p["target"], 4)
        p["strength"] = round(p["strength"], 5)
        del p["seed"]
    return variants, pairs


# ---------------------------------------------------------------- the tools (each runs in its own subprocess)


def _load(corpus: Path) -> tuple[list[str], list[str], list[str]]:
    """The documents as plain Python lists (JSON lines: no Arrow buffers left in the baseline RSS)."""
    ids, sources, texts = [], [], []
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            ids.append(row["id"])
            sources.append(row["source"])
            texts.append(row["text"])
    return ids, sources, texts


def _batches(texts: list[str]) -> list[tuple[int, int]]:
    spans, start, size = [], 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= BATCH_BYTES:
            spans.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(texts):
        spans.append((start, len(texts)))
    return spans


class Clock:
    """Wall and CPU seconds of named phases."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._start = (0.0, 0.0)

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def stop(self, name: str) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - self._start[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - self._start[1]
        self.start()


_NON_WORD = re.compile(r"[\W_]+")


@functools.cache
def _marks() -> dict[int, None]:
    """str.translate table deleting every combining mark (Unicode category Mn)."""
    return {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Mn"}


def fold(text: str) -> list[str]:
    """overton's folding in plain Python: NFD, lower case, no combining marks, split on non-letters/digits."""
    folded = unicodedata.normalize("NFD", text).lower().translate(_marks())
    return [w for w in _NON_WORD.split(folded) if w]


def ngrams(words: list[str], n: int = 5) -> list[str]:
    if len(words) < n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x):
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def labels(self) -> dict[Any, Any]:
        members = set(self.parent) | set(self.parent.values())
        return {x: self.find(x) for x in members}


def near_settings(tool: str):
    from overton.corpus.config import NearDedupConfig

    return NearDedupConfig(**OVERTON[tool][0])


def tool_overton(ids, sources, texts, clock: Clock, tool: str) -> dict[str, Any]:
    import numpy as np

    from overton.corpus.config import Config
    from overton.pipelines.build import near_dedup_step, parameters
    from overton.pipelines.dedup_near import Candidates, in_memory

    clock.start()
    step = near_dedup_step(parameters(Config(near_dedup=near_settings(tool))))
    params = step.hasher.params
    signatures = np.concatenate([step.hasher.signatures(texts[a:b]) for a, b in _batches(texts)])
    clock.stop("signatures")
    step.index(Candidates(ids, sources, [None] * len(ids), texts=in_memory(texts)), signatures)
    clock.stop("index")
    labels = {doc_id: kept for doc_id, (kept, _, _) in step._decisions.items()}
    assert all(step.is_kept(kept) for kept in labels.values())
    check = f"true Jaccard >= {step.threshold:.2f}" if step.verify else "unverified (fineweb)"
    return {"labels": labels, "stats": dict(step.stats), "params": f"{params.bands}x{params.rows}, 5-grams, {check}"}


def tool_datasketch_usual(ids, sources, texts, clock: Clock) -> dict[str, Any]:
    from datasketch import MinHash, MinHashLSH

    clock.start()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    sketches = []
    for doc_id, text in zip(ids, texts, strict=True):
        m = MinHash(num_perm=128)
        for shingle in ngrams(fold(text)):
            m.update(shingle.encode("utf-8"))
        lsh.insert(doc_id, m)
        sketches.append(m)
    clock.stop("signatures+insert")
    uf = UnionFind()
    for doc_id, m in zip(ids, sketches, strict=True):
        for other in lsh.query(m):
            if other != doc_id:
                uf.union(doc_id, other)
    clock.stop("query")
    return {"labels": uf.labels(), "bands_rows": [lsh.b, lsh.r],
            "params": f"threshold 0.8, 128 perm -> {lsh.b} bands x {lsh.r} rows"}


def tool_datasketch_bulk(ids, sources, texts, clock: Clock) -> dict[str, Any]:
    from datasketch import MinHash, MinHashLSH

    try:
        import xxhash

        hashfunc, hash_name = xxhash.xxh32_intdigest, "xxh32"
    except ImportError:
        from datasketch.hashfunc import sha1_hash32

        hashfunc, hash_name = sha1_hash32, "sha1 (xxhash not installed)"
    clock.start()
    tokens = ([s.encode("utf-8") for s in ngrams(fold(text))] for text in texts)
    sketches = MinHash.bulk(tokens, num_perm=112, hashfunc=hashfunc)
    clock.stop("signatures")
    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    with lsh.insertion_session() as session:
        for doc_id, m in zip(ids, sketches, strict=True):
            session.insert(doc_id, m)
    raw, verified = UnionFind(), UnionFind()
    index = {doc_id: i for i, doc_id in enumerate(ids)}
    verify_s = 0.0
    for doc_id, m in zip(ids, sketches, strict=True):
        for other in lsh.query(m):
            if other != doc_id:
                raw.union(doc_id, other)
                t = time.perf_counter()
                if m.jaccard(sketches[index[other]]) >= 0.8:
                    verified.union(doc_id, other)
                verify_s += time.perf_counter() - t
    clock.stop("insert+query")
    return {"labels": verified.labels(), "labels_unverified": raw.labels(), "verify_seconds": verify_s,
            "params": f"14 bands x 8 rows, {hash_name}"}


def tool_datatrove(ids, sources, texts, clock: Clock, work: Path) -> dict[str, Any]:
    import logging

    import numpy as np
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from datatrove.utils.text import TextNormConfig
    from datatrove.utils.word_tokenizers import WordTokenizer
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logging.getLogger().setLevel(logging.WARNING)

    class Folded(WordTokenizer):
        """The same folded words as overton (datatrove's French tokenizer needs spaCy)."""

        def word_tokenize(self, text: str) -> list[str]:
            return fold(text)

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    off = TextNormConfig(lowercase=False, norm_whitespace=False, remove_punctuation=False,
                         norm_unicode_diacritics=False, norm_numbers=False)
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, norm_config=off)
    documents = [Document(text=text, id=doc_id) for doc_id, text in zip(ids, texts, strict=True)]
    signature = MinhashDedupSignature(str(work / "sigs"), config=config, language=Folded())
    note = None
    try:
        signature._hash_func("a")
    except TypeError:  # datatrove 0.10 hands str to xxhash, which refuses str from version 4.0 on
        str_hash = signature._hash_func
        signature._hash_func = lambda text: str_hash(text.encode("utf-8"))
        note = "xxhash >= 4 refuses str: datatrove's hash given the UTF-8 bytes (what xxhash < 4 hashes)"
    clock.start()
    stages = [
        LocalPipelineExecutor([documents, signature], tasks=1, workers=1, logging_dir=str(work / "logs1")),
        LocalPipelineExecutor([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
                              tasks=config.num_buckets, workers=1, logging_dir=str(work / "logs2")),
        LocalPipelineExecutor([MinhashDedupCluster(str(work / "buckets"), str(work / "clusters"), config=config,
                                                   save_cluster_id=True)],
                              tasks=1, workers=1, logging_dir=str(work / "logs3")),
    ]
    for name, stage in zip(("signatures", "buckets", "cluster"), stages, strict=True):
        stage.run()
        clock.stop(name)
    labels = {}
    path = work / "clusters" / "000000.clusters"
    if path.is_file():
        pairs = np.fromfile(path, dtype="<u4").reshape(-1, 2)
        labels = {ids[int(doc)]: int(cluster) for doc, cluster in pairs}
    return {"labels": labels, "note": note,
            "params": f"{config.num_buckets} buckets x {config.hashes_per_bucket} hashes, {config.hash_config}"}


def run_tool(tool: str, corpus: Path, out: Path) -> None:
    """Entry point of a tool's subprocess: load, run on one core, write labels, print the timings."""
    import pyarrow as pa

    pa.set_cpu_count(1)
    ids, sources, texts = _load(corpus)
    for module in TOOL_MODULES.get(tool, ()):  # imported before the baseline RSS: "work" memory is the tool's own
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    _marks()  # built once per process, before any clock starts
    loaded_rss = psutil.Process().memory_info().rss if psutil else 0
    clock = Clock()
    if tool in OVERTON:
        result = tool_overton(ids, sources, texts, clock, tool)
    elif tool == "datasketch-usual":
        result = tool_datasketch_usual(ids, sources, texts, clock)
    elif tool == "datasketch-bulk":
        result = tool_datasketch_bulk(ids, sources, texts, clock)
    elif tool == "datatrove":
        result = tool_datatrove(ids, sources, texts, clock, out.parent / "datatrove-work")
    elif tool == "steps":
        result = tool_steps(ids, sources, texts, clock)
    else:
        sys.exit(f"unknown tool {tool}")
    out.write_text(json.dumps(result, ensure_ascii=False, default=str))
    print(json.dumps({"wall": clock.wall, "cpu": clock.cpu, "loaded_rss": loaded_rss, "peak_rss": own_peak_rss(),
                      "docs": len(ids),
                      "mb": sum(len(t.encode("utf-8")) for t in texts) / MB}))


def tool_steps(ids, sources, texts, clock: Clock) -> dict[str, Any]:
    """Every per-document build step, then signatures and the near-dedup index, batch by batch."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from overton.corpus.config import BUILTIN_PROFILES, Config
    from overton.corpus.schema import documents_to_batch, text_sha256
    from overton.pipelines.build import document_steps, near_dedup_step, parameters
    from overton.pipelines.dedup_near import Candidates, in_memory
    from overton.pipelines.stages.documents import WORK_SCHEMA
    from overton.pipelines.step import set_column, to_work_batch

    # every source judged by its profile, but with PII on, to measure its cost
    profiles = {name: profile.model_copy(update={"pii": True}) for name, profile in BUILTIN_PROFILES.items()}
    params = parameters(Config(profiles=profiles))
    steps = document_steps(params)
    schema = WORK_SCHEMA
    near = near_dedup_step(params)
    order = [step.name for step in steps] + ["minhash_signatures", "near_dedup_index"]
    bytes_in = Counter()
    docs_in = Counter()
    rejected = Counter()
    live_ids, live_sources, live_texts, signatures = [], [], [], []
    for a, b in _batches(texts):
        rows = [{"id": i, "source": s, "text": t, "content_sha256": text_sha256(t)}
                for i, s, t in zip(ids[a:b], sources[a:b], texts[a:b], strict=True)]
        batch = to_work_batch(documents_to_batch(rows), schema)
        batch = set_column(batch, "profile", pa.array([PROFILES[s] for s in sources[a:b]], pa.string()))
        for step in steps:
            docs_in[step.name] += batch.num_rows
            bytes_in[step.name] += pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0
            clock.start()
            batch = step.apply(batch)
            clock.stop(step.name)
            dead = pc.is_valid(batch.column("reject_reason"))
            rejected[step.name] += pc.sum(dead).as_py() or 0
            batch = batch.filter(pc.invert(dead))
        live = batch.column("text").to_pylist()
        docs_in["minhash_signatures"] += len(live)
        bytes_in["minhash_signatures"] += sum(len(t.encode("utf-8")) for t in live)
        clock.start()
        signatures.append(near.hasher.signatures(live))
        clock.stop("minhash_signatures")
        live_ids += batch.column("id").to_pylist()
        live_sources += batch.column("source").to_pylist()
        live_texts += live
    docs_in["near_dedup_index"] = len(live_ids)
    bytes_in["near_dedup_index"] = bytes_in["minhash_signatures"]
    clock.start()
    near.index(Candidates(live_ids, live_sources, [None] * len(live_ids), texts=in_memory(live_texts)),
               np.concatenate(signatures))
    clock.stop("near_dedup_index")
    rejected["near_dedup_index"] = sum(1 for doc_id in live_ids if not near.is_kept(doc_id))
    return {"order": order, "bytes_in": dict(bytes_in), "docs_in": dict(docs_in), "rejected": dict(rejected)}


# ---------------------------------------------------------------- evaluation


def evaluate(labels: dict[str, Any], pairs: list[dict[str, Any]], sets: dict[str, Any],
             variants: set[str], threshold: float = 0.8) -> dict[str, Any]:
    """Recall of the injected pairs per band and edit kind; clustered pairs split by their true Jaccard, and
    those below ``threshold - 0.05`` counted (injected or not, joined directly or through a chain)."""
    found = {name: [0, 0] for name in [*BAND_NAMES, "<0.5"]}
    by_kind: dict[str, dict[str, list[int]]] = {}
    injected = set()
    for p in pairs:
        hit = p["original"] in labels and labels.get(p["original"]) == labels.get(p["variant"])
        found[p["band"]][0] += hit
        found[p["band"]][1] += 1
        cell = by_kind.setdefault(p["kind"], {}).setdefault(p["band"], [0, 0])
        cell[0] += hit
        cell[1] += 1
        injected.add((p["original"], p["variant"]))
    truth = {(p["original"], p["variant"]): p["jaccard"] for p in pairs}
    clusters: dict[Any, list[str]] = {}
    for doc_id, label in labels.items():
        clusters.setdefault(label, []).append(doc_id)
    counts = Counter()
    genuine, false_positives = [], []
    for members in clusters.values():
        counts["clusters"] += len(members) > 1
        counts["largest_cluster"] = max(counts["largest_cluster"], len(members))
        for a, b in combinations(sorted(members), 2):
            counts["clustered_pairs"] += 1
            j = truth.get((a, b), truth.get((b, a)))
            j = jaccard(sets[a], sets[b]) if j is None else j
            counts["below_threshold"] += j < threshold - 0.05
            if (a, b) in injected or (b, a) in injected:
                counts["injected"] += 1
                continue
            if j >= GENUINE and a not in variants and b not in variants:
                counts["genuine"] += 1
                genuine.append((a, b, round(j, 4)))
            elif j >= GENUINE:
                counts["derived"] += 1
            else:
                counts["false_positives"] += 1
                counts["false_positives_chained" if len(members) > 2 else "false_positives_direct"] += 1
                false_positives.append((a, b, round(j, 4)))
    pairs_total = counts["clustered_pairs"]
    return {
        "recall": {name: round(hit / n, 4) if n else None for name, (hit, n) in found.items()},
        "found": {name: hit for name, (hit, _) in found.items()},
        "pairs": {name: n for name, (_, n) in found.items()},
        "recall_by_kind": {kind: {band: round(h / n, 4) for band, (h, n) in sorted(cells.items())}
                           for kind, cells in by_kind.items()},
        **{k: counts[k] for k in ("clusters", "largest_cluster", "clustered_pairs", "injected", "genuine",
                                  "derived", "false_positives", "false_positives_direct",
                                  "false_positives_chained")},
        "precision": round(1 - counts["false_positives"] / pairs_total, 4) if pairs_total else None,
        "threshold": threshold,
        "below_threshold": counts["below_threshold"],  # clustered pairs at a true Jaccard < threshold - 0.05
        "genuine_pairs": sorted(genuine)[:50],
        "false_positive_pairs": sorted(false_positives, key=lambda x: -x[2])[:50],
        "false_positive_max_jaccard": max((j for *_, j in false_positives), default=None),
    }


def found_probability(j: float, bands: int, rows: int, verify: float | None = None,
                      exact: float | None = None) -> float:
    """P(an ideal MinHash pair at Jaccard ``j`` shares a band [and has >= ``verify`` equal slots] [and ``j`` is at
    least ``exact``: verified by the true Jaccard])."""
    if exact is not None and j < exact:
        return 0.0
    need = math.ceil(verify * bands * rows - 1e-9) if verify is not None else 0
    per_band = [math.comb(rows, k) * j ** k * (1 - j) ** (rows - k) for k in range(rows + 1)]
    states = {(0, False): 1.0}  # (equal slots so far, some band all equal) -> probability
    for _ in range(bands):
        nxt: dict[tuple[int, bool], float] = {}
        for (equal, hit), p in states.items():
            for k, q in enumerate(per_band):
                key = (equal + k, hit or k == rows)
                nxt[key] = nxt.get(key, 0.0) + p * q
        states = nxt
    return sum(p for (equal, hit), p in states.items() if hit and equal >= need)


def theory(pairs: list[dict[str, Any]], bands: int, rows: int, verify: float | None,
           exact: float | None = None) -> dict[str, float | None]:
    """Expected recall per band of an ideal MinHash LSH, from the true Jaccard of each injected pair."""
    out = {}
    for name in BAND_NAMES:
        js = [p["jaccard"] for p in pairs if p["band"] == name]
        out[name] = (round(sum(found_probability(j, bands, rows, verify, exact) for j in js) / len(js), 4)
                     if js else None)
    return out


# ---------------------------------------------------------------- the benchmark


def run_subprocess(tool: str, corpus: Path, tmp: Path) -> tuple[dict[str, Any], dict[str, Any], Any]:
    out = tmp / f"{tool}.json"
    result = measure([sys.executable, str(Path(__file__).resolve()), "--run-tool", tool, str(corpus), str(out)]).check()
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    return timing, json.loads(out.read_text()), result


def available(tool: str) -> str | None:
    """Why ``tool`` cannot run here, or None."""
    needs = {"datasketch-usual": "datasketch", "datasketch-bulk": "datasketch", "datatrove": "datatrove"}
    module = needs.get(tool)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install '.[bench]')"
    if module == "datatrove" and importlib.util.find_spec("xxhash") is None:
        return "xxhash is not installed (datatrove's default hash)"
    return None


def write_corpus(path: Path, docs: list[Doc]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for d in docs:
            handle.write(json.dumps({"id": d.id, "source": d.source, "text": d.text}, ensure_ascii=False) + "\n")


def end_to_end(tmp: Path, docs: list[Doc], mb: float, warnings: list[str]) -> list[dict[str, Any]]:
    overton = overton_command()
    workspace = tmp / "ws"
    init = measure([*overton, "init", str(workspace)]).check()
    ingests = []
    for source in sorted({d.source for d in docs}):
        path = tmp / f"{source}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for d in docs:
                if d.source == source:
                    handle.write(json.dumps({"id": d.id, "text": d.text}, ensure_ascii=False) + "\n")
        ingests.append(measure([*overton, "ingest", "-w", str(workspace), "--source", source, "--format", "jsonl",
                                "--profile", PROFILES[source], str(path)]).check())
    build = measure([*overton, "build", "-w", str(workspace), "--jobs", "1", "--quiet"]).check()
    manifest = json.loads((workspace / "datasets" / "overton" / "v0001" / "manifest.json").read_text())
    counts = manifest["counts"]
    if counts["input"] != len(docs):
        warnings.append(f"end to end: the build saw {counts['input']} documents, not {len(docs)}")
    done = {"kept": counts["kept"], "rejected": counts["rejected"]}
    rows = [
        {"stage": "init", "mb": 0.0, "runs": [init]},
        {"stage": "ingest (jsonl)", "mb": mb, "runs": ingests},
        {"stage": "build --jobs 1", "mb": mb, "runs": [build], **done, "reasons": counts["reasons"]},
        {"stage": "total (init+ingest+build)", "mb": mb, "runs": [init, *ingests, build], **done},
    ]
    for row in rows:
        runs = row.pop("runs")
        row["seconds"] = round(sum(r.seconds for r in runs), 3)
        row["cpu_seconds"] = round(sum(r.cpu_seconds for r in runs), 3)
        row["mb_per_s_per_core"] = round(row["mb"] / row["seconds"], 3) if row["mb"] else None
        row["mb_per_cpu_s"] = round(row["mb"] / row["cpu_seconds"], 3) if row["mb"] and row["cpu_seconds"] else None
        row["peak_rss_mb"] = round(max(r.peak_rss for r in runs) / MB, 1)
        row["mb"] = round(row["mb"], 2)
    return rows


def memory_rows(tools: list[dict[str, Any]], corpus: dict[str, Any]) -> dict[str, Any] | None:
    """overton's near-dedup work memory at half and all of the corpus, and a linear model of it: a fixed part
    (the ~8 MB batches being hashed), the 560 bytes of signature and band keys of every document, and the shingle
    sets of the documents in candidate pairs (this corpus's share of them, at its shingles per document), of
    which at most two groups of ``DOCS_PER_GROUP`` are held at once. Extrapolated to the seed's 2 GB corpus and
    to 1 TB of text at this corpus's mean document size."""
    half = next((t for t in tools if t["tool"] == "overton-half"), None)
    whole = next((t for t in tools if t["tool"] == "overton"), None)
    if not (half and whole) or whole["docs"] == half["docs"] or not whole["stats"].get("texts_read"):
        return None
    from overton.corpus.config import NearDedupConfig
    from overton.pipelines.dedup_near import DOCS_PER_GROUP

    near = NearDedupConfig()
    per_doc = near.bands * near.rows * 4 + near.bands * 8
    share = whole["stats"]["texts_read"] / whole["docs"]
    per_candidate = 4 * whole["stats"]["shingles_held"] / whole["stats"]["texts_read"]

    def sets(docs: float) -> float:
        return per_candidate * min(share * docs, 2 * DOCS_PER_GROUP)

    fixed = whole["work_rss_mb"] * MB - per_doc * whole["docs"] - sets(whole["docs"])
    slope = (whole["work_rss_mb"] - half["work_rss_mb"]) * MB / (whole["docs"] - half["docs"])
    mean_doc = whole["mb"] * MB / whole["docs"]
    rows = [{"corpus": name, "docs": t["docs"], "mb": t["mb"], "work_rss_mb": t["work_rss_mb"],
             "kb_per_doc": round(t["work_rss_mb"] * MB / t["docs"] / 1000, 2), "extrapolated": False}
            for name, t in (("half", half), ("whole", whole))]
    for name, size in (("seed corpus, 2 GB", 2e9), ("1 TB", 1e12)):
        docs = size / mean_doc
        work = (fixed + per_doc * docs + sets(docs)) / MB
        rows.append({"corpus": name, "docs": round(docs), "mb": round(size / MB), "work_rss_mb": round(work, 1),
                     "kb_per_doc": round(work * MB / docs / 1000, 2), "extrapolated": True})
    return {"slope_bytes_per_doc": round(slope), "bytes_per_doc": per_doc, "candidate_share": round(share, 3),
            "bytes_per_candidate": round(per_candidate), "fixed_mb": round(fixed / MB, 1),
            "sets_cap_mb": round(per_candidate * 2 * DOCS_PER_GROUP / MB), "mean_doc_bytes": round(mean_doc),
            "rows": rows}


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f} %"


def markdown(corpus: dict[str, Any], tools: list[dict[str, Any]], theories: list[dict[str, Any]],
             ratio_rows: list[dict[str, Any]], steps: list[dict[str, Any]], e2e: list[dict[str, Any]],
             memory: dict[str, Any] | None = None) -> str:
    out = ["| documents | real | injected variants | MB | pairs per band (true Jaccard) |", "|--:|--:|--:|--:|---|",
           f"| {corpus['documents']} | {corpus['real_documents']} | {corpus['variants']} | {corpus['mb']:.1f} | "
           + ", ".join(f"{k}: {v}" for k, v in corpus["pairs_per_band"].items()) + " |", ""]
    head = " | ".join(BAND_NAMES)
    out += [f"| tool | docs | MB | seconds | CPU s | MB/s/core | MB/CPU-s | peak RSS MB | work MB | {head} |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|" + "--:|" * len(BAND_NAMES)]
    for t in tools:
        recall = " | ".join(_pct(t["eval"]["recall"].get(b)) for b in BAND_NAMES)
        out.append(f"| {t['tool']} | {t['docs']} | {t['mb']:.1f} | {t['seconds']:.2f} | {t['cpu_seconds']:.2f} | "
                   f"{t['mb_per_s']:.2f} | {t['mb'] / t['cpu_seconds']:.2f} | {t['peak_rss_mb']:.0f} | "
                   f"{t['work_rss_mb']:.0f} | {recall} |")
    for m in theories:
        recall = " | ".join(_pct(m["recall"].get(b)) for b in BAND_NAMES)
        out.append(f"| *theory: {m['model']}* | | | | | | | | | {recall} |")
    out += ["", "| tool | clusters | largest | clustered pairs | injected | genuine | derived | false pos. "
            "(direct / chained) | precision | pairs < threshold - 0.05 |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for t in tools:
        e = t["eval"]
        out.append(f"| {t['tool']} | {e['clusters']} | {e['largest_cluster']} | {e['clustered_pairs']} | "
                   f"{e['injected']} | {e['genuine']} | {e['derived']} | {e['false_positives']} "
                   f"({e['false_positives_direct']} / {e['false_positives_chained']}) | {_pct(e['precision'])} | "
                   f"{e['below_threshold']} (< {e['threshold'] - 0.05:.2f}) |")
    if memory:
        out += ["", "| overton near-dedup memory | docs | MB of text | work MB | KB per doc |",
                "|---|--:|--:|--:|--:|"]
        for r in memory["rows"]:
            mark = " (extrapolated)" if r["extrapolated"] else ""
            out.append(f"| {r['corpus']}{mark} | {r['docs']} | {r['mb']:.0f} | {r['work_rss_mb']:.0f} | "
                       f"{r['kb_per_doc']:.2f} |")
        out.append(f"\nbetween half and whole {memory['slope_bytes_per_doc']} bytes per document; the model: "
                   f"{memory['fixed_mb']:.0f} MB fixed, {memory['bytes_per_doc']} bytes per document, "
                   f"{memory['bytes_per_candidate']} bytes of shingles per document of a candidate pair "
                   f"({memory['candidate_share']:.0%} of them here), at most {memory['sets_cap_mb']} MB of them at "
                   f"once; documents of {memory['mean_doc_bytes']} bytes")
    if ratio_rows:
        out += ["", f"| overton / other | speed | {head} |", "|---|--:|" + "--:|" * len(BAND_NAMES)]
        for r in ratio_rows:
            cells = " | ".join("" if r["recall"][b] is None else f"{r['recall'][b]:.2f}x" for b in BAND_NAMES)
            out.append(f"| {r['tool']} | {r['speed']:.1f}x | {cells} |")
    if steps:
        out += ["", "| step (one core) | docs in | MB in | seconds | CPU s | MB/s | MB/CPU-s | share of time |",
                "|---|--:|--:|--:|--:|--:|--:|--:|"]
        for s in steps:
            out.append(f"| {s['step']} | {s['docs_in']} | {s['mb_in']:.1f} | {s['seconds']:.2f} | "
                       f"{s['cpu_seconds']:.2f} | {s['mb_per_s']:.2f} | {s['mb_per_cpu_s']:.2f} | "
                       f"{_pct(s.get('share'))} |")
    if e2e:
        out += ["", "| overton end to end | MB | seconds | CPU s | MB/s/core | MB/CPU-s | peak RSS MB | kept | "
                "rejected |",
                "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in e2e:
            speed = "" if r["mb_per_s_per_core"] is None else f"{r['mb_per_s_per_core']:.2f}"
            per_cpu = "" if r["mb_per_cpu_s"] is None else f"{r['mb_per_cpu_s']:.2f}"
            out.append(f"| {r['stage']} | {r['mb'] or ''} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {speed} | "
                       f"{per_cpu} | {r['peak_rss_mb']:.0f} | {r.get('kept', '')} | {r.get('rejected', '')} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000, help="injected near-duplicate pairs (default 1000)")
    parser.add_argument("--usual-fraction", type=float, default=1.0,
                        help="share of the documents given to the slow datasketch usual way (default 1.0)")
    parser.add_argument("--skip", default="", help="comma-separated tools to skip: " + ", ".join(TOOLS))
    parser.add_argument("--no-build", action="store_true", help="skip the end-to-end overton build")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    parser.add_argument("--run-tool", nargs=3, metavar=("TOOL", "CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_tool:
        run_tool(args.run_tool[0], Path(args.run_tool[1]), Path(args.run_tool[2]))
        return 0
    if not DATA.is_dir():
        print(f"skipped: ../shared/data not found ({DATA})")
        return 0
    needed = [DATA / "assemblee-2013" / "txt", DATA / "assemblee-sentences-2016-2017",
              DATA / "viepublique" / "statements-2020.csv"]
    missing = [str(p.relative_to(DATA)) for p in needed if not p.exists()]
    if missing:
        print(f"skipped: ../shared/data has no {', '.join(missing)} ({DATA})")
        return 0
    if not 0 < args.usual_fraction <= 1:
        parser.error("--usual-fraction must be in (0, 1]")
    import random

    started = time.perf_counter()
    rng = random.Random(SEED)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    real, read_info = read_documents(rng)
    variants, pairs = inject(real, args.pairs, rng)
    docs = real + variants
    texts = [d.text for d in docs]
    mb = sum(len(t.encode("utf-8")) for t in texts) / MB
    sets = dict(zip([d.id for d in docs], shingle_sets(texts), strict=True))
    per_band = Counter(p["band"] for p in pairs)
    corpus = {"documents": len(docs), "real_documents": len(real), "variants": len(variants), "mb": round(mb, 2),
              "real_mb": round(sum(len(d.text.encode("utf-8")) for d in real) / MB, 2),
              "sizes_kb": {"min": round(min(map(len, texts)) / 1000, 1), "median":
                           round(sorted(map(len, texts))[len(texts) // 2] / 1000, 1),
                           "max": round(max(map(len, texts)) / 1000, 1)},
              "by_source": {s: sum(1 for d in docs if d.source == s) for s in sorted({d.source for d in docs})},
              "pairs_per_band": {b: per_band[b] for b in [*BAND_NAMES, "<0.5"] if per_band[b]},
              "pairs_per_kind": dict(Counter(p["kind"] for p in pairs)), **read_info,
              "prepare_seconds": round(time.perf_counter() - started, 2)}
    print(f"documents: {len(docs)} ({len(real)} real + {len(variants)} variants), {mb:.1f} MB, "
          f"pairs per band {corpus['pairs_per_band']}", file=sys.stderr)

    sample = random.Random(1).sample(range(len(real)), min(200, len(real)))
    from overton.pipelines.minhash import fold_words

    flat, lengths = fold_words([texts[i] for i in sample])
    ends = list(map(int, lengths.cumsum()))
    words = flat.to_pylist()
    mismatched = sum(fold(texts[i]) != words[e - n:e] for i, e, n in zip(sample, ends, map(int, lengths), strict=True))
    warnings: list[str] = []
    if mismatched:
        warnings.append(f"the plain-Python folding differs from overton's on {mismatched} of {len(sample)} documents")

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    tmp = Path(tempfile.mkdtemp(prefix="overton-bench-cleaning-"))
    tools, steps, e2e = [], [], []
    from overton.corpus.config import Config

    near = Config().near_dedup
    theories = [{"model": f"ideal MinHash, {near.bands} x {near.rows}, true Jaccard >= {t} (overton)",
                 "recall": theory(pairs, near.bands, near.rows, None, exact=t)} for t in (0.8, 0.7)]
    theories.append({"model": "ideal MinHash, 14 x 8, unverified (fineweb)", "recall": theory(pairs, 14, 8, None)})
    variant_ids = {d.id for d in variants}

    def subset(fraction: float, name: str) -> tuple[Path, list[dict[str, Any]]]:
        """A share of the documents with the same share of the injected pairs (both documents of each)."""
        draw = random.Random(2)
        keep_pairs = [p for p in pairs if draw.random() < fraction]
        in_pairs = {p["original"] for p in pairs} | variant_ids
        wanted = {p["original"] for p in keep_pairs} | {p["variant"] for p in keep_pairs}
        chosen = [d for d in docs if d.id in wanted or (d.id not in in_pairs and draw.random() < fraction)]
        path = tmp / f"corpus-{name}.jsonl"
        write_corpus(path, chosen)
        return path, keep_pairs

    try:
        corpus_path = tmp / "corpus.jsonl"
        write_corpus(corpus_path, docs)
        for tool in TOOLS:
            why = "skipped with --skip" if tool in skip else available(tool)
            if why:
                print(f"{tool} skipped: {why}", file=sys.stderr)
                warnings.append(f"{tool} skipped: {why}")
                continue
            path, subset_pairs = corpus_path, pairs
            fraction = args.usual_fraction if tool == "datasketch-usual" else OVERTON.get(tool, ({}, 1.0))[1]
            if fraction < 1:
                path, subset_pairs = subset(fraction, tool)
            threshold = near_settings(tool).threshold if tool in OVERTON else 0.8
            timing, result, measured = run_subprocess(tool, path, tmp)
            seconds = sum(timing["wall"].values())
            row = {"tool": tool, "params": result.get("params"), "note": result.get("note"),
                   "docs": timing["docs"], "mb": timing["mb"],
                   "seconds": round(seconds, 3), "mb_per_s": round(timing["mb"] / seconds, 3),
                   "cpu_seconds": round(sum(timing["cpu"].values()), 3),
                   "phases": {k: round(v, 3) for k, v in timing["wall"].items()},
                   "peak_rss_mb": round(max(measured.peak_rss, timing["peak_rss"]) / MB, 1),
                   "loaded_rss_mb": round(timing["loaded_rss"] / MB, 1),
                   "eval": evaluate(result["labels"], subset_pairs, sets, variant_ids, threshold)}
            row["work_rss_mb"] = round(row["peak_rss_mb"] - row["loaded_rss_mb"], 1)
            if tool == "datasketch-usual":
                b, r = result["bands_rows"]
                theories.append({"model": f"ideal MinHash, {b} x {r}, unverified (datasketch usual)",
                                 "recall": theory(pairs, b, r, None)})
            print(f"  {tool}: {seconds:.2f} s, recall {row['eval']['recall']}", file=sys.stderr)
            tools.append(row)
            if tool in OVERTON:
                row["stats"] = result["stats"]
                row["rejected_near_duplicate"] = sum(1 for d, kept in result["labels"].items() if d != kept)
            if tool == "datasketch-bulk":
                unverified = dict(row, tool="datasketch-bulk (unverified)",
                                  eval=evaluate(result["labels_unverified"], subset_pairs, sets, variant_ids))
                unverified["seconds"] = round(seconds - result["verify_seconds"], 3)
                unverified["mb_per_s"] = round(timing["mb"] / unverified["seconds"], 3)
                tools.append(unverified)
        if "steps" not in skip:
            timing, result, _ = run_subprocess("steps", corpus_path, tmp)
            total = sum(timing["wall"].values())
            for name in result["order"]:
                seconds = timing["wall"].get(name, 0.0)
                mb_in = result["bytes_in"].get(name, 0) / MB
                cpu = timing["cpu"].get(name, 0.0)
                steps.append({"step": name, "docs_in": result["docs_in"].get(name, 0), "mb_in": round(mb_in, 2),
                              "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                              "mb_per_s": round(mb_in / seconds, 2) if seconds else 0,
                              "mb_per_cpu_s": round(mb_in / cpu, 2) if cpu else 0,
                              "rejected": result["rejected"].get(name, 0), "share": round(seconds / total, 3)})
            cpu = sum(timing["cpu"].values())
            steps.append({"step": "all of the above", "docs_in": timing["docs"], "mb_in": round(timing["mb"], 2),
                          "seconds": round(total, 3), "cpu_seconds": round(cpu, 3),
                          "mb_per_s": round(timing["mb"] / total, 2), "mb_per_cpu_s": round(timing["mb"] / cpu, 2),
                          "share": 1.0})
        if not args.no_build:
            e2e = end_to_end(tmp, docs, mb, warnings)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ratio_rows = []
    ours = next((t for t in tools if t["tool"] == "overton"), None)
    for t in tools:
        if ours is None or t["tool"] in OVERTON:
            continue
        recall = {b: (round(ours["eval"]["recall"][b] / t["eval"]["recall"][b], 3)
                      if t["eval"]["recall"].get(b) and ours["eval"]["recall"].get(b) is not None else None)
                  for b in BAND_NAMES}
        ratio_rows.append({"tool": t["tool"], "speed": round(ours["mb_per_s"] / t["mb_per_s"], 3), "recall": recall})
    near = [s for s in e2e if s["stage"].startswith("build")]
    if ours and near and near[0].get("reasons", {}).get("near_duplicate", 0) != ours["rejected_near_duplicate"]:
        warnings.append("the build rejected a different number of near-duplicates than the in-process overton run")
    memory = memory_rows(tools, corpus)
    print(markdown(corpus, tools, theories, ratio_rows, steps, e2e, memory))
    for warning in warnings:
        print(f"WARNING: {warning}")
    versions = {}
    for dist in ("datasketch", "datatrove", "xxhash", "numpy", "pyarrow", "scipy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    results = {
        "versions": versions,
        "corpus": corpus,
        "tools": tools,
        "theory": theories,
        "ratios": ratio_rows,
        "memory": memory,
        "steps": steps,
        "end_to_end": e2e,
        "end_to_end_target_mb_per_s_per_core": TARGET_MB_S,
        "end_to_end_meets_target": all(r["mb_per_s_per_core"] >= TARGET_MB_S for r in e2e
                                       if r["stage"].startswith("build")) if e2e else None,
        "pairs": pairs,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_results("cleaning", argv, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
