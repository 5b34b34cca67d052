"""Exact deduplication over a whole build: one document per key, chosen by a fixed rule.

Used twice: on ``content_sha256`` of the normalised text (reason ``exact_duplicate``) and on ``id``
(reason ``duplicate_id``: two different texts claiming one id). Documents of earlier versions always
win, then preferred ones (in a refilter, those its parent version kept); among the rest the smallest id
wins, then the earliest position in the build order, so the result does not depend on how work was
split or in which order tasks finished.

It is a step that needs every document of its keys before it can decide: :meth:`ExactDedup.index` is fed the
stream once, then :meth:`ExactDedup.apply` is fed the same stream in the same order (the build gives each task
one range of keys: :mod:`overton.pipelines.stages.exact_dedup`). Keys are
held as 16-byte digests, so memory is a few dozen bytes per distinct document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import pyarrow as pa

from overton.pipelines.step import Step

_EARLIER, _PREFERRED, _OTHER = -1, 0, 1  # documents of the parent version come before every new one


def digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()


class ExactDedup(Step):
    def __init__(self, key_column: str, reason: str, known: Iterable[tuple[str, str]] = ()):
        super().__init__()
        self.name = f"dedup_{key_column}"
        self.key_column = key_column
        self.reason = reason
        # key -> (rank, id, position) of its winner
        self._winner: dict[bytes, tuple[int, str, int]] = {
            digest(key): (_EARLIER, doc_id, -1) for key, doc_id in known}
        self._indexed = 0
        self._applied = 0

    def _pairs(self, batch: pa.RecordBatch) -> Iterable[tuple[bytes, str]]:
        keys = batch.column(self.key_column).to_pylist()
        return zip(map(digest, keys), batch.column("id").to_pylist(), strict=True)

    def index(self, batch: pa.RecordBatch, preferred: bool = False) -> None:
        """First pass: remember the winner of every key."""
        rank = _PREFERRED if preferred else _OTHER
        for digest, doc_id in self._pairs(batch):
            candidate = (rank, doc_id, self._indexed)
            self._indexed += 1
            current = self._winner.get(digest)
            if current is None or candidate < current:
                self._winner[digest] = candidate

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Second pass, same stream and order: reject every document that is not its key's winner."""
        rejections = []
        for digest, doc_id in self._pairs(batch):
            _, winner, position = self._winner[digest]
            kept = (winner, position) == (doc_id, self._applied)
            self._applied += 1
            rejections.append(None if kept else (self.reason, {"duplicate_of": winner}))
        return self.reject(batch, rejections)
