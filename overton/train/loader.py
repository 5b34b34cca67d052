"""The streaming training loader: dataset versions -> one seeded global stream of packed token sequences.

How the stream is defined (and why it survives any resume):

* **Documents** are the rows of a version's ``data`` files, after the filters (sources, date range,
  speakers) and without the held-out evaluation documents (a hash of the id, or a date cut-off).
  A source weight ``w`` repeats each of its documents ``floor(w)`` times per epoch, plus once more with
  probability ``w - floor(w)`` (decided by a hash of seed, epoch and id, not by a random generator).
* **Epoch order**: the row groups of the data files (the unit a reader holds in memory) are shuffled
  with ``seed`` and the epoch, and the documents inside each row group too; every document is tokenized
  and followed by EOS; the concatenation is cut into sequences of ``seq_len`` tokens (the tail of an
  epoch that does not fill a sequence is dropped). Epochs follow each other into one infinite stream
  of sequences numbered 0, 1, 2, ...
* **Seeking** needs no reading: the token count of every document is known from an index built once
  per (version, tokenizer) and cached (:func:`token_index`), so the row group holding token ``j * seq_len``
  of an epoch is found by a binary search over cumulative counts, and only that row group is read.
* **Ranks and workers**: optimizer step ``t`` consumes sequences ``[t*B, (t+1)*B)`` (``B`` the global
  batch); rank ``r`` of ``W`` takes the contiguous slice ``r*B/W ... (r+1)*B/W`` of it, in micro-batches;
  loader worker ``k`` of ``K`` builds every ``K``-th micro-batch of its rank, which ``DataLoader`` hands
  out round-robin, so the order never depends on ``K``. The stream is infinite, so no rank ever waits
  for another's last uneven batch.
* **State** is one number: the position (sequences consumed by the whole job). Resuming at position
  ``p`` on any number of processes, with the same global batch, gives the sequences an uninterrupted
  run would have seen next.
* ``follow``: once the epochs of the first version are consumed, the documents that newer versions
  added (their new data files: a version hard-links its parent's files) form the next segment, one
  epoch each; the loader waits for a new version when none is there yet. The segments seen so far are
  part of the state.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.atomic import atomic_path
from overton.corpus.dataset import Version, open_versions
from overton.corpus.errors import UserError

_INDEX_COLUMNS = ["id", "source", "published_at", "speakers"]


# ---------------------------------------------------------------- tokenizer


class Tokenizer:
    """A Hugging Face fast tokenizer from a local folder or file (or, on a connected machine, a hub name)."""

    def __init__(self, name_or_path: str):
        from tokenizers import Tokenizer as HfTokenizer

        path = Path(name_or_path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if file.is_file():
            self.backend = HfTokenizer.from_file(str(file))
            eos = self._eos_from_config(path if path.is_dir() else path.parent)
        elif path.is_absolute() or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1:
            raise UserError(f"tokenizer {name_or_path}: no such folder or tokenizer.json file")
        else:
            from transformers import AutoTokenizer

            try:
                loaded = AutoTokenizer.from_pretrained(name_or_path)
            except (OSError, ValueError) as error:
                raise UserError(f"tokenizer {name_or_path}: no tokenizer.json there, and not loadable by name "
                                f"({str(error).splitlines()[0]})") from None
            self.backend, eos = loaded.backend_tokenizer, loaded.eos_token
        self.eos_id = self.backend.token_to_id(eos or "<|endoftext|>")
        if self.eos_id is None:
            raise UserError(f"tokenizer {name_or_path}: no end-of-text token ({eos or '<|endoftext|>'})")
        self.fingerprint = hashlib.sha256(self.backend.to_str().encode()).hexdigest()[:16]

    @staticmethod
    def _eos_from_config(folder: Path) -> str | None:
        config = folder / "tokenizer_config.json"
        if config.is_file():
            eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token")
            return eos.get("content") if isinstance(eos, dict) else eos
        return None

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (``encode_batch_fast``: the same ids, without the offsets we never use)."""
        return [encoding.ids for encoding in self.backend.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(ids, skip_special_tokens=False)


# ---------------------------------------------------------------- the token index


def _index_path(cache: Path, version: Version, entries: tuple[dict[str, Any], ...], tokenizer: Tokenizer) -> Path:
    key = hashlib.sha256(json.dumps([[e["path"], e["sha256"]] for e in entries]).encode()).hexdigest()[:16]
    return cache / f"tokens-{version.name}-{key}-{tokenizer.fingerprint}.parquet"


def token_index(version: Version, entries: tuple[dict[str, Any], ...], tokenizer: Tokenizer,
                cache: Path) -> pa.Table:
    """One row per document of ``entries``: file, row group, row, tokens (with EOS), id, source, date, speakers.

    Built by reading and tokenizing every document once, then kept in ``cache``: a resume or a second
    run only reads this small table.
    """
    path = _index_path(cache, version, entries, tokenizer)
    if path.is_file():
        return pq.read_table(path)
    pieces = []
    for number, entry in enumerate(entries):
        with version.open_file(entry) as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=["text", *_INDEX_COLUMNS])
                lengths = [len(ids) + 1 for ids in tokenizer.encode(table.column("text").to_pylist())]
                n = table.num_rows
                pieces.append(pa.table({
                    "file": pa.array(np.full(n, number, np.int32)), "row_group": pa.array(np.full(n, group, np.int32)),
                    "row": pa.array(np.arange(n, dtype=np.int32)), "tokens": pa.array(lengths, pa.int64()),
                    **{name: table.column(name) for name in _INDEX_COLUMNS}}))
    index = pa.concat_tables(pieces) if pieces else pa.table({})
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(index, tmp)
    return index


