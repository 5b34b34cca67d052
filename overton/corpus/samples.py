"""Sample documents for the release page: a few kept ones per source, a few rejected ones per reason with the
evidence their step recorded, and the largest duplicate clusters with the copies that were removed.

The choice is a fixed rule, so the same version gives the same page: within each group, the documents whose
id has the smallest sha256 (a spread over the whole group, unlike the smallest ids, which favour one key range).
Two passes keep it cheap and bounded: the first reads only ids, reasons and evidence to choose; the second
reads the shown columns from only the files that hold a chosen document. Memory: the chosen rows, plus the
id and kept id of every removed duplicate (to find the largest clusters, through chains such as an exact
copy of a near duplicate).

A document's text is shown only where ``shows_text(row)`` says it may be (the release's gate); otherwise
its excerpt is None and the page links to where it was published.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from overton.corpus.dataset import Version

#: Rejections that remove a copy of a document that stays (not ``duplicate_id``: another text under one id).
DUPLICATE_REASONS = frozenset({"exact_duplicate", "near_duplicate"})
_SHOWN = ["id", "source", "title", "url", "license", "redistributable", "text"]
_REJECTED = ["id", "reject_reason", "source", "title", "url", "license", "redistributable", "text", "reject_step",
             "reject_detail"]  # id and reason first: they name a rejected row


def _rank(doc_id: str) -> bytes:
    return hashlib.sha256(doc_id.encode("utf-8")).digest()


class _Chooser:
    """The ``count`` rows of smallest rank (by id) seen in each group, with the file each is in, kept small as
    rows stream in. A row is named by a key whose first item is its id (a rejected row: its id and reason, since
    a rejected id may come twice)."""

    def __init__(self, count: int):
        self.count = count
        self.groups: dict[str, set[tuple[bytes, tuple, str]]] = defaultdict(set)

    def offer(self, group: str, key: tuple, path: str) -> None:
        chosen = self.groups[group]
        chosen.add((_rank(key[0]), key, path))
        if len(chosen) > 4 * self.count:
            self.groups[group] = set(sorted(chosen)[: self.count])

    def result(self) -> dict[str, list[tuple[tuple, str]]]:
        """group -> [(key, path)], groups sorted by name, rows by rank."""
        return {group: [(key, path) for _, key, path in sorted(chosen)[: self.count]]
                for group, chosen in sorted(self.groups.items())}


def _excerpt(text: str, chars: int, redact: Callable[[str], str] | None) -> str:
    """The first ``chars`` characters (cut at a space near the end, then ' …'), redacted if asked: redaction
    runs on a margin beyond the cut, so that an address or a number is never half shown."""
    head = redact(text[: chars + 200]) if redact else text[: chars + 200]
    if len(head) <= chars and len(text) <= chars + 200:
        return head
    cut = head[:chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > chars * 0.8 else cut).rstrip() + " …"


def _document(row: dict[str, Any], shows_text: Callable[[dict], bool], chars: int,
              redact: Callable[[str], str] | None) -> dict[str, Any]:
    doc = {"id": row["id"], "source": row["source"], "title": row["title"], "url": row["url"],
           "license": row["license"], "characters": len(row["text"]),
           "text": _excerpt(row["text"], chars, redact) if shows_text(row) else None}
    if "reject_reason" in row:
        detail = json.loads(row["reject_detail"]) if row["reject_detail"] else {}
        doc.update(reason=row["reject_reason"], step=row["reject_step"], detail=detail,
                   jaccard=detail.get("jaccard"))
    return doc


class _Reader:
    """Reads a version's files, each checked against its manifest sha256 before its first read."""

    def __init__(self, version: Version):
        self.version = version
        self._checked: set[str] = set()

    def _batches(self, entry: dict[str, Any], names: list[str]) -> Iterator[pa.RecordBatch]:
        if entry["path"] not in self._checked:
            self.version.ensure(entry)
            self._checked.add(entry["path"])
        yield from self.version.batches(entry, names)

    def columns(self, entry: dict[str, Any], names: list[str]) -> Iterator[tuple]:
        """The values of ``names``, row by row, streamed row group by row group."""
        for batch in self._batches(entry, names):
            yield from zip(*(batch.column(name).to_pylist() for name in names), strict=True)

    def rows(self, kind: str, wanted: Iterable[tuple[tuple, str]], names: list[str]) -> dict[tuple, dict[str, Any]]:
        """key -> row of ``names`` for the ``(key, path)`` pairs in ``wanted`` (a key: the values of the first
        ``names``, the id first), reading only the files named and converting only the rows whose id is wanted."""
        by_path: dict[str, set[tuple]] = defaultdict(set)
        for key, path in wanted:
            by_path[path].add(key)
        found = {}
        for entry in self.version.files(kind):
            keys = by_path.get(entry["path"])
            if not keys:
                continue
            ids = pa.array(sorted({key[0] for key in keys}), pa.string())
            width = len(next(iter(keys)))
            for batch in self._batches(entry, names):
                for row in batch.filter(pc.is_in(batch.column("id"), value_set=ids)).to_pylist():
                    key = tuple(row[name] for name in names[:width])
                    if key in keys:
                        found[key] = row
        return found


