"""Damage is caught where it enters: a parent version's files are checked as a build links them (with a
checksum cache that makes the nightly check cost a stat per file), and the training loader reads versions
through the same guarded reader as every other command."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from overton.corpus import dataset
from overton.corpus.checksums import CACHE_FILE, ChecksumCache
from overton.corpus.dataset import Version, list_versions
from overton.corpus.workspace import Workspace
from overton.pipelines.build import build
from overton.spiders.ingest import ingest
from tests.conftest import french_text, write_jsonl
from tests.test_train_run import base, workspace  # noqa: F401 - the tiny training workspace and its fixture

BIN = Path(sys.executable).parent


def _add_raw(ws: Workspace, name: str, documents: int = 12) -> None:
    rng = random.Random(name)
    records = [{"id": f"{name}-{i}", "text": french_text(rng, 80)} for i in range(documents)]
    assert ingest(ws, [write_jsonl(ws.root.parent / f"{name}.jsonl", records)], "speeches").refused_count == 0


def _build(ws: Workspace) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "overton"), "build", "-w", str(ws.root), "--quiet"], capture_output=True,
                          text=True, timeout=300)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _flip_in_place(path: Path, restore_mtime: bool) -> None:
    """One bit of the middle byte, written into the same inode; the size never changes."""
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(before.st_size // 2)
        byte = handle.read(1)[0]
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte ^ 0x01]))
    if restore_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert (path.stat().st_mtime_ns == before.st_mtime_ns) == restore_mtime


@pytest.mark.parametrize("restore_mtime", [False, True], ids=["mtime-changed", "mtime-restored"])
def test_a_damaged_parent_file_stops_the_build_until_it_is_restored(tmp_path: Path, restore_mtime: bool):
    ws = Workspace.init(tmp_path / "ws")
    _add_raw(ws, "first")
    v1 = build(ws, jobs=1, progress=False).version
    _add_raw(ws, "second")
    v2 = build(ws, jobs=1, progress=False).version  # links v0001's files: their sha256 are now in the cache
    entry = v1.files("data")[0]
    shard = v2.file_path(entry)
    assert os.path.samefile(shard, v1.file_path(entry))
    assert (ws.state / CACHE_FILE).is_file()
    original, everything = shard.read_bytes(), _files(ws.datasets)
    _flip_in_place(shard, restore_mtime)
    _add_raw(ws, "third")

    done = _build(ws)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"overton: error: {v2.path}/{entry['path']}: sha256 differs from manifest; the parent version is damaged: "
        "restore it from a backup or a published copy, or rebuild from raw (`overton build` in a new workspace)"]
    assert list_versions(ws.datasets / "overton") == ["v0001", "v0002"]
    assert not (ws.datasets / "overton" / "v0003").exists()
    after = _files(ws.datasets)
    assert sorted(after) == sorted(everything)
    assert [name for name in after if after[name] != everything[name]] == [
        f"overton/{v.name}/{entry['path']}" for v in (v1, v2)]  # the one damaged inode, seen from both versions
    record = json.loads(sorted(ws.runs.glob("*-build.json"))[-1].read_text())
    assert (record["status"], record["exit_code"]) == ("failed", 1)

    with open(shard, "r+b") as handle:  # restored from a backup
        handle.write(original)
    done = _build(ws)
    assert done.returncode == 0, done.stderr
    v3 = Version.open(ws.datasets / "overton")
    assert v3.name == "v0003" and v3.verify() == [] and v2.verify() == []
    assert os.path.samefile(v3.file_path(entry), shard)


def test_the_checksum_cache_spares_the_rehash_of_an_unchanged_parent(tmp_path: Path, monkeypatch):
    hashed: list[Path] = []

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    real = dataset.sha256_file
    monkeypatch.setattr(dataset, "sha256_file", counting)
    ws = Workspace.init(tmp_path / "ws")
    _add_raw(ws, "first")
    v1 = build(ws, jobs=1, progress=False).version
    _add_raw(ws, "second")
    hashed.clear()
    v2 = build(ws, jobs=1, progress=False).version
    assert sorted(hashed) == sorted(v2.path / e["path"] for e in v1.manifest["files"])  # cold: every parent file
    _add_raw(ws, "third")
    hashed.clear()
    v3 = build(ws, jobs=1, progress=False).version
    added = [e for e in v2.manifest["files"] if e not in v1.manifest["files"]]
    assert added and sorted(hashed) == sorted(v3.path / e["path"] for e in added)  # v0001's are known: same inodes
    _add_raw(ws, "fourth")
    hashed.clear()
    v4 = build(ws, jobs=1, progress=False).version
    assert len(hashed) == len([e for e in v3.manifest["files"] if e not in v2.manifest["files"]])
    (ws.state / CACHE_FILE).write_bytes(b"not a database: a disk error, say" * 100)
    _add_raw(ws, "fifth")
    hashed.clear()
    v5 = build(ws, jobs=1, progress=False).version  # an unreadable cache only costs a rehash
    assert v5.name == "v0005" and len(hashed) == len(v4.manifest["files"])
    assert v5.verify() == []


def test_the_cache_trusts_an_inode_only_while_size_mtime_and_ctime_hold(tmp_path: Path):
    path = tmp_path / "part-00000.parquet"
    path.write_bytes(os.urandom(4096))
    with ChecksumCache(tmp_path / CACHE_FILE) as cache:
        cache.record(path.stat(), "digest")
        assert cache.lookup(path.stat()) == "digest"
        os.link(path, tmp_path / "linked")  # a new link moves the ctime: known again only once recorded
        assert cache.lookup(path.stat()) is None
        cache.record(path.stat(), "digest")
        assert cache.lookup((tmp_path / "linked").stat()) == "digest"  # the same inode by either name
        before = path.stat()
        time.sleep(0.01)
        _flip_in_place(path, restore_mtime=True)  # same inode, size and mtime: only the ctime tells
        assert path.stat().st_ctime_ns != before.st_ctime_ns
        assert cache.lookup(path.stat()) is None
    with ChecksumCache(tmp_path / CACHE_FILE) as cache:  # what was recorded outlives the process
        cache.record(path.stat(), "again")
    with ChecksumCache(tmp_path / CACHE_FILE) as cache:
        assert cache.lookup(path.stat()) == "again"


def test_training_on_a_manifest_that_leaves_its_version_is_refused(base, tmp_path: Path):  # noqa: F811
    ws = workspace(base, tmp_path / "ws")
    folder = ws / "datasets" / "overton" / "v0001"
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["files"][0]
    outside = (folder / "../../x.parquet").resolve()
    outside.write_bytes((folder / entry["path"]).read_bytes())  # a real shard there, that must not be read
    entry["path"] = "../../x.parquet"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run([str(BIN / "overton"), "train", "-w", str(ws), "--quiet"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"overton: error: {folder}/manifest.json: refusing file path "
                                        "'../../x.parquet' outside the version folder"]