# ---------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """Which documents train, which evaluate, and how often each source counts."""

    sources: tuple[str, ...] = ()  # empty: every source
    since: date | None = None  # published_at >= since
    until: date | None = None  # published_at < until
    speakers: tuple[str, ...] = ()  # a document with one of these speakers (empty: any)
    weights: dict[str, float] = field(default_factory=dict)  # per source, default 1
    eval_fraction: float = 0.0  # held out by a hash of the document id
    eval_since: date | None = None  # held out: published on or after this date ("unseen recent speeches")

    def masks(self, index: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(selected, held out for evaluation) boolean arrays over the index rows."""
        n = index.num_rows
        keep = np.ones(n, bool)
        published = index.column("published_at")
        if self.sources:
            keep &= pc.is_in(index.column("source"), pa.array(list(self.sources))).to_numpy(zero_copy_only=False)
        for bound, compare in ((self.since, pc.greater_equal), (self.until, pc.less)):
            if bound is not None:
                keep &= pc.fill_null(compare(published, _moment(bound)), False).to_numpy(zero_copy_only=False)
        if self.speakers:
            wanted = set(self.speakers)
            keep &= np.array([any(s["name"] in wanted for s in (row or [])) for row in
                              index.column("speakers").to_pylist()], bool)
        held = np.zeros(n, bool)
        if self.eval_fraction > 0:
            held |= _unit_hash(index.column("id").to_pylist(), "eval") < self.eval_fraction
        if self.eval_since is not None:
            recent = pc.fill_null(pc.greater_equal(published, _moment(self.eval_since)), False)
            held |= recent.to_numpy(zero_copy_only=False)
        return keep, held

    def multiplicity(self, index: pa.Table, seed: int, epoch: int) -> np.ndarray:
        """How many times each document appears in this epoch (source weights)."""
        weights = np.array([self.weights.get(s, 1.0) for s in index.column("source").to_pylist()])
        whole = np.floor(weights)
        extra = _unit_hash(index.column("id").to_pylist(), f"{seed}:{epoch}") < (weights - whole)
        return (whole + extra).astype(np.int64)


def _moment(day: date) -> pa.Scalar:
    return pa.scalar(datetime(day.year, day.month, day.day), pa.timestamp("us", tz="UTC"))


def _unit_hash(ids: list[str], salt: str) -> np.ndarray:
    """A stable number in [0, 1) per id."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{salt}:{i}".encode(), digest_size=8).digest(), "big")
                     for i in ids], np.float64) / 2.0**64


# ---------------------------------------------------------------- the stream


@dataclass
class Segment:
    """Documents read for ``epochs`` epochs (None: forever): a version's data files, or those a newer one added."""

    version: str
    paths: list[str]
    epochs: int | None