def _root(doc_id: str, duplicate_of: dict[str, str]) -> str:
    """The document at the end of a chain of duplicates (an exact copy of a near duplicate, ...)."""
    seen = {doc_id}
    while duplicate_of.get(doc_id, doc_id) not in seen:
        doc_id = duplicate_of[doc_id]
        seen.add(doc_id)
    return doc_id


def collect_samples(
    version: Version,
    shows_text: Callable[[dict], bool],
    *,
    per_group: int = 3,
    clusters: int = 5,
    excerpt_chars: int = 600,
    redact: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """``{"kept": {source: [doc]}, "rejected": {reason: [doc]}, "clusters": [{"kept", "size", "removed"}],
    "excerpt_chars": excerpt_chars}``.

    A doc is ``{"id", "source", "title", "url", "license", "characters", "text"}`` (``text``: an excerpt of
    about ``excerpt_chars``, or None where ``shows_text`` hides it; ``characters``: the whole text's length);
    rejected docs add ``reason``, ``step``, ``detail`` (the parsed evidence) and ``jaccard`` (a near
    duplicate's estimated similarity to the kept document; None otherwise). Clusters are the ``clusters``
    largest, largest first, each with up to ``per_group`` of its removed copies; ``size`` counts all of them
    and the kept one. ``redact`` (text -> text), when given, is applied to every excerpt: rejected documents
    may have left the build before its PII step.
    """
    reader = _Reader(version)
    by_reason = _Chooser(per_group)
    duplicate_of: dict[str, str] = {}
    removed: dict[str, tuple[tuple, str]] = {}  # removed duplicate -> its key and file
    for entry in version.files("rejected"):
        for doc_id, reason, detail in reader.columns(entry, ["id", "reject_reason", "reject_detail"]):
            by_reason.offer(reason, (doc_id, reason), entry["path"])
            target = json.loads(detail or "{}").get("duplicate_of") if reason in DUPLICATE_REASONS else None
            if target and target != doc_id:
                duplicate_of[doc_id] = target
                removed[doc_id] = ((doc_id, reason), entry["path"])
    members: dict[str, list[str]] = defaultdict(list)
    for doc_id in duplicate_of:
        members[_root(doc_id, duplicate_of)].append(doc_id)

    by_source = _Chooser(per_group)
    roots_in: dict[str, str] = {}
    for entry in version.files("data"):
        for (doc_id,) in reader.columns(entry, ["id"]):
            by_source.offer(entry["source"], (doc_id,), entry["path"])
            if doc_id in members:
                roots_in[doc_id] = entry["path"]
    # a chain may end outside the kept documents (at one a later step rejected): only kept ones make clusters
    largest = sorted(roots_in, key=lambda root: (-len(members[root]), root))[:clusters]
    shown_removed = {root: sorted(members[root], key=_rank)[:per_group] for root in largest}

    kept_keys, rejected_keys = by_source.result(), by_reason.result()
    kept = reader.rows("data", [pair for pairs in kept_keys.values() for pair in pairs]
                       + [((root,), roots_in[root]) for root in largest], _SHOWN)
    rejected = reader.rows("rejected", [pair for pairs in rejected_keys.values() for pair in pairs]
                           + [removed[i] for ids in shown_removed.values() for i in ids], _REJECTED)

    def document(row: dict[str, Any]) -> dict[str, Any]:
        return _document(row, shows_text, excerpt_chars, redact)

    return {
        "excerpt_chars": excerpt_chars,
        "kept": {source: [document(kept[key]) for key, _ in pairs] for source, pairs in kept_keys.items()},
        "rejected": {reason: [document(rejected[key]) for key, _ in pairs] for reason, pairs in rejected_keys.items()},
        "clusters": [{"kept": document(kept[(root,)]), "size": len(members[root]) + 1,
                      "removed": [document(rejected[removed[i][0]]) for i in shown_removed[root]]} for root in largest],
    }
