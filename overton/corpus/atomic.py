"""Crash-safe file writing: temporary name, fsync, rename, fsync of the folder.

A reader never sees a half-written file: until the rename, the data lives under a hidden
``.<name>.tmp-<pid>`` name that every lister in overton ignores and that later runs clean up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and TMP_MARK in path.name


def temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> list[Path]:
    """fsync every file and folder under ``root``, deepest first; the files, sorted."""
    files = []
    for folder, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = Path(folder, name)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            files.append(path)
        fsync_dir(Path(folder))
    return sorted(files)


def commit(tmp: Path, final: Path) -> None:
    """fsync ``tmp`` and rename it to ``final``; the folder entry is fsynced too."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, obj: Any) -> None:
    """Canonical JSON (sorted keys, two-space indent, final newline): same object, same bytes."""
    write_bytes(path, (json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def remove_temporaries(root: Path) -> int:
    """Delete leftovers of killed writers under ``root``; returns how many were removed."""
    removed = 0
    if root.exists():
        for path in root.rglob(f".*{TMP_MARK}*"):
            if path.is_file():
                path.unlink()
                removed += 1
    return removed