class PackedStream:
    """The global stream of ``seq_len``-token sequences; ``sequence(g)`` reads only what sequence ``g`` needs."""

    def __init__(self, url: str, tokenizer: Tokenizer, seq_len: int, seed: int, cache: Path,
                 selection: Selection = Selection(), epochs: int | None = None, follow: bool = False,
                 segments: list[dict[str, Any]] | None = None, poll_seconds: float = 60.0,
                 evaluation: bool = False):
        self.url, self.tokenizer, self.seq_len, self.seed = url, tokenizer, seq_len, seed
        self.cache, self.selection, self.follow, self.poll_seconds = cache, selection, follow, poll_seconds
        self.evaluation = evaluation
        versions = open_versions(url)
        self.versions = {v.name: v for v in versions}
        if segments:
            self.segments = [Segment(**s) for s in segments]
        else:
            first = versions[-1]
            self.segments = [Segment(first.name, [f["path"] for f in first.files("data")],
                                     1 if evaluation else epochs)]
        self._epochs: dict[tuple[int, int], _Epoch] = {}
        self._units: dict[tuple[int, int], _Unit] = {}  # the row groups being read: at most two

    def state_segments(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.segments]

    # -- locating a sequence --

    def _epoch(self, segment: int, epoch: int) -> _Epoch:
        key = (segment, epoch)
        if key not in self._epochs:
            seg = self.segments[segment]
            version = self._version(seg.version)
            paths = set(seg.paths)
            entries = tuple(f for f in version.files("data") if f["path"] in paths)
            index = token_index(version, entries, self.tokenizer, self.cache)
            self._epochs[key] = _Epoch(self, version, entries, index, segment, epoch)
        return self._epochs[key]

    def _version(self, name: str) -> Version:
        if name not in self.versions:
            self.versions = {v.name: v for v in open_versions(self.url)}  # oldest first
        if name not in self.versions:
            raise UserError(f"{self.url}: version {name}, which this run has read, is gone")
        return self.versions[name]

    def locate(self, g: int) -> tuple[int, int, int]:
        """(segment, epoch, sequence within the epoch) of global sequence ``g``."""
        for number in itertools.count():
            if number >= len(self.segments):
                self._next_segment()
            seg = self.segments[number]
            epoch = 0
            while seg.epochs is None or epoch < seg.epochs:
                count = self._epoch(number, epoch).sequences
                if count == 0 and seg.epochs is None:
                    raise UserError(f"{self.url}: the selected documents do not fill one sequence of "
                                    f"{self.seq_len} tokens")
                if g < count:
                    return number, epoch, g
                g -= count
                epoch += 1
        raise AssertionError("unreachable: itertools.count() never ends")

    def _next_segment(self) -> None:
        """Wait for a version newer than the last segment's, and make its new documents the next segment."""
        if not self.follow or self.evaluation:
            raise StopIteration
        known = {p for s in self.segments for p in s.paths}
        last = self.segments[-1].version
        while True:
            self.versions = {v.name: v for v in open_versions(self.url)}  # oldest first, perhaps a newer one
            self._version(last)
            names = list(self.versions)
            newer = names[names.index(last) + 1:]
            if newer:
                version = self.versions[newer[0]]
                self.segments.append(Segment(version.name, [f["path"] for f in version.files("data")
                                                            if f["path"] not in known], 1))
                return
            time.sleep(self.poll_seconds)

    def sequence(self, g: int) -> np.ndarray:
        segment, epoch, j = self.locate(g)
        return self._epoch(segment, epoch).sequence(j)

    def count(self) -> int | None:
        """Sequences in the stream when it is finite (an evaluation split, or epochs without follow)."""
        if self.follow and not self.evaluation:
            return None
        if any(s.epochs is None for s in self.segments):
            return None
        return sum(self._epoch(n, e).sequences for n, s in enumerate(self.segments) for e in range(s.epochs))

    def selected_tokens(self) -> int:
        """Tokens of one epoch of the first segment (the dry run's "tokens in the selected data")."""
        return int(self._epoch(0, 0).cumulative[-1]) if self._epoch(0, 0).cumulative.size else 0


class _Epoch:
    """One epoch of one segment: unit order, document order, cumulative token counts."""

    def __init__(self, stream: PackedStream, version: Version, entries, index: pa.Table, segment: int,
                 epoch: int):
        self.stream, self.version, self.entries = stream, version, entries
        keep, held = stream.selection.masks(index)
        chosen = held if stream.evaluation else keep & ~held
        times = stream.selection.multiplicity(index, stream.seed, epoch) * chosen if not stream.evaluation \
            else chosen.astype(np.int64)
        files = index.column("file").to_numpy()
        groups = index.column("row_group").to_numpy()
        rows = index.column("row").to_numpy()
        tokens = index.column("tokens").to_numpy()
        units = sorted({(int(f), int(g)) for f, g in zip(files, groups, strict=True)})
        rng = np.random.default_rng([stream.seed, segment, epoch, int(stream.evaluation)])
        order = rng.permutation(len(units))
        self.units: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # file, row group, rows, their tokens
        position = {unit: i for i, unit in enumerate(units)}
        members: dict[int, list[int]] = {}
        for i in np.flatnonzero(times > 0).tolist():
            members.setdefault(position[(int(files[i]), int(groups[i]))], []).append(i)
        for u in order.tolist():
            listed = np.array(members.get(u, []), np.int64)
            docs = np.repeat(listed, times[listed])
            unit_rng = np.random.default_rng([stream.seed, segment, epoch, int(stream.evaluation), u])
            docs = docs[unit_rng.permutation(len(docs))]
            self.units.append((units[u][0], units[u][1], rows[docs], tokens[docs]))
        self.cumulative = np.cumsum([int(unit[3].sum()) for unit in self.units], dtype=np.int64)
        total = int(self.cumulative[-1]) if self.units else 0
        self.sequences = total // stream.seq_len

    def unit(self, u: int) -> _Unit:
        """Row group ``u`` of the epoch order, its text read once; the stream keeps the last two."""
        cache = self.stream._units
        key = (id(self), u)
        if key not in cache:
            file, group, rows, counts = self.units[u]
            with self.version.open_file(self.entries[file]) as handle:
                texts = pq.ParquetFile(handle).read_row_group(group, columns=["text"]).column("text")
            while len(cache) >= 2:
                del cache[next(iter(cache))]
            cache[key] = _Unit(texts.take(pa.array(rows, pa.int64())), counts, self.stream.tokenizer)
        return cache[key]

    def sequence(self, j: int) -> np.ndarray:
        length = self.stream.seq_len
        start, end = j * length, (j + 1) * length
        u = int(np.searchsorted(self.cumulative, start, side="right"))
        out = []
        while start < end:
            first = int(self.cumulative[u - 1]) if u else 0
            stop = min(end, int(self.cumulative[u]))
            if stop > start:
                out.append(self.unit(u).tokens(start - first, stop - first))
                start = stop
            u += 1
        return np.concatenate(out)


