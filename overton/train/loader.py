"""The streaming training loader: dataset versions -> one seeded global stream of packed token sequences.

How the stream is defined (and why it survives any resume):

* **Documents** are the rows of a version's ``data`` files, after the filters (sources, date range,
  speakers) and without the held-out evaluation documents (a hash of the id, or a date cut-off).
  A source weight ``w`` repeats each of its documents ``floor(w)`` times per epoch, plus once more with
  probability ``w - floor(w)`` (decided by a hash of seed, epoch and id, not by a random generator).
  The :class:`Task` says what a document becomes: its text followed by EOS (``text``), or, for a
  document that carries a question, the question-answer pair written with the chat template and
  followed by EOS, with only the answer's tokens counted in the loss (``chat``).
* **Epoch order**: the row groups of the data files are shuffled with ``seed`` and the epoch, and the
  documents inside each row group too. ``text``: the concatenation is cut into sequences of ``seq_len``
  tokens (the tail of an epoch that does not fill a sequence is dropped). ``chat``: pairs are packed
  whole, in that order, into sequences of at most ``seq_len`` tokens, each padded with EOS (labels
  ``-100``, which the loss ignores); a pair longer than ``seq_len`` keeps its question and the start of
  its answer, and a pair whose question alone fills ``seq_len`` is skipped and counted. Epochs follow
  each other into one infinite stream of sequences numbered 0, 1, 2, ...
* **Token ids are stored once**: the first use of a data file with a tokenizer (and task) tokenizes it,
  one row group at a time, into ``<cache>/tokens-<tokenizer>-<task>/<file sha256>.u16`` (``.u32`` when the
  vocabulary does not fit 16 bits) beside a small index of each document's token count
  (:func:`token_index`). Every later read, resume and run maps these ids; a version that hard-links its
  parent's files reuses the parent's ids. Seeking needs no reading: sequence ``j`` of an epoch is found
  by a binary search over cumulative counts (``text``) or in the packing's table of first pairs (``chat``).
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
from overton.corpus.config import CHAT_TEMPLATE, check_chat_template
from overton.corpus.dataset import Version, open_versions
from overton.corpus.errors import UserError

_INDEX_COLUMNS = ["id", "source", "published_at", "speakers"]
_ENCODE_BYTES = 1 << 20  # text tokenized together while the token ids are stored (a document at least)


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
        # the type of stored token ids: 2 bytes a token when every id fits (GPT-J's 50,400 do), else 4
        self.dtype = np.dtype(np.uint16 if self.backend.get_vocab_size(with_added_tokens=True) <= 1 << 16
                              else np.uint32)

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


# ---------------------------------------------------------------- the task


IGNORE = -100  # the label of a position the loss skips (transformers' causal-LM loss ignores -100)


@dataclass(frozen=True)
class Task:
    """What a document becomes in the stream: its whole text (``text``), or a question-answer pair (``chat``)."""

    kind: str = "text"
    template: str = CHAT_TEMPLATE

    def __post_init__(self) -> None:
        if self.kind not in ("text", "chat"):
            raise UserError(f"[train] task must be \"text\" or \"chat\", got {self.kind!r}")
        if self.kind == "chat":
            try:
                check_chat_template(self.template)
            except ValueError as error:
                raise UserError(str(error)) from None

    @property
    def chat(self) -> bool:
        return self.kind == "chat"

    @property
    def key(self) -> str:
        """The task's part of the token cache's name (the ids depend on the template)."""
        return f"chat-{hashlib.sha256(self.template.encode()).hexdigest()[:12]}" if self.chat else "text"

    @property
    def columns(self) -> list[str]:
        return ["text", "meta"] if self.chat else ["text"]

    def encode(self, tokenizer: Tokenizer, table: pa.Table) -> tuple[list[list[int]], list[int]]:
        """Each row's token ids, EOS last, and how many of them are the prompt (no ids: not a pair)."""
        texts = table.column("text").to_pylist()
        eos = tokenizer.eos_id
        if not self.chat:
            return [[*ids, eos] for ids in tokenizer.encode(texts)], [0] * len(texts)
        questions = [_question(meta) for meta in table.column("meta").to_pylist()]
        pairs = [i for i, (q, a) in enumerate(zip(questions, texts, strict=True)) if q and a and a.strip()]
        before, after = self.template.split("{answer}")
        prompts = tokenizer.encode([before.replace("{question}", questions[i]) for i in pairs])
        answers = tokenizer.encode([texts[i] + after for i in pairs])
        ids: list[list[int]] = [[] for _ in texts]
        lengths = [0] * len(texts)
        for i, prompt, answer in zip(pairs, prompts, answers, strict=True):
            ids[i], lengths[i] = [*prompt, *answer, eos], len(prompt)
        return ids, lengths


