"""The numbers of a dataset version that its data card, plots and release page show.

Everything is measured from the version's files, read row group by row group and only the columns each
number needs (the text once, for words, characters and tokens together), so memory stays bounded by a row
group plus a few counters per source, speaker and year, and four bytes per kept document for the length
quantiles. Every file is checked against its manifest sha256 first: a damaged shard stops the statistics
(:class:`Refused`) instead of becoming one. The result is plain JSON, deterministic: sources and counters
sorted, ties broken by name, floats rounded to 4 decimals.

"words" are whitespace-separated tokens (Python's ``str.split()``), "characters" are code points
(``len(text)``), "tokens" are the ids of a Hugging Face ``tokenizer.json`` without special tokens.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overton.corpus.dataset import Version
from overton.corpus.errors import UserError

_DATA_COLUMNS = ["text", "published_at", "speakers", "kind", "license", "redistributable", "profile", "meta",
                 "dup_cluster", "dup_cluster_size"]
_REJECT_COLUMNS = ["source", "reject_reason", "reject_step"]
_ENCODE_BYTES = 1 << 20  # text handed to the tokenizer at once (a document at least)
_SPLIT_BYTES = 4 << 20  # text split into words at once
_UNKNOWN = "unknown"  # the key of a missing licence, kind or profile
_TOP_SOURCE_SPEAKERS, _TOP_SPEAKERS, _TOP_ROLES, _TOP_CLUSTERS = 10, 20, 10, 10
_BINS_PER_DECADE = 4


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _ratio(part: int | None, whole: int | None) -> float | None:
    return _round(part / whole) if part is not None and whole else None


def _sorted_counts(counter: Counter) -> dict[str, int]:
    """Counts keyed by text, in the order of their keys (years as numbers, names alphabetically)."""
    return {str(key): counter[key] for key in sorted(counter)}


def _top(counter: Counter, n: int) -> list[list]:
    """The ``n`` largest counts, ties broken by name."""
    return [[key, count] for key, count in sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]]


def _value_counts(array: pa.Array) -> Counter:
    """Counts of each value, a missing one (null) counted under ``unknown``."""
    counts = Counter()
    for item in pc.value_counts(array).to_pylist():
        counts[_UNKNOWN if item["values"] is None else item["values"]] += item["counts"]
    return counts


# ---------------------------------------------------------------- tokenizer


def load_tokenizer(path: str | Path):
    """A ``tokenizers.Tokenizer`` from a folder holding tokenizer.json or from the file itself; a path that holds
    no usable tokenizer is the user's to fix."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"tokenizer {path}: no such folder holding a tokenizer.json, nor such a file")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as error:  # tokenizers raises a bare Exception for a file it cannot parse
        raise UserError(f"tokenizer {file}: not a tokenizer.json ({str(error).splitlines()[0]})") from None


def _slices(text: pa.Array, nbytes: int) -> Iterator[pa.Array]:
    """Consecutive zero-copy slices of ``text`` of about ``nbytes`` of UTF-8 each (a document at least), so that
    what is derived from a slice (its words, its encodings) stays small whatever the row group."""
    ends = np.cumsum(pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False))
    start = 0
    while start < len(text):
        before = ends[start - 1] if start else 0
        end = max(start + 1, int(np.searchsorted(ends, before + nbytes, side="right")))
        yield text.slice(start, end - start)
        start = end


def count_tokens(tokenizer, text: pa.Array) -> int:
    """Token ids of the texts without special tokens."""
    return sum(len(encoding.ids) for piece in _slices(text, _ENCODE_BYTES)
               for encoding in tokenizer.encode_batch_fast(piece.to_pylist(), add_special_tokens=False))


# ---------------------------------------------------------------- per-batch measures


def word_counts(text: pa.Array) -> np.ndarray:
    """Whitespace-separated words of each text, as ``len(t.split())`` counts them (Arrow splits on the same
    Unicode whitespace, but keeps empty pieces where spaces repeat or lead; those are not words)."""
    counts = [_word_counts(piece) for piece in _slices(text, _SPLIT_BYTES)]
    return np.concatenate(counts) if counts else np.zeros(0, np.int64)