class _Unit:
    """The documents of one row group in epoch order: tokenized on demand, a chunk of documents at a time.

    A seek needs the tokens of the few documents a sequence overlaps; the index gives every document's
    token count, so only the chunks holding them are tokenized (not the whole row group). Reading on,
    chunks behind the position are dropped: memory stays at the row group's text plus a few chunks.
    """

    CHUNK = 16  # documents tokenized together (one encode_batch call)

    def __init__(self, texts: pa.ChunkedArray, counts: np.ndarray, tokenizer: Tokenizer):
        self.texts, self.tokenizer = texts, tokenizer
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # token offset of each document
        self.chunks: dict[int, np.ndarray] = {}

    def _chunk(self, c: int) -> np.ndarray:
        if c not in self.chunks:
            texts = self.texts.slice(c * self.CHUNK, self.CHUNK).to_pylist()
            eos = self.tokenizer.eos_id
            self.chunks[c] = np.concatenate([np.array([*ids, eos], np.int32) for ids in self.tokenizer.encode(texts)])
        return self.chunks[c]

    def tokens(self, a: int, b: int) -> np.ndarray:
        """Tokens ``[a, b)`` of the row group's stream of documents, each followed by EOS."""
        first = int(np.searchsorted(self.starts, a, side="right")) - 1
        last = int(np.searchsorted(self.starts, b, side="left")) - 1  # the document holding token b - 1
        low, high = first // self.CHUNK, last // self.CHUNK
        for c in [c for c in self.chunks if c < low]:
            del self.chunks[c]
        base = int(self.starts[low * self.CHUNK])
        joined = np.concatenate([self._chunk(c) for c in range(low, high + 1)])
        return joined[a - base: b - base]


# ---------------------------------------------------------------- ranks, workers, batches


@dataclass(frozen=True)
class Layout:
    """How the global batch is cut: ``world`` ranks x ``micro_batch`` sequences x ``accumulation`` steps."""

    world: int
    rank: int
    micro_batch: int
    accumulation: int

    @property
    def global_batch(self) -> int:
        return self.world * self.micro_batch * self.accumulation

    def rank_sequences(self, step: int) -> range:
        per_rank = self.micro_batch * self.accumulation
        start = step * self.global_batch + self.rank * per_rank
        return range(start, start + per_rank)


def micro_batches(stream: PackedStream, layout: Layout, first_step: int, worker: int = 0,
                  workers: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(global index of the first sequence, array micro_batch x seq_len) for this rank, from ``first_step`` on;
    worker ``k`` of ``K`` yields every ``K``-th micro-batch (the ``DataLoader`` round-robin restores the order)."""
    count = 0
    step = first_step
    while True:
        sequences = layout.rank_sequences(step)
        for m in range(layout.accumulation):
            if count % workers == worker:
                indices = sequences[m * layout.micro_batch:(m + 1) * layout.micro_batch]
                try:
                    batch = np.stack([stream.sequence(g) for g in indices])
                except StopIteration:
                    return
                yield indices[0], batch
            count += 1
        step += 1



def eval_batches(stream: PackedStream, world: int, rank: int, micro_batch: int) -> Iterator[np.ndarray]:
    """This rank's share of a finite (evaluation) stream: the same number of batches on every rank."""
    total = stream.count() or 0
    per_rank = total // (world * micro_batch) * micro_batch
    mine = [rank + world * i for i in range(per_rank)]
    for start in range(0, per_rank, micro_batch):
        yield np.stack([stream.sequence(g) for g in mine[start:start + micro_batch]])