def _question(meta: str | None) -> str | None:
    """``meta.question`` of a document, when it is a non-blank string."""
    question = json.loads(meta).get("question") if meta else None
    return question.strip() if isinstance(question, str) and question.strip() else None


# ---------------------------------------------------------------- the token index and the stored ids


def _token_folder(cache: Path, tokenizer: Tokenizer, task: Task) -> Path:
    return cache / f"tokens-{tokenizer.fingerprint}-{task.key}"


def _ids_path(folder: Path, entry: dict[str, Any], dtype: np.dtype) -> Path:
    return folder / f"{entry['sha256']}.u{dtype.itemsize * 8}"


def token_index(version: Version, entries: tuple[dict[str, Any], ...], tokenizer: Tokenizer, cache: Path,
                task: Task = Task()) -> pa.Table:
    """One row per document of ``entries`` that gives tokens: file (its number in ``entries``), row group, row,
    tokens (EOS included), prompt (tokens the loss skips), start (offset in the file's stored ids), id, source,
    date, speakers.

    Each file is tokenized once per tokenizer and task (:func:`_file_index`); later calls read the small
    per-file tables.
    """
    folder = _token_folder(cache, tokenizer, task)
    pieces = []
    for number, entry in enumerate(entries):
        table = _file_index(version, entry, tokenizer, task, folder)
        tokens = table.column("tokens").to_numpy()
        pieces.append(table.add_column(0, "file", pa.array(np.full(table.num_rows, number, np.int32)))
                      .add_column(5, "start", pa.array(np.cumsum(tokens) - tokens, pa.int64())))
    return pa.concat_tables(pieces) if pieces else pa.table({})


def _file_index(version: Version, entry: dict[str, Any], tokenizer: Tokenizer, task: Task, folder: Path) -> pa.Table:
    """The index of one data file, its token ids stored beside it (the index, written last, commits both).

    Reads one row group at a time and tokenizes about ``_ENCODE_BYTES`` of its text at a time (the ids of a
    whole row group, as Python lists, would take about 60 bytes a token), so memory stays at one row group's
    text and a chunk's ids whatever the file's size. An ids file whose size does not match its index
    (damaged, truncated) is made again.
    """
    path, ids_path = folder / f"{entry['sha256']}.parquet", _ids_path(folder, entry, tokenizer.dtype)
    if path.is_file():
        index = pq.read_table(path)
        stored = int(pc.sum(index.column("tokens")).as_py() or 0) * tokenizer.dtype.itemsize
        if ids_path.is_file() and ids_path.stat().st_size == stored:
            return index
    pieces = []
    with atomic_path(ids_path) as tmp, open(tmp, "wb") as out, version.open_file(entry) as handle:
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=[*task.columns, *_INDEX_COLUMNS])
            rows, lengths, prompts = [], [], []
            for first, count in _chunks(table.column("text"), _ENCODE_BYTES):
                ids, prompt = task.encode(tokenizer, table.slice(first, count))
                kept = [i for i, doc in enumerate(ids) if doc]
                rows += [first + i for i in kept]
                lengths += [len(ids[i]) for i in kept]
                prompts += [prompt[i] for i in kept]
                np.fromiter(itertools.chain.from_iterable(ids[i] for i in kept), tokenizer.dtype,
                            count=sum(len(ids[i]) for i in kept)).tofile(out)
            pieces.append(pa.table({
                "row_group": pa.array(np.full(len(rows), group, np.int32)), "row": pa.array(rows, pa.int32()),
                "tokens": pa.array(lengths, pa.int64()), "prompt": pa.array(prompts, pa.int32()),
                **{name: table.column(name).take(pa.array(rows, pa.int64())) for name in _INDEX_COLUMNS}}))
        schema = pa.schema([("row_group", pa.int32()), ("row", pa.int32()), ("tokens", pa.int64()),
                            ("prompt", pa.int32()), *(parquet.schema_arrow.field(name) for name in _INDEX_COLUMNS)])
    index = pa.concat_tables(pieces) if pieces else schema.empty_table()
    with atomic_path(path) as tmp:
        pq.write_table(index, tmp)
    return index


