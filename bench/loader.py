"""Benchmark: the training loader's read + tokenize + pack throughput and resume-seek time, against HF ``datasets``.

A real dataset version is built from the real text in ``../shared/data`` (the folder beside the repository;
skipped with a message when absent) by the commands a user runs: ``overton init``, one ``overton ingest``
per corpus (``assemblee-sentences-2016-2017/*.txt`` and ``assemblee-2013/txt/*.txt`` as ``--format text``,
``viepublique/statements-2020.csv`` as ``--format csv --field thematics=tags --field keywords=topics``) and
``overton build``. There is no model hub: a byte-level BPE (``overton.train.tiny.train_tokenizer``, GPT-J's
kind of tokenizer, ``--vocab`` tokens, EOS ``<|endoftext|>``) is trained on the version's text and saved as a
Hugging Face tokenizer folder. Both sides use it through its ``tokenizers`` backend (overton calls
``encode_batch_fast``, the datasets pipeline ``encode_batch`` as users do; the same ids), EOS after every
document, sequences of 1024 tokens.

* **overton**: ``PackedStream(version, Tokenizer(folder), seq_len=1024, seed=0, cache=..., epochs=1)``, then
  ``stream.sequence(g)`` for every ``g < stream.count()``. *cold*: nothing in the cache, so ``count()`` first
  reads and tokenizes every document once, storing its token ids and the token index (timed apart), then the
  epoch is read from the stored ids; *warm*: a fresh stream whose index and ids are cached, as on every run
  after the first. The stored ids' size on disk is reported.
* **datasets**: ``load_dataset("parquet", data_files=<the version's data files>, split="train",
  streaming=True, columns=["text"])``, ``.shuffle(seed=0, buffer_size=10_000)`` (what users do; the buffer
  is larger than this corpus, so it shuffles the whole epoch), ``.map(tokenize, batched=True)`` (the same
  backend call, EOS appended) and ``.map(group_texts, batched=True)``: run_clm's concatenation into 1024-token
  blocks with the default batch of 1,000 documents (every document fits one batch here, so only the epoch's
  tail is dropped, as overton does). A second row does what run_clm does literally: ``PreTrainedTokenizerFast``
  called on the texts (input_ids and attention_mask), both concatenated, ``labels`` copied.
* **tokenizer alone**: one ``encode_batch`` over every text (the datasets side's floor), and one
  ``encode_batch_fast`` (no offsets: overton's floor).
* **resume-seek** at 10 %, 50 % and 90 % of the epoch (g = that share of overton's sequence count): overton
  builds a fresh stream (index cached, as on a real resume) and asks for sequence ``g``; datasets resumes a fresh
  pipeline from the ``state_dict()`` saved after sequence ``g - 1`` of an uninterrupted epoch
  (``load_state_dict``, then the next sequence). Every resumed sequence is compared with the uninterrupted
  epoch's. Also: datasets with a shuffle buffer and map batches of ``--small-buffer`` documents (100), smaller
  than the corpus as they are at scale, where the state does not hold the buffer's content; overton on a version
  built with ``row_group_mb = --seek-row-group-mb`` (1) in ``[ingest]`` and ``[shards]``; with
  ``--skip-through``, datasets iterating and packing up to sequence ``g``.

Every loader runs with one thread (``TOKENIZERS_PARALLELISM=false``, pyarrow's pools of one thread; ``--parallel``
leaves them on), as in a ``DataLoader`` worker process, where tokenizers turns its pool off anyway. CPU seconds
are ``time.process_time()`` of this process. *tokens/s/core* is tokens / CPU seconds: the rate of one core,
steadier than wall time when another process competes for the machine; *tokens/s* is tokens / wall seconds.
Tokens are those in the packed sequences. Warm epochs run ``--rounds`` times, interleaved, and the one with the
least CPU counts. The benchmark asserts that both loaders see the same documents with the same token counts
(sorted per-document counts, EOS included) and produce the same number of sequences.

Run: ``python bench/loader.py [--rounds 2] [--vocab 32000] [--keep]``. Prints markdown tables and writes
``bench/results/loader.json``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from common import save_results
from ingest_build import CORPORA, MB, corpus_files, missing_corpora, overton_command

SEQ_LEN = 1024
SEED = 0
SHUFFLE_BUFFER = 10_000
FRACTIONS = (0.1, 0.5, 0.9)
EOS = "<|endoftext|>"


# ---------------------------------------------------------------- timing


class Clock:
    """Wall and CPU seconds of a block: ``with Clock() as c: ...; c.seconds, c.cpu``."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


