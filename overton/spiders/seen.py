"""The seen-store: what each source's items looked like when last fetched, for incremental crawls.

One SQLite file (``state/seen.sqlite3`` in a workspace) with one row per (source, item key): ETag,
Last-Modified, content hash, fetch time and URL. A crawler sends the validators back as conditional
headers (a 304 costs the site almost nothing) and skips items whose content hash has not changed.

One table keyed by (source, key) rather than a table per source: same lookups (the primary key is
an index on source then key), no table names built from user input, one schema to migrate.

Durability: WAL mode; each ``put`` is its own transaction, so a put that returned survives the
process being killed (SIGKILL) -- the write is in the WAL file, which SQLite replays on the next
open. ``synchronous=NORMAL`` means a power cut may forget the last few puts, which only costs
re-fetching those items. ``batch()`` groups many puts into one transaction (all or nothing, one
commit), e.g. to mark a whole raw run as seen once its ``run.json`` exists -- marking an item seen
before its document is committed to ``raw/`` would lose it if the run dies.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    content_hash TEXT,
    fetched_at TEXT NOT NULL,
    url TEXT,
    PRIMARY KEY (source, key)
) WITHOUT ROWID
"""

# The raw runs whose items are recorded above: a crawl killed between committing a raw batch and
# recording its items finds the batch here missing, and records it before fetching anything.
_RUNS = """
CREATE TABLE IF NOT EXISTS runs (
    source TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (source, run_id)
) WITHOUT ROWID
"""

_UPSERT = """
INSERT INTO seen (source, key, etag, last_modified, content_hash, fetched_at, url)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, key) DO UPDATE SET
    etag = excluded.etag, last_modified = excluded.last_modified, content_hash = excluded.content_hash,
    fetched_at = excluded.fetched_at, url = COALESCE(excluded.url, seen.url)
"""


@dataclass(frozen=True)
class Seen:
    source: str
    key: str
    etag: str | None
    last_modified: str | None
    content_hash: str | None
    fetched_at: str  # ISO 8601, UTC
    url: str | None


class SeenStore:
    def __init__(self, path: str | Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: one transaction per put
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.execute(_RUNS)

    def get(self, source: str, key: str) -> Seen | None:
        row = self._db.execute(
            "SELECT source, key, etag, last_modified, content_hash, fetched_at, url FROM seen"
            " WHERE source = ? AND key = ?",
            (source, key),
        ).fetchone()
        return Seen(*row) if row else None

    def put(
        self,
        source: str,
        key: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        content_hash: str | None = None,
        url: str | None = None,
        fetched_at: datetime | None = None,
    ) -> None:
        """Record the item as fetched now (or at ``fetched_at``); replaces validators and hash."""
        moment = (fetched_at or datetime.now(UTC)).astimezone(UTC).isoformat()
        self._db.execute(_UPSERT, (source, key, etag, last_modified, content_hash, moment, url))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Puts inside the block are committed together, or not at all if it raises."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def record_run(self, source: str, run_id: str) -> None:
        """Note that the items of raw run ``run_id`` are recorded (call inside the same ``batch()``)."""
        self._db.execute("INSERT OR IGNORE INTO runs (source, run_id) VALUES (?, ?)", (source, run_id))

    def run_recorded(self, source: str, run_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM runs WHERE source = ? AND run_id = ?", (source, run_id)).fetchone()
        return row is not None

    def is_new_or_changed(self, source: str, key: str, content_hash: str) -> bool:
        seen = self.get(source, key)
        return seen is None or seen.content_hash != content_hash

    def conditional_headers(self, source: str, key: str) -> dict[str, str]:
        """``If-None-Match`` / ``If-Modified-Since`` from the last fetch; empty for a new item."""
        seen = self.get(source, key)
        headers = {}
        if seen and seen.etag:
            headers["If-None-Match"] = seen.etag
        if seen and seen.last_modified:
            headers["If-Modified-Since"] = seen.last_modified
        return headers

    def keys(self, source: str) -> list[str]:
        """Item keys of ``source``, sorted."""
        return [key for (key,) in self._db.execute("SELECT key FROM seen WHERE source = ? ORDER BY key", (source,))]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SeenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