def _chunks(texts: pa.ChunkedArray, limit: int) -> Iterator[tuple[int, int]]:
    """(first row, rows) of consecutive runs of ``texts`` of about ``limit`` bytes, each of one text at least."""
    first, size = 0, 0
    for row, length in enumerate(pc.binary_length(texts).to_numpy(zero_copy_only=False).tolist()):
        if size and size + length > limit:
            yield first, row - first
            first, size = row, 0
        size += length
    if first < len(texts):
        yield first, len(texts) - first


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
    """The global stream of ``seq_len``-token sequences; ``example(g)`` reads only what sequence ``g`` needs."""

    def __init__(self, url: str, tokenizer: Tokenizer, seq_len: int, seed: int, cache: Path,
                 selection: Selection = Selection(), epochs: int | None = None, follow: bool = False,
                 segments: list[dict[str, Any]] | None = None, poll_seconds: float = 60.0,
                 evaluation: bool = False, task: Task = Task()):
        self.url, self.tokenizer, self.seq_len, self.seed = url, tokenizer, seq_len, seed
        self.cache, self.selection, self.follow, self.poll_seconds = cache, selection, follow, poll_seconds
        self.evaluation, self.task = evaluation, task
        versions = open_versions(url)
        self.versions = {v.name: v for v in versions}
        if segments:
            self.segments = [Segment(**s) for s in segments]
        else:
            first = versions[-1]
            self.segments = [Segment(first.name, [f["path"] for f in first.files("data")],
                                     1 if evaluation else epochs)]
        self._indexes: dict[int, tuple[tuple[dict[str, Any], ...], pa.Table]] = {}
        self._epochs: dict[tuple[int, int], _Epoch] = {}
        self._ids: dict[str, np.ndarray] = {}  # the stored ids of each data file, mapped

    def state_segments(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.segments]

    # -- locating a sequence --

    def _index(self, segment: int) -> tuple[tuple[dict[str, Any], ...], pa.Table]:
        """The data files of a segment and their token index (made on first use)."""
        if segment not in self._indexes:
            seg = self.segments[segment]
            version = self._version(seg.version)
            paths = set(seg.paths)
            entries = tuple(f for f in version.files("data") if f["path"] in paths)
            self._indexes[segment] = entries, token_index(version, entries, self.tokenizer, self.cache, self.task)
        return self._indexes[segment]

    def _epoch(self, segment: int, epoch: int) -> _Epoch:
        key = (segment, epoch)
        if key not in self._epochs:
            entries, index = self._index(segment)
            self._epochs[key] = _Epoch(self, entries, index, segment, epoch)
        return self._epochs[key]

    def ids(self, entry: dict[str, Any]) -> np.ndarray:
        """The stored token ids of a data file (memory-mapped: only the pages a sequence touches are read)."""
        sha = entry["sha256"]
        if sha not in self._ids:
            path = _ids_path(_token_folder(self.cache, self.tokenizer, self.task), entry, self.tokenizer.dtype)
            empty = path.stat().st_size == 0  # numpy cannot map an empty file
            self._ids[sha] = np.empty(0, self.tokenizer.dtype) if empty else \
                np.memmap(path, self.tokenizer.dtype, mode="r")
        return self._ids[sha]

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
                    what = "question-answer pairs" if self.task.chat else "documents"
                    raise UserError(f"{self.url}: the selected {what} do not fill one sequence of "
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

    def example(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequence ``g``: its token ids and its labels (the ids, with ``IGNORE`` where the loss skips a token)."""
        segment, epoch, j = self.locate(g)
        return self._epoch(segment, epoch).example(j)

    def sequence(self, g: int) -> np.ndarray:
        """The token ids of sequence ``g``."""
        return self.example(g)[0]

    def count(self) -> int | None:
        """Sequences in the stream when it is finite (an evaluation split, or epochs without follow)."""
        if self.follow and not self.evaluation:
            return None
        if any(s.epochs is None for s in self.segments):
            return None
        return sum(self._epoch(n, e).sequences for n, s in enumerate(self.segments) for e in range(s.epochs))

    def selected_tokens(self) -> int:
        """Tokens of one epoch of the first segment (the dry run's "tokens in the selected data"), padding aside."""
        return self._epoch(0, 0).tokens

    def describe(self) -> str:
        """What the first epoch holds, in one line (chat: the pairs cut or skipped to fit ``seq_len``)."""
        epoch = self._epoch(0, 0)
        if not self.task.chat:
            return f"{len(epoch.docs):,} documents, {epoch.tokens:,} tokens an epoch"
        return (f"chat: {len(epoch.docs):,} question-answer pairs, {epoch.tokens:,} tokens in {epoch.sequences:,} "
                f"sequences an epoch ({epoch.tokens / max(1, epoch.sequences * self.seq_len):.0%} filled); "
                f"{epoch.truncated:,} answers cut at seq_len {self.seq_len}, {epoch.skipped:,} pairs skipped "
                "(the question alone fills seq_len)")


class _Epoch:
    """One epoch of one segment: the documents (pairs) in order, their token counts, where each sequence starts."""

    def __init__(self, stream: PackedStream, entries: tuple[dict[str, Any], ...], index: pa.Table, segment: int,
                 epoch: int):
        self.stream, self.entries = stream, entries
        keep, held = stream.selection.masks(index)
        chosen = held if stream.evaluation else keep & ~held
        times = stream.selection.multiplicity(index, stream.seed, epoch) * chosen if not stream.evaluation \
            else chosen.astype(np.int64)
        self.files = index.column("file").to_numpy()
        self.starts = index.column("start").to_numpy()
        self.prompts = index.column("prompt").to_numpy()
        tokens = index.column("tokens").to_numpy()
        length = stream.seq_len
        self.truncated = self.skipped = 0  # chat: pairs cut to seq_len, pairs whose question alone fills it
        if stream.task.chat:
            fits = self.prompts < length
            self.truncated = int(np.count_nonzero(chosen & fits & (tokens > length)))
            self.skipped = int(np.count_nonzero(chosen & ~fits))
            times = np.where(fits, times, 0)
        groups = index.column("row_group").to_numpy()
        units = sorted({(int(f), int(g)) for f, g in zip(self.files, groups, strict=True)})
        rng = np.random.default_rng([stream.seed, segment, epoch, int(stream.evaluation)])
        order = rng.permutation(len(units))
        position = {unit: i for i, unit in enumerate(units)}
        members: dict[int, list[int]] = {}
        for i in np.flatnonzero(times > 0).tolist():
            members.setdefault(position[(int(self.files[i]), int(groups[i]))], []).append(i)
        docs = [np.empty(0, np.int64)]
        for u in order.tolist():  # row groups in a seeded order, the documents of each in one too
            listed = np.array(members.get(u, []), np.int64)
            repeated = np.repeat(listed, times[listed])
            unit_rng = np.random.default_rng([stream.seed, segment, epoch, int(stream.evaluation), u])
            docs.append(repeated[unit_rng.permutation(len(repeated))])
        self.docs = np.concatenate(docs)  # index rows in epoch order
        self.lengths = np.minimum(tokens[self.docs], length) if stream.task.chat else tokens[self.docs]
        self.ends = np.cumsum(self.lengths, dtype=np.int64)  # token offset where each document ends
        self.tokens = int(self.ends[-1]) if self.docs.size else 0
        if stream.task.chat:
            self.firsts = _pack(self.lengths, length)
            self.sequences = len(self.firsts) - 1
        else:
            self.sequences = self.tokens // length

    def _ids(self, d: int, a: int, b: int) -> np.ndarray:
        """Tokens ``[a, b)`` of document ``d`` of the epoch order, from the stored ids."""
        row = self.docs[d]
        start = int(self.starts[row])
        return self.stream.ids(self.entries[self.files[row]])[start + a: start + b]

    def example(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        length = self.stream.seq_len
        if not self.stream.task.chat:  # the epoch's tokens [j * seq_len, (j + 1) * seq_len)
            start, end = j * length, (j + 1) * length
            first = int(np.searchsorted(self.ends, start, side="right"))
            last = int(np.searchsorted(self.ends, end - 1, side="right"))
            pieces = []
            for d in range(first, last + 1):
                begin = int(self.ends[d] - self.lengths[d])
                pieces.append(self._ids(d, max(start, begin) - begin, min(end, int(self.ends[d])) - begin))
            ids = np.concatenate(pieces).astype(np.int32)
            return ids, ids
        ids = np.full(length, self.stream.tokenizer.eos_id, np.int32)  # padding: EOS, never learned
        labels = np.full(length, IGNORE, np.int32)
        at = 0
        for d in range(int(self.firsts[j]), int(self.firsts[j + 1])):
            n, prompt = int(self.lengths[d]), int(self.prompts[self.docs[d]])
            ids[at: at + n] = self._ids(d, 0, n)
            labels[at + prompt: at + n] = ids[at + prompt: at + n]
            at += n
        return ids, labels


def _pack(lengths: np.ndarray, seq_len: int) -> np.ndarray:
    """The first pair of each sequence (and the count of pairs, last): pairs in order, each whole in one
    sequence, a new sequence begun when the next pair does not fit in what is left (every length <= seq_len)."""
    firsts, used = [0], 0
    for d, n in enumerate(lengths.tolist()):
        if used + n > seq_len:
            firsts.append(d)
            used = 0
        used += n
    if lengths.size:
        firsts.append(lengths.size)
    return np.array(firsts, np.int64)


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
                  workers: int = 1) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(global index of the first sequence, ids, labels: arrays micro_batch x seq_len) for this rank, from
    ``first_step`` on; worker ``k`` of ``K`` yields every ``K``-th micro-batch (the ``DataLoader`` round-robin
    restores the order)."""
    count = 0
    step = first_step
    while True:
        sequences = layout.rank_sequences(step)
        for m in range(layout.accumulation):
            if count % workers == worker:
                indices = sequences[m * layout.micro_batch:(m + 1) * layout.micro_batch]
                try:
                    ids, labels = _stack([stream.example(g) for g in indices])
                except StopIteration:
                    return
                yield indices[0], ids, labels
            count += 1
        step += 1


def eval_batches(stream: PackedStream, world: int, rank: int,
                 micro_batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This rank's share of a finite (evaluation) stream, as (ids, labels) arrays: the same number of batches on
    every rank."""
    total = stream.count() or 0
    per_rank = total // (world * micro_batch) * micro_batch
    mine = [rank + world * i for i in range(per_rank)]
    for start in range(0, per_rank, micro_batch):
        yield _stack([stream.example(g) for g in mine[start:start + micro_batch]])


def _stack(examples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.stack([i for i, _ in examples])
    return ids, ids if all(i is labels for i, labels in examples) else np.stack([labels for _, labels in examples])
