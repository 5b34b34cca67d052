"""The sha256 of local files, remembered so that checking a parent version before linking it costs a stat.

A build hard-links every file of its parent version into the new one and checks each against the
parent's manifest first. Rehashing 100 GB every night would take longer than the build itself, so
the digest of a file is kept in ``state/checksums.sqlite3`` under its device and inode (hard links
share them: a file hashed once stays known through every later version) together with its size,
modification time and change time (ctime). Any write to a file moves its ctime, and no command can
set a ctime back short of changing the system clock, so an unchanged entry means unchanged bytes,
unless the damage happened below the file system (a failing disk): ``overton verify`` always
rehashes for that.

SQLite in WAL mode keeps the file consistent through a crash: at worst the last records are lost
and those files are hashed again. A cache file that is not a sound database is replaced by an
empty one, as it only saves time.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

CACHE_FILE = "checksums.sqlite3"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS files (file TEXT PRIMARY KEY, size INTEGER NOT NULL, "
           "mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)")
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


def _file(stat: os.stat_result) -> str:
    """The inode, as text: device and inode numbers can exceed SQLite's signed 64-bit integers."""
    return f"{stat.st_dev}:{stat.st_ino}"


class ChecksumCache:
    """Digests by (device, inode), valid while size, mtime_ns and ctime_ns are those recorded."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        if db is None:
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
            db = self._connect()
        assert db is not None, "a new SQLite file is a sound database"
        self.db = db

    def _connect(self) -> sqlite3.Connection | None:
        """The cache opened, or None when its file is not a sound database."""
        db = sqlite3.connect(self.path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            sound = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorname not in _DAMAGED:
                db.close()
                raise
            sound = False
        if not sound:
            db.close()
            return None
        db.execute(_SCHEMA)
        return db

    def lookup(self, stat: os.stat_result) -> str | None:
        """The digest recorded for this inode if it has not changed since, else None."""
        row = self.db.execute("SELECT sha256 FROM files WHERE file = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ?",
                              (_file(stat), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)).fetchone()
        return row[0] if row else None

    def record(self, stat: os.stat_result, digest: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                            (_file(stat), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, digest))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ChecksumCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