@dataclass
class Meter:
    """Accumulated time inside one function (the tokenizer call of either loader)."""

    seconds: float = 0.0
    cpu: float = 0.0

    def wrap(self, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - wall
                self.cpu += time.process_time() - cpu

        return timed


@dataclass
class Row:
    tool: str
    stage: str
    seconds: float
    cpu: float
    sequences: int = 0
    tokens: int = 0
    tokenize_cpu: float | None = None
    text_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_core(self) -> float:
        return self.tokens / self.cpu if self.cpu else 0.0

    @property
    def per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "stage": self.stage, "sequences": self.sequences, "tokens": self.tokens,
                "seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu, 3),
                "tokenize_cpu_seconds": None if self.tokenize_cpu is None else round(self.tokenize_cpu, 3),
                "tokens_per_s": round(self.per_second), "tokens_per_s_per_core": round(self.per_core),
                "text_mb_per_cpu_s": round(self.text_mb / self.cpu, 3) if self.cpu else None, **self.extra}


def digest(sequence: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(sequence, np.int32).tobytes(), digest_size=8).hexdigest()


# ---------------------------------------------------------------- the dataset version and the tokenizer


def run(argv: list[str], allowed: tuple[int, ...] = (0,)) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode not in allowed:
        sys.exit(f"command failed with exit code {result.returncode}: {' '.join(argv[:6])} ...\n"
                 f"{result.stderr[-2000:]}")
    return result.stdout


def built_version(tmp: Path, row_group_mb: int | None) -> Path:
    """``overton init``, one ``overton ingest`` per corpus, ``overton build``: the dataset version's folder.

    The three sources are listed as curated political text, as a user of this data would. ``row_group_mb``
    sets the row group size of the raw files (``[ingest]``: one build batch) and of the version's files
    (``[shards]``); None keeps the defaults.
    """
    from overton.corpus.config import set_setting

    overton = overton_command()
    workspace = tmp / f"ws-rg{row_group_mb or 'default'}"
    run([*overton, "init", str(workspace)])
    settings = workspace / "overton.toml"
    text = settings.read_text()
    if row_group_mb is not None:
        for section in ("ingest", "shards"):
            text = set_setting(text, section, "row_group_mb", str(row_group_mb))
    settings.write_text(text)
    parsed = tomllib.loads(text)
    assert row_group_mb is None or parsed["shards"]["row_group_mb"] == parsed["ingest"]["row_group_mb"] == row_group_mb
    for corpus in CORPORA:
        # exit code 1 = some records refused (the CSV's repeated header rows)
        run([*overton, "ingest", "-w", str(workspace), "--source", corpus.source, *corpus.options,
             *map(str, corpus_files(corpus))], allowed=(0, 1))
    run([*overton, "build", "-w", str(workspace), "--jobs", "2", "--quiet"])
    return workspace / "datasets" / "overton" / "v0001"


def data_files(version: Path) -> list[Path]:
    manifest = json.loads((version / "manifest.json").read_text())
    return [version / f["path"] for f in manifest["files"] if f["kind"] == "data"]