def _word_counts(text: pa.Array) -> np.ndarray:
    pieces = pc.utf8_split_whitespace(text)
    nonempty = pc.greater(pc.binary_length(pc.list_flatten(pieces)), 0).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(pieces).to_numpy()
    return np.bincount(parents[nonempty], minlength=len(text)).astype(np.int64)


def _pairs(speakers: pa.Array, field: str) -> pa.Table:
    """Distinct (document index, speaker ``field``) pairs of a batch, empty and missing values left out."""
    flat = pc.list_flatten(speakers)
    table = pa.table({"doc": pc.list_parent_indices(speakers), "value": pc.utf8_trim_whitespace(flat.field(field))})
    table = table.filter(pc.greater(pc.fill_null(pc.utf8_length(table["value"]), 0), 0))
    return table.group_by(["doc", "value"]).aggregate([])


def _per_value(pairs: pa.Table) -> Counter:
    """Documents per value, from distinct (document, value) pairs."""
    counted = pairs.group_by("value").aggregate([("doc", "count")])
    return Counter(dict(zip(counted["value"].to_pylist(), counted["doc_count"].to_pylist(), strict=True)))


def _parties(meta: pa.Array) -> Counter:
    """Documents per party named by ``meta.party`` (a name or a list of names)."""
    counts = Counter()
    for value in meta.filter(pc.fill_null(pc.match_substring(meta, '"party"'), False)).to_pylist():
        party = json.loads(value).get("party")
        names = party if isinstance(party, list) else [party]
        counts.update({str(name).strip() for name in names if name is not None and str(name).strip()})
    return counts


class _Source:
    """What is counted of one source's kept documents while its files stream by."""

    def __init__(self, tokenized: bool):
        self.documents = self.characters = self.undated = self.with_speakers = 0
        self.tokens = 0 if tokenized else None
        self.words: list[np.ndarray] = []
        self.years, self.profiles, self.licences, self.kinds = Counter(), Counter(), Counter(), Counter()
        self.redistributable = Counter({"yes": 0, "no": 0, "unknown": 0})
        self.speakers = Counter()

    def add(self, batch: pa.RecordBatch, tokenizer) -> tuple[Counter, Counter]:
        """Count one batch; returns its (roles, parties) document counts for the version-wide totals."""
        text = batch.column("text")
        self.documents += batch.num_rows
        self.words.append(word_counts(text))
        self.characters += pc.sum(pc.utf8_length(text)).as_py() or 0
        if tokenizer is not None:
            self.tokens += count_tokens(tokenizer, text)
        years = pc.year(batch.column("published_at"))
        self.undated += years.null_count
        self.years.update({year: n for year, n in _value_counts(years.drop_null()).items()})
        self.profiles.update(_value_counts(batch.column("profile")))
        self.licences.update(_value_counts(batch.column("license")))
        self.kinds.update(_value_counts(batch.column("kind")))
        flags = _value_counts(batch.column("redistributable"))
        self.redistributable.update({"yes": flags[True], "no": flags[False], "unknown": flags[_UNKNOWN]})
        names = _pairs(batch.column("speakers"), "name")
        self.with_speakers += len(pc.unique(names["doc"]))
        self.speakers.update(_per_value(names))
        return _per_value(_pairs(batch.column("speakers"), "role")), _parties(batch.column("meta"))

    def summary(self, edges: np.ndarray) -> tuple[dict[str, Any], list[int]]:
        """The source's entry of ``sources``, and its counts per bin of the shared length histogram."""
        words = np.concatenate(self.words) if self.words else np.zeros(0, np.int64)
        total = int(words.sum())
        quantiles = {"p10": None, "p50": None, "p90": None, "max": None}
        if len(words):
            p10, p50, p90 = np.quantile(words, [0.1, 0.5, 0.9], method="inverted_cdf")
            quantiles = {"p10": int(p10), "p50": int(p50), "p90": int(p90), "max": int(words.max())}
        histogram, _ = np.histogram(np.maximum(words, edges[0]), bins=edges)
        entry = {
            "documents": self.documents, "words": total, "characters": self.characters, "tokens": self.tokens,
            "tokens_per_word": _ratio(self.tokens, total),
            "years": [min(self.years), max(self.years)] if self.years else None, "undated": self.undated,
            "by_year": _sorted_counts(self.years), "profiles": _sorted_counts(self.profiles),
            "licences": _sorted_counts(self.licences), "redistributable": dict(self.redistributable),
            "kinds": _sorted_counts(self.kinds), "words_quantiles": quantiles,
            "speakers": {"documents_with": self.with_speakers, "distinct": len(self.speakers),
                         "top": _top(self.speakers, _TOP_SOURCE_SPEAKERS)},
        }
        return entry, [int(n) for n in histogram]


