"""Dataset versions: ``datasets/<name>/v<NNNN>/`` with ``data/``, ``rejected/`` and ``manifest.json``.

The manifest is written last and is what makes a version exist: a folder without one is invisible
to every reader. It lists every file with rows, bytes and sha256, the build parameters, the parent
version and the raw inputs consumed. Paths in a manifest are relative to the version folder and may
never leave it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa

from overton.corpus.atomic import read_json, sha256_file
from overton.corpus.errors import UserError
from overton.corpus.shards import iter_batches

MANIFEST = "manifest.json"
FORMAT = "overton.dataset/1"
VERSION_RE = re.compile(r"^v(\d{4,})$")


def version_name(number: int) -> str:
    return f"v{number:04d}"


def version_number(name: str) -> int:
    match = VERSION_RE.match(name)
    if not match:
        raise ValueError(f"not a version name: {name!r}")
    return int(match.group(1))


def list_versions(dataset_dir: Path) -> list[str]:
    """Committed versions (those with a manifest), oldest first."""
    if not dataset_dir.is_dir():
        return []
    names = [p.name for p in dataset_dir.iterdir() if VERSION_RE.match(p.name) and (p / MANIFEST).is_file()]
    return sorted(names, key=version_number)


def member_path(root: Path, relative: str) -> Path:
    """Resolve a manifest path inside ``root``; refuse anything that would leave it."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in relative:
        raise UserError(f"{root / MANIFEST}: refusing file path {relative!r} outside the version folder")
    resolved = (root / pure).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UserError(f"{root / MANIFEST}: refusing file path {relative!r} outside the version folder")
    return resolved


@dataclass
class Version:
    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: Path) -> Version:
        """Open a version folder, or the latest committed version of a dataset folder."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
        if not (path / MANIFEST).is_file():
            versions = list_versions(path)
            if not versions:
                raise UserError(f"{path}: not a dataset version (no {MANIFEST}) and holds no committed version")
            path = path / versions[-1]
        try:
            manifest = read_json(path / MANIFEST)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path / MANIFEST}: not valid JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError(f"{path / MANIFEST}: not an overton manifest (expected format {FORMAT!r})")
        for entry in manifest["files"]:
            member_path(path, entry["path"])
        return cls(path=path, manifest=manifest)

    @property
    def name(self) -> str:
        return self.path.name

    def files(self, kind: str = "data", source: str | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.manifest["files"]
            if f["kind"] == kind and (source is None or f.get("source") == source)
        ]

    def file_path(self, entry: dict[str, Any]) -> Path:
        return member_path(self.path, entry["path"])

    def iter_batches(
        self, kind: str = "data", columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        for entry in self.files(kind):
            yield from iter_batches(self.file_path(entry), columns=columns)

    def verify(self) -> list[str]:
        """Recompute sizes and checksums; return one line per file that differs (empty: all good)."""
        problems = []
        for entry in self.manifest["files"]:
            path = self.file_path(entry)
            if not path.is_file():
                problems.append(f"{entry['path']}: missing")
            elif path.stat().st_size != entry["bytes"]:
                problems.append(f"{entry['path']}: size {path.stat().st_size} != {entry['bytes']} in manifest")
            elif sha256_file(path) != entry["sha256"]:
                problems.append(f"{entry['path']}: sha256 differs from manifest")
        return problems