def describe(version: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    files = data_files(version)
    groups = documents = text_bytes = 0
    for path in files:
        parquet = pq.ParquetFile(path)
        groups += parquet.num_row_groups
        documents += parquet.metadata.num_rows
        text_bytes += sum(len(t.encode()) for t in pq.read_table(path, columns=["text"]).column("text").to_pylist())
    return {"files": len(files), "row_groups": groups, "documents": documents,
            "file_mb": round(sum(p.stat().st_size for p in files) / MB, 2), "text_mb": round(text_bytes / MB, 2)}


def version_texts(version: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [t for path in data_files(version) for t in pq.read_table(path, columns=["text"]).column("text").to_pylist()]


# ---------------------------------------------------------------- overton


def overton_tokenizer(folder: Path, meter: Meter):
    from overton.train.loader import Tokenizer

    tokenizer = Tokenizer(str(folder))
    tokenizer.encode = meter.wrap(tokenizer.encode)  # the loader calls tokenizer.encode for every row group
    return tokenizer


def overton_stream(version: Path, tokenizer, cache: Path):
    from overton.train.loader import PackedStream

    return PackedStream(str(version), tokenizer, seq_len=SEQ_LEN, seed=SEED, cache=cache, epochs=1)


def overton_epoch(version: Path, folder: Path, cache: Path, text_mb: float, cold: bool) -> tuple[list[Row], list[str]]:
    """One epoch from a fresh stream; cold: the index is built first (timed as its own row)."""
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    meter = Meter()
    tokenizer = overton_tokenizer(folder, meter)
    rows = []
    with Clock() as setup:
        stream = overton_stream(version, tokenizer, cache)
        count = stream.count()
    index_cpu = meter.cpu
    if cold:
        tokens = stream.selected_tokens()
        rows.append(Row("overton", "build the token index (first run)", setup.seconds, setup.cpu, 0, tokens,
                        index_cpu, text_mb))
    digests = []
    with Clock() as read:
        for g in range(count):
            digests.append(digest(stream.sequence(g)))
    stage = "read the epoch after building the index" if cold else "epoch, index cached"
    seconds, cpu = read.seconds + (0 if cold else setup.seconds), read.cpu + (0 if cold else setup.cpu)
    rows.append(Row("overton", stage, seconds, cpu, count, count * SEQ_LEN, meter.cpu - index_cpu, text_mb,
                    {"setup_seconds": round(setup.seconds, 3)}))
    if cold:
        rows.append(Row("overton", "cold epoch (index + read)", setup.seconds + read.seconds, setup.cpu + read.cpu,
                        count, count * SEQ_LEN, meter.cpu, text_mb))
    return rows, digests


def overton_index(version: Path, folder: Path, cache: Path) -> tuple[int, float]:
    """Build the token index only (no epoch read): sequences per epoch, seconds."""
    shutil.rmtree(cache, ignore_errors=True)
    with Clock() as clock:
        count = overton_stream(version, overton_tokenizer(folder, Meter()), cache).count()
    return count, clock.seconds


def overton_document_tokens(version: Path, folder: Path, cache: Path) -> list[int]:
    stream = overton_stream(version, overton_tokenizer(folder, Meter()), cache)
    _, index = stream._index(0)  # the index is cached: this reads it
    return sorted(index.column("tokens").to_pylist())


def stored_ids(cache: Path, tokens: int) -> dict[str, Any]:
    """What the stored token ids cost on disk: bytes, and bytes per token of the index."""
    files = [p for p in cache.glob("tokens-*/*") if p.suffix in (".u16", ".u32")]
    size = sum(p.stat().st_size for p in files)
    return {"files": len(files), "bytes": size, "tokens": tokens, "bytes_per_token": round(size / max(1, tokens), 3),
            "index_bytes": sum(p.stat().st_size for p in cache.glob("tokens-*/*.parquet"))}


def overton_seek(version: Path, folder: Path, cache: Path, g: int) -> tuple[float, float, str, float]:
    meter = Meter()
    tokenizer = overton_tokenizer(folder, meter)
    with Clock() as clock:
        sequence = overton_stream(version, tokenizer, cache).sequence(g)
    return clock.seconds, clock.cpu, digest(sequence), meter.cpu


# ---------------------------------------------------------------- Hugging Face datasets


@dataclass
class HfSide:
    """The datasets pipeline on the version's files, with ``tokenizers`` directly or run_clm's transformers call."""

    files: list[Path]
    tokenizer_file: Path
    run_clm: bool = False
    buffer: int = SHUFFLE_BUFFER  # shuffle buffer
    batch: int = 1000  # documents per map batch (datasets' default, run_clm's group_texts batch)
    meter: Meter = field(default_factory=Meter)
    lengths: list[int] = field(default_factory=list)
    concatenated: int = 0  # tokens entering group_texts, before the tail of each batch is dropped

    def __post_init__(self) -> None:
        if self.run_clm:
            from transformers import PreTrainedTokenizerFast

            self.hf = PreTrainedTokenizerFast(tokenizer_file=str(self.tokenizer_file), eos_token=EOS)
            self.eos = self.hf.eos_token_id
        else:
            from tokenizers import Tokenizer

            self.backend = Tokenizer.from_file(str(self.tokenizer_file))
            self.eos = self.backend.token_to_id(EOS)
        self.reset()

    @property
    def config(self) -> str:
        return f"shuffle buffer {self.buffer:,}, map batches of {self.batch:,}"

    def reset(self) -> None:
        self.meter, self.lengths, self.concatenated = Meter(), [], 0
        self._encode = self.meter.wrap(self._encode_texts)

    def _encode_texts(self, texts: list[str]) -> dict[str, list[list[int]]]:
        if self.run_clm:
            out = self.hf(texts, add_special_tokens=False)
            return {"input_ids": [ids + [self.eos] for ids in out["input_ids"]],
                    "attention_mask": [mask + [1] for mask in out["attention_mask"]]}
        return {"input_ids": [e.ids + [self.eos] for e in self.backend.encode_batch(texts, add_special_tokens=False)]}

    def tokenize(self, batch: dict[str, list]) -> dict[str, list]:
        out = self._encode(batch["text"])
        self.lengths.extend(map(len, out["input_ids"]))
        return out

    def group_texts(self, examples: dict[str, list]) -> dict[str, list]:
        """run_clm's group_texts: concatenate the batch, drop its tail, cut blocks of SEQ_LEN."""
        concatenated = {k: list(itertools.chain(*examples[k])) for k in examples}
        total = len(concatenated["input_ids"])
        self.concatenated += total
        total = total // SEQ_LEN * SEQ_LEN
        result = {k: [t[i: i + SEQ_LEN] for i in range(0, total, SEQ_LEN)] for k, t in concatenated.items()}
        if self.run_clm:
            result["labels"] = result["input_ids"].copy()
        return result

    def pipeline(self):
        import datasets

        ds = datasets.load_dataset("parquet", data_files=[str(f) for f in self.files], split="train",
                                   streaming=True, columns=["text"])
        ds = ds.shuffle(seed=SEED, buffer_size=self.buffer)
        ds = ds.map(self.tokenize, batched=True, batch_size=self.batch, remove_columns=["text"])
        return ds.map(self.group_texts, batched=True, batch_size=self.batch)

    def sequences(self, ds) -> Iterator[np.ndarray]:
        for example in ds:
            yield np.asarray(example["input_ids"], np.int32)


def hf_epoch(side: HfSide, text_mb: float, stage: str,
             targets: list[int] = ()) -> tuple[Row, list[str], dict[int, dict]]:
    """One streaming epoch, timed to its last sequence, and ``state_dict()`` saved after sequence g - 1 for
    every g in ``targets`` (a deep copy: three times per epoch, nothing measurable)."""
    side.reset()
    digests, states = [], {}
    wanted = set(targets)
    wall, cpu = time.perf_counter(), time.process_time()
    last_wall, last_cpu = wall, cpu
    ds = side.pipeline()
    for sequence in side.sequences(ds):
        digests.append(digest(sequence))
        if len(digests) in wanted:
            states[len(digests)] = copy.deepcopy(ds.state_dict())
        last_wall, last_cpu = time.perf_counter(), time.process_time()
    shutdown = time.perf_counter() - last_wall
    row = Row("datasets", stage, last_wall - wall, last_cpu - cpu, len(digests), len(digests) * SEQ_LEN,
              side.meter.cpu, text_mb, {"tokens_before_packing": side.concatenated,
                                        "after_last_sequence_seconds": round(shutdown, 3)})
    return row, digests, states


def hf_resume(side: HfSide, state: dict) -> tuple[float, float, str]:
    with Clock() as clock:
        ds = side.pipeline()
        ds.load_state_dict(state)
        sequences = side.sequences(ds)
        sequence = next(sequences)
    sequences.close()  # closing sleeps 5 s (datasets' parquet iterator shutdown): a resumed run would go on
    return clock.seconds, clock.cpu, digest(sequence)


def hf_skip(side: HfSide, g: int) -> tuple[float, float, str]:
    with Clock() as clock:
        sequences = side.sequences(side.pipeline())
        sequence = next(itertools.islice(sequences, g, None))
    sequences.close()
    return clock.seconds, clock.cpu, digest(sequence)


# ---------------------------------------------------------------- tokenizer alone


def tokenizer_alone(folder: Path, texts: list[str], text_mb: float) -> list[Row]:
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    rows = []
    for name in ("encode_batch", "encode_batch_fast"):
        encode = getattr(backend, name, None)
        if encode is None:
            continue
        with Clock() as clock:
            tokens = sum(len(e.ids) + 1 for e in encode(texts, add_special_tokens=False))
        rows.append(Row("tokenizer alone", f"{name}, every text in one call (+ EOS)", clock.seconds, clock.cpu,
                        0, tokens, clock.cpu, text_mb))
    return rows


# ---------------------------------------------------------------- report


@dataclass
class Seek:
    method: str  # who resumes, and how
    config: str  # the data or pipeline it resumes
    fraction: float
    g: int
    seconds: float
    cpu: float
    exact: bool | None  # the same sequence as the uninterrupted epoch's (None: not checked)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "config": self.config, "fraction": self.fraction, "g": self.g,
                "seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu, 3), "exact": self.exact,
                **self.extra}


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def markdown(rows: list[Row], ratios: list[dict[str, Any]], seeks: list[Seek]) -> str:
    lines = ["| tool | pass | sequences | tokens | seconds | CPU s | of which tokenize CPU s | tokens/s | "
             "tokens/s/core | text MB/CPU-s |", "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        tok = "" if r.tokenize_cpu is None else fmt(r.tokenize_cpu)
        lines.append(f"| {r.tool} | {r.stage} | {r.sequences or ''} | {r.tokens} | {fmt(r.seconds)} | {fmt(r.cpu)} | "
                     f"{tok} | {r.per_second:,.0f} | {r.per_core:,.0f} | {r.text_mb / r.cpu:.2f} |")
    lines += ["", "| overton / datasets | tokens/s | tokens/s/core |", "|---|--:|--:|"]
    lines += [f"| {x['overton']} / {x['datasets']} | {x['wall_ratio']:.2f}x | {x['per_core_ratio']:.2f}x |"
              for x in ratios]
    fractions = sorted({s.fraction for s in seeks})
    groups: dict[tuple[str, str], dict[float, Seek]] = {}
    for s in seeks:
        groups.setdefault((s.method, s.config), {})[s.fraction] = s
    cols = " | ".join(f"{int(f * 100)} %: g, s (CPU s)" for f in fractions)
    lines += ["", f"| resume | on | {cols} | same sequence as the uninterrupted epoch |",
              "|---|---|" + "--:|" * len(fractions) + "---|"]
    for (method, config), by in groups.items():
        cells = [f"{by[f].g}, {fmt(by[f].seconds)} ({fmt(by[f].cpu)})" if f in by else "" for f in fractions]
        exact = [by[f].exact for f in fractions if f in by]
        verdict = "not checked" if None in exact else ", ".join("yes" if e else "NO" for e in exact)
        lines.append(f"| {method} | {config} | {' | '.join(cells)} | {verdict} |")
    reference = groups.get(next(iter(groups), ("", "")), {})
    if reference:
        positions = " | ".join(f"{int(f * 100)} %" for f in fractions)
        lines += ["", f"| seconds / overton's (default row groups) | {positions} |", "|---|" + "--:|" * len(fractions)]
        for (method, config), by in list(groups.items())[1:]:
            cells = [f"{by[f].seconds / reference[f].seconds:.1f}x" if f in by and f in reference else ""
                     for f in fractions]
            lines.append(f"| {method}, {config} | {' | '.join(cells)} |")
    return "\n".join(lines)


def version_of(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------- the benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="warm epochs per loader; the least CPU counts")
    parser.add_argument("--vocab", type=int, default=32_000, help="BPE vocabulary size (default 32000)")
    parser.add_argument("--seek-row-group-mb", type=int, default=1,
                        help="also time overton's seek on a version built with this row_group_mb (0: no)")
    parser.add_argument("--small-buffer", type=int, default=100,
                        help="also resume datasets with this shuffle buffer and map batch, smaller than the "
                             "corpus as at scale (0: no)")
    parser.add_argument("--skip-through", action="store_true",
                        help="also time the datasets resume by iterating up to the sequence (no state_dict)")
    parser.add_argument("--no-run-clm", action="store_true", help="skip the transformers (run_clm) baseline row")
    parser.add_argument("--parallel", action="store_true",
                        help="leave the tokenizer's Rayon pool and pyarrow's threads on (default: one thread each, "
                             "as in a DataLoader worker)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    if skipped := missing_corpora():
        print(skipped)
        return 0
    if not args.parallel:
        # One thread per loader, as in a DataLoader worker process (tokenizers turns its pool off in forked
        # workers anyway): CPU seconds are then the cost on one core.
        import pyarrow as pa

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
    tmp = Path(tempfile.mkdtemp(prefix="overton-bench-loader-"))
    os.environ["HF_HUB_OFFLINE"] = "1"  # no hub here; datasets reads these when first imported
    os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf-cache")
    has_datasets = importlib.util.find_spec("datasets") is not None
    warnings: list[str] = []
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"  {message} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    rows: list[Row] = []
    seeks: list[Seek] = []
    checks: dict[str, Any] = {}
    small: dict[str, Any] = {}
    try:
        from overton.train.tiny import train_tokenizer

        version = built_version(tmp, None)
        info = describe(version)
        text_mb = info["text_mb"]
        input_mb = sum(p.stat().st_size for c in CORPORA for p in corpus_files(c)) / MB
        log(f"version: {info['documents']} documents, {text_mb} MB of text in {info['row_groups']} row groups")
        texts = version_texts(version)
        folder = tmp / "tokenizer"
        with Clock() as training:
            train_tokenizer(folder, texts, vocab_size=args.vocab)
        log(f"tokenizer: {args.vocab} tokens trained in {training.seconds:.1f} s")
        cache = tmp / "cache"

        # -- throughput
        cold_rows, overton_digests = overton_epoch(version, folder, cache, text_mb, cold=True)
        rows += cold_rows
        checks["stored_ids"] = stored_ids(cache, cold_rows[0].tokens)
        count = cold_rows[-1].sequences
        targets = [int(f * count) for f in FRACTIONS]
        log("overton cold epoch")
        side = HfSide(data_files(version), folder / "tokenizer.json") if has_datasets else None
        warm: list[Row] = []
        baseline: list[Row] = []
        hf_digests: list[str] = []
        states: dict[int, dict] = {}
        for round_ in range(args.rounds):  # interleaved, so that a busy moment of the machine hits both
            (row,), digests = overton_epoch(version, folder, cache, text_mb, cold=False)
            if digests != overton_digests:
                warnings.append("overton: a warm epoch differs from the cold one")
            warm.append(row)
            if side is not None:
                row, hf_digests, found = hf_epoch(side, text_mb, "streaming epoch, tokenizers encode_batch",
                                                  targets if round_ == 0 else ())
                states = states or found
                baseline.append(row)
            log(f"warm round {round_ + 1}")
        for chosen in (warm, baseline):
            if chosen:
                best = min(chosen, key=lambda r: r.cpu)
                best.extra.update(rounds_cpu_seconds=[round(r.cpu, 3) for r in chosen],
                                  rounds_seconds=[round(r.seconds, 3) for r in chosen])
                rows.append(best)
        if side is not None:
            best = rows[-1]
            overton_lengths = overton_document_tokens(version, folder, cache)
            checks |= {"documents": len(overton_lengths), "overton_tokens": sum(overton_lengths),
                      "datasets_tokens_before_packing": best.extra["tokens_before_packing"],
                      "same_document_token_counts": overton_lengths == sorted(side.lengths),
                      "same_sequence_count": best.sequences == count}
            assert checks["same_document_token_counts"], "the two loaders do not tokenize the same documents alike"
            assert checks["overton_tokens"] == checks["datasets_tokens_before_packing"]
            assert checks["same_sequence_count"], (best.sequences, count)
            if not args.no_run_clm and version_of("transformers"):
                row, _, _ = hf_epoch(HfSide(side.files, side.tokenizer_file, run_clm=True), text_mb,
                                     "streaming epoch, run_clm as written (transformers, attention_mask, labels)")
                rows.append(row)
                log("run_clm epoch")
        else:
            warnings.append("datasets is not installed: the baseline is skipped (.venv/bin/pip install -e '.[bench]')")
        rows += tokenizer_alone(folder, texts, text_mb)
        log("tokenizer alone")

        # -- resume-seek
        default_groups = f"{info['row_groups']} row groups (row_group_mb 32, the default)"
        for fraction, g in zip(FRACTIONS, targets, strict=True):
            seconds, cpu, found, tokenize_cpu = overton_seek(version, folder, cache, g)
            seeks.append(Seek("overton: new stream, sequence(g)", default_groups, fraction, g, seconds, cpu,
                              found == overton_digests[g], {"tokenize_cpu_seconds": round(tokenize_cpu, 3)}))
        if side is not None:
            for fraction, g in zip(FRACTIONS, targets, strict=True):
                seconds, cpu, found = hf_resume(side, states[g])
                seeks.append(Seek("datasets: load_state_dict", side.config, fraction, g, seconds, cpu,
                                  found == hf_digests[g]))
            if args.skip_through:
                for fraction, g in zip(FRACTIONS, targets, strict=True):
                    seconds, cpu, found = hf_skip(side, g)
                    seeks.append(Seek("datasets: skip through", side.config, fraction, g, seconds, cpu,
                                      found == hf_digests[g]))
            if args.small_buffer:
                smaller = HfSide(side.files, side.tokenizer_file, buffer=args.small_buffer, batch=args.small_buffer)
                row, digests, found_states = hf_epoch(smaller, text_mb, f"streaming epoch, {smaller.config}", targets)
                for fraction, g in zip(FRACTIONS, targets, strict=True):
                    seconds, cpu, found = hf_resume(smaller, found_states[g])
                    seeks.append(Seek("datasets: load_state_dict", smaller.config, fraction, g, seconds, cpu,
                                      found == digests[g], {"in_the_epoch_at_all": found in set(digests)}))
                small["datasets_small_buffer_epoch"] = row.as_dict()
        log("resume-seek")

        if args.seek_row_group_mb:
            small_version = built_version(tmp, args.seek_row_group_mb)
            small_info = describe(small_version)
            small_cache = tmp / "cache-small"
            small_count, index_seconds = overton_index(small_version, folder, small_cache)
            for fraction in FRACTIONS:
                g = int(fraction * small_count)
                seconds, cpu, _, tokenize_cpu = overton_seek(small_version, folder, small_cache, g)
                seeks.append(Seek("overton: new stream, sequence(g)",
                                  f"{small_info['row_groups']} row groups (row_group_mb {args.seek_row_group_mb})",
                                  fraction, g, seconds, cpu, None, {"tokenize_cpu_seconds": round(tokenize_cpu, 3)}))
            small.update(row_group_mb=args.seek_row_group_mb, version=small_info, sequences=small_count,
                         index_seconds=round(index_seconds, 3))
            log(f"row_group_mb {args.seek_row_group_mb}")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ratios = []
    for base in (r for r in rows if r.tool == "datasets"):
        for mine in (r for r in rows if r.tool == "overton" and r.sequences and "after" not in r.stage):
            ratios.append({"overton": mine.stage, "datasets": base.stage,
                           "wall_ratio": round(mine.per_second / base.per_second, 3),
                           "per_core_ratio": round(mine.per_core / base.per_core, 3)})
    for s in seeks:
        if s.exact is False:
            warnings.append(f"{s.method} ({s.config}): the sequence resumed at g={s.g} is not the uninterrupted "
                            f"epoch's")
    print(markdown(rows, ratios, seeks))
    ids = checks["stored_ids"]
    print(f"\nstored token ids: {ids['bytes'] / MB:.2f} MB in {ids['files']} files for {ids['tokens']:,} tokens "
          f"({ids['bytes_per_token']} bytes a token), token index {ids['index_bytes'] / MB:.2f} MB")
    for warning in warnings:
        print(f"WARNING: {warning}")
    results = {
        "packages": {name: version_of(name) for name in ("datasets", "tokenizers", "transformers", "pyarrow", "numpy")},
        "threads": "default (tokenizer Rayon pool, pyarrow pools)" if args.parallel else
                   "one: TOKENIZERS_PARALLELISM=false, pyarrow cpu and io pools of 1",
        "per_core": "tokens / CPU seconds of the benchmark process (time.process_time, all threads)",
        "input_mb": round(input_mb, 2),
        "version": info,
        "seq_len": SEQ_LEN,
        "seed": SEED,
        "vocab": args.vocab,
        "tokenizer_training_seconds": round(training.seconds, 3),
        "shuffle_buffer": SHUFFLE_BUFFER,
        "rounds": args.rounds,
        "rows": [r.as_dict() for r in rows],
        "ratios": ratios,
        "resume_seek": [s.as_dict() for s in seeks],
        "extra_runs": small,
        "checks": checks,
        "warnings": warnings,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    save_results("loader", argv, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