def length_edges(longest: int) -> np.ndarray:
    """Word-count bin edges, log-spaced (4 a decade: 1, 2, 3, 6, 10, 18, 32, 56, 100, ...) from 1 to the power
    of ten at or above the longest document; the last bin holds its upper edge, a 0-word document the first."""
    decades = max(1, math.ceil(math.log10(max(longest, 1))))
    return np.unique(np.round(10 ** (np.arange(decades * _BINS_PER_DECADE + 1) / _BINS_PER_DECADE)).astype(np.int64))


# ---------------------------------------------------------------- the version


def _checked(version: Version, kind: str) -> Iterable[dict[str, Any]]:
    """The files of ``kind``, each checked against its manifest sha256 just before it is read."""
    for entry in version.files(kind):
        version.ensure(entry)
        yield entry


def _top_share(version: Version, top: set[str]) -> int:
    """Documents naming at least one speaker of ``top`` (a second pass over the speakers column only)."""
    documents = 0
    for entry in version.files("data"):
        for batch in version.batches(entry, columns=["speakers"]):
            pairs = _pairs(batch.column("speakers"), "name")
            documents += len(pc.unique(pairs["doc"].filter(pc.is_in(pairs["value"], pa.array(sorted(top))))))
    return documents


def _rejected(version: Version) -> dict[str, Any]:
    by_reason, by_step, by_source = Counter(), Counter(), {}
    for entry in _checked(version, "rejected"):
        for batch in version.batches(entry, columns=_REJECT_COLUMNS):
            by_reason.update(_value_counts(batch.column("reject_reason")))
            by_step.update(_value_counts(batch.column("reject_step")))
            grouped = pa.table(batch).group_by(["source", "reject_reason"]).aggregate([([], "count_all")])
            for source, reason, n in zip(*(grouped[c].to_pylist() for c in ("source", "reject_reason", "count_all")),
                                         strict=True):
                by_source.setdefault(source, Counter())[reason or _UNKNOWN] += n
    return {"total": sum(by_reason.values()), "by_reason": _sorted_counts(by_reason),
            "by_step": _sorted_counts(by_step),
            "by_source": {source: _sorted_counts(by_source[source]) for source in sorted(by_source)}}


