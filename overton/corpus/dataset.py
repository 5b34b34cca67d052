"""Dataset versions: ``datasets/<name>/v<NNNN>/`` with ``data/``, ``rejected/`` and ``manifest.json``.

The manifest is written last and is what makes a version exist: a folder without one is invisible
to every reader. It lists every file with rows, bytes and sha256, the build parameters, the parent
version and the raw inputs consumed. Paths in a manifest are relative to the version folder and may
never leave it.

This module is the one reader of versions, for the build, ``inspect``, ``verify``, publishing and the
training loader alike: a version is opened from a local path or any fsspec URL (``memory://``,
``file://``, ``s3://``, ...), its manifest is checked (format, file entries, paths kept inside the
version folder) and every file is opened through :meth:`Version.open_file`, which checks its size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from overton.corpus.atomic import sha256_file
from overton.corpus.checksums import ChecksumCache
from overton.corpus.errors import Refused, UserError
from overton.corpus.shards import iter_batches

MANIFEST = "manifest.json"
FORMAT = "overton.dataset/1"
VERSION_RE = re.compile(r"^v(\d{4,})$")
_ENTRY_FIELDS = {"path": str, "kind": str, "bytes": int, "sha256": str}


def version_name(number: int) -> str:
    return f"v{number:04d}"


def version_number(name: str) -> int:
    match = VERSION_RE.match(name)
    if not match:
        raise ValueError(f"not a version name: {name!r}")
    return int(match.group(1))


def _filesystem(location: str | Path) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """(file system, the folder in it, the location as messages show it) of a local path or an fsspec URL."""
    text = str(location)
    if isinstance(location, Path) or "://" not in text:
        folder = os.path.abspath(text)
        return fsspec.filesystem("file"), folder, folder
    fs, folder = fsspec.core.url_to_fs(text)
    return fs, folder.rstrip("/"), text.rstrip("/")


def _version_names(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    try:
        children = fs.ls(folder, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = [child["name"].rstrip("/").rsplit("/", 1)[-1] for child in children if child["type"] == "directory"]
    committed = [name for name in names if VERSION_RE.match(name) and fs.isfile(f"{folder}/{name}/{MANIFEST}")]
    return sorted(committed, key=version_number)


def list_versions(dataset: str | Path) -> list[str]:
    """Committed versions (those with a manifest) of a dataset folder, oldest first."""
    fs, folder, _ = _filesystem(dataset)
    return _version_names(fs, folder)


def open_versions(location: str | Path) -> list[Version]:
    """A version folder: just it; a dataset folder: every committed version, oldest first."""
    fs, found = _version_folders(location)
    return [Version.load(fs, folder, url) for folder, url in found]


def _version_folders(location: str | Path) -> tuple[fsspec.AbstractFileSystem, list[tuple[str, str]]]:
    """The file system, and (folder, url) of the version at ``location`` or of each committed version there."""
    fs, folder, url = _filesystem(location)
    if fs.isfile(f"{folder}/{MANIFEST}"):
        return fs, [(folder, url)]
    if not fs.exists(folder):
        raise UserError(f"{url}: no such dataset folder")
    names = _version_names(fs, folder)
    if not names:
        raise UserError(f"{url}: not a dataset version (no {MANIFEST}) and holds no committed version")
    return fs, [(f"{folder}/{name}", f"{url}/{name}") for name in names]


def version_of(path: Path) -> tuple[Version, dict[str, Any]] | None:
    """The committed version whose manifest lists the local file ``path``, and its entry; None if there is none."""
    path = Path(os.path.abspath(path))
    for folder in path.parents:
        if VERSION_RE.match(folder.name) and (folder / MANIFEST).is_file():
            version = Version.open(folder)
            relative = path.relative_to(folder).as_posix()
            entry = next((e for e in version.manifest["files"] if e["path"] == relative), None)
            return (version, entry) if entry else None
    return None


def _sha256(handle) -> str:
    return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class Version:
    url: str  # the version folder as messages show it: an absolute local path or an fsspec URL
    manifest: dict[str, Any]
    fs: fsspec.AbstractFileSystem = field(repr=False, compare=False)
    root: str  # the version folder inside ``fs``

    @classmethod
    def open(cls, location: str | Path) -> Version:
        """Open a version folder, or the latest committed version of a dataset folder."""
        fs, found = _version_folders(location)
        return cls.load(fs, *found[-1])

    @classmethod
    def load(cls, fs: fsspec.AbstractFileSystem, folder: str, url: str) -> Version:
        """The version whose manifest is ``folder/manifest.json``, once the manifest is checked."""
        where = f"{url}/{MANIFEST}"
        try:
            manifest = json.loads(fs.cat_file(f"{folder}/{MANIFEST}"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{where}: not valid JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError(f"{where}: not an overton manifest (expected format {FORMAT!r})")
        files = manifest.get("files")
        if not isinstance(files, list):
            raise UserError(f"{where}: 'files' is not a list")
        version = cls(url, manifest, fs, folder)
        for number, entry in enumerate(files):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(k), t) for k, t in _ENTRY_FIELDS.items()):
                raise UserError(f"{where}: files[{number}] needs a path, a kind, bytes and a sha256")
            version.relative(entry["path"])
        return version

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    @property
    def path(self) -> Path:
        """The version folder, for a version on a local file system."""
        if not self.local:
            raise ValueError(f"{self.url} is not on a local file system")
        return Path(self.root)

    @property
    def name(self) -> str:
        return self.root.rsplit("/", 1)[-1]

    def relative(self, path: str) -> str:
        """A manifest path, checked: anything that would leave the version folder is refused."""
        pure = PurePosixPath(path)
        inside = not pure.is_absolute() and ".." not in pure.parts and bool(pure.parts) and "\\" not in path
        if inside and self.local:  # a symbolic link may lead out too
            inside = (Path(self.root) / pure).resolve().is_relative_to(Path(self.root).resolve())
        if not inside:
            raise UserError(f"{self.url}/{MANIFEST}: refusing file path {path!r} outside the version folder")
        return pure.as_posix()

    def _member(self, entry: dict[str, Any]) -> str:
        """The path in ``fs`` of the file of ``entry``."""
        return f"{self.root}/{self.relative(entry['path'])}"

    def files(self, kind: str = "data", source: str | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.manifest["files"]
            if f["kind"] == kind and (source is None or f.get("source") == source)
        ]

    def file_path(self, entry: dict[str, Any]) -> Path:
        """The local path of a file of a version on a local file system."""
        return self.path / self.relative(entry["path"])

    def check(self, entry: dict[str, Any], checksum: bool = True) -> str | None:
        """How the file of ``entry`` differs from the manifest (missing, size, sha256), or None if it does not."""
        path = self._member(entry)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return "missing"
        if info["type"] != "file":
            return "missing"
        if info["size"] != entry["bytes"]:
            return f"size {info['size']} != {entry['bytes']} in manifest"
        if checksum:
            with self._open(path) as handle:
                if _sha256(handle) != entry["sha256"]:
                    return "sha256 differs from manifest"
        return None

    def verify(self) -> list[str]:
        """Recompute sizes and checksums; return one line per file that differs (empty: all good)."""
        return [f"{entry['path']}: {problem}" for entry in self.manifest["files"] if (problem := self.check(entry))]

    def _open(self, path: str):
        return pa.OSFile(path) if self.local else self.fs.open(path, "rb")

    def ensure(self, entry: dict[str, Any], checksum: bool = True) -> None:
        """Refuse (exit 1, naming the file) if the file of ``entry`` differs from the manifest."""
        problem = self.check(entry, checksum)
        if problem:
            raise Refused(f"{self.url}/{entry['path']}: {problem}; the version is damaged "
                          f"(`overton verify {self.url}` checks every file)")

    def open_file(self, entry: dict[str, Any]):
        """A binary handle on the file of ``entry``, once its size matches the manifest (a truncated or partial
        copy stops here, before Parquet misreads it)."""
        self.ensure(entry, checksum=False)
        return self._open(self._member(entry))

    def batches(self, entry: dict[str, Any], columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The record batches of one file, row group by row group."""
        with self.open_file(entry) as handle:
            yield from iter_batches(handle, columns=columns)

    def iter_batches(
        self, kind: str = "data", columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        for entry in self.files(kind):
            yield from self.batches(entry, columns)

    def link_into(self, folder: Path, cache: ChecksumCache) -> list[str]:
        """Hard-link every file into ``folder`` (copy it across file systems), checking each as it goes: the size
        always, the sha256 of what was linked unless ``cache`` knows the inode unchanged. Returns one line per file
        that differs from the manifest, as :meth:`verify` does (empty: all linked and good)."""
        problems = []
        for entry in self.manifest["files"]:
            source, target = self.file_path(entry), folder / entry["path"]
            try:
                before = source.stat()
            except FileNotFoundError:
                problems.append(f"{entry['path']}: missing")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
            after = target.stat()
            if after.st_size != entry["bytes"]:
                problems.append(f"{entry['path']}: size {after.st_size} != {entry['bytes']} in manifest")
                continue
            # linking moves the inode's ctime: trust what was known just before, if the link is that same file
            same = [(s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in (before, after)]
            digest = cache.lookup(before) if same[0] == same[1] else None
            if digest is None:
                digest = sha256_file(target)
            cache.record(after, digest)
            if digest != entry["sha256"]:
                problems.append(f"{entry['path']}: sha256 differs from manifest")
        return problems

    def verify_cached(self, cache: ChecksumCache) -> list[str]:
        """:meth:`verify` for a local version, hashing only the files ``cache`` does not know unchanged."""
        problems = []
        for entry in self.manifest["files"]:
            path = self.file_path(entry)
            try:
                stat = path.stat()
            except FileNotFoundError:
                problems.append(f"{entry['path']}: missing")
                continue
            if stat.st_size != entry["bytes"]:
                problems.append(f"{entry['path']}: size {stat.st_size} != {entry['bytes']} in manifest")
                continue
            digest = cache.lookup(stat) or sha256_file(path)
            cache.record(stat, digest)
            if digest != entry["sha256"]:
                problems.append(f"{entry['path']}: sha256 differs from manifest")
        return problems