def version_stats(version: Version, tokenizer: str | Path | None = None) -> dict[str, Any]:
    """The statistics of ``version``: ``totals``, per-source counts (``sources``), the shared word-count
    ``length_histogram``, ``speakers``, ``rejected``, near-duplicate ``clusters`` and ``imbalance``; token counts
    with the tokenizer at ``tokenizer`` (a folder holding tokenizer.json, or the file) when one is given, else
    None. Every key is a string, every number an int or a float of 4 decimals, so ``json.dumps`` writes the
    same text for the same version."""
    encoder = load_tokenizer(tokenizer) if tokenizer is not None else None
    sources: dict[str, _Source] = {}
    roles, parties, cluster_sizes, largest = Counter(), Counter(), Counter(), []
    for entry in _checked(version, "data"):
        source = sources.setdefault(entry["source"], _Source(encoder is not None))
        for batch in version.batches(entry, columns=_DATA_COLUMNS):
            batch_roles, batch_parties = source.add(batch, encoder)
            roles.update(batch_roles)
            parties.update(batch_parties)
            clustered = pa.table(batch.select(["dup_cluster", "dup_cluster_size"])).filter(
                pc.greater(pc.fill_null(batch.column("dup_cluster_size"), 1), 1))
            sizes = clustered["dup_cluster_size"].to_pylist()
            cluster_sizes.update(sizes)
            largest += zip(clustered["dup_cluster"].to_pylist(), sizes, strict=True)
    rejected = _rejected(version)

    longest = max((int(w.max()) for s in sources.values() for w in s.words if len(w)), default=0)
    edges = length_edges(longest)
    summaries = {name: sources[name].summary(edges) for name in sorted(sources)}
    per_source = {name: entry for name, (entry, _) in summaries.items()}

    speakers = sum((s.speakers for s in sources.values()), Counter())
    with_speakers = sum(s.with_speakers for s in sources.values())
    top_speakers = _top(speakers, _TOP_SPEAKERS)
    top10 = {name for name, _ in top_speakers[:10]}

    documents = sum(s.documents for s in sources.values())
    words = sum(entry["words"] for entry in per_source.values())
    tokens = sum(s.tokens for s in sources.values()) if encoder is not None else None
    years = sum((s.years for s in sources.values()), Counter())
    dated = sum(years.values())
    by_documents = _top(Counter({name: s.documents for name, s in sources.items()}), 1)
    by_year = _top(years, 1)
    return {
        "name": version.manifest.get("name"),
        "version": version.name,
        "parent": version.manifest.get("parent"),
        "tokenizer": str(tokenizer) if tokenizer is not None else None,
        "totals": {"documents": documents, "words": words,
                   "characters": sum(s.characters for s in sources.values()), "tokens": tokens,
                   "tokens_per_word": _ratio(tokens, words), "rejected": rejected["total"]},
        "sources": per_source,
        "length_histogram": {"edges": [int(e) for e in edges],
                             "counts": {name: counts for name, (_, counts) in summaries.items()}},
        "speakers": {"documents_with": with_speakers, "distinct": len(speakers), "top": top_speakers,
                     "roles": _top(roles, _TOP_ROLES)},
        "rejected": rejected,
        "clusters": {"clusters": sum(cluster_sizes.values()),
                     "documents_removed": rejected["by_reason"].get("near_duplicate", 0),
                     "size_histogram": {str(size): cluster_sizes[size] for size in sorted(cluster_sizes)},
                     "largest": [[cid, size] for cid, size in sorted(largest, key=lambda c: (-c[1], c[0]))[
                         :_TOP_CLUSTERS]]},
        "imbalance": {
            "largest_source": [by_documents[0][0], _ratio(by_documents[0][1], documents)] if documents else None,
            "top_year": [by_year[0][0], _ratio(by_year[0][1], dated)] if dated else None,
            "top10_speakers_share": _ratio(_top_share(version, top10), with_speakers) if with_speakers else None,
            "party": _sorted_counts(parties) or None,
        },
    }


# ---------------------------------------------------------------- changes


def _ids(version: Version, entries: list[dict[str, Any]]) -> pa.Table:
    """(id, source) of the documents in ``entries``, each file checked first."""
    tables = [pa.table({"id": pa.array([], pa.string()), "source": pa.array([], pa.string())})]
    for entry in entries:
        version.ensure(entry)
        tables += [pa.table(b) for b in version.batches(entry, columns=["id", "source"])]
    return pa.concat_tables(tables, promote_options="permissive").combine_chunks()


def _counts_outside(table: pa.Table, other: pa.Table) -> Counter:
    """Documents per source of ``table`` whose id is not in ``other``."""
    outside = table.filter(pc.invert(pc.is_in(table["id"], value_set=other["id"].combine_chunks())))
    return _value_counts(outside["source"])


def changes(version: Version, previous: Version | None) -> dict[str, Any]:
    """Documents added and removed per source since ``previous``, by document id.

    A file both versions list with the same path and sha256 (a child version hard-links its parent's shards)
    holds the same documents in both, and ids are unique within a version, so only the other files are read."""
    shared = set()
    if previous is not None:
        shared = {(e["path"], e["sha256"]) for e in version.files("data")} & {
            (e["path"], e["sha256"]) for e in previous.files("data")}

    def own(v: Version) -> list[dict[str, Any]]:
        return [e for e in v.files("data") if (e["path"], e["sha256"]) not in shared]

    new = _ids(version, own(version))
    old = _ids(previous, own(previous)) if previous is not None else new.slice(0, 0)
    added, removed = _counts_outside(new, old), _counts_outside(old, new)
    names = {e.get("source") for v in (version, previous) if v is not None for e in v.files("data")}
    names = sorted(name for name in names | set(added) | set(removed) if name is not None)
    return {"previous": previous.name if previous is not None else None,
            "sources": {name: {"added": added[name], "removed": removed[name]} for name in names}}
