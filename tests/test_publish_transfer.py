"""Publishing a staged release: to a local folder and memory:// (fsspec), and to a Hugging Face stand-in.

Each test stages a small release itself (Parquet shards, a card, a plot, manifest.json written last), publishes
it, and asserts on the report's counts and on the bytes at the destination.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from overton.corpus.destinations import (
    RELEASE_FILE,
    RELEASES_INDEX,
    CommitPlan,
    Entry,
    RemoteFile,
    git_blob_id,
    plan_commit,
    publish_folder,
)
from overton.corpus.errors import Refused, UserError

ROOT = Path(__file__).resolve().parents[1]


def parquet(source: str, first: int, rows: int) -> bytes:
    ids = [f"{source}:{n}" for n in range(first, first + rows)]
    table = pa.table({"id": ids, "text": [f"Texte numéro {n} du corpus." * 20 for n in range(first, first + rows)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def release_files(*, changed: bool = False, added: bool = False) -> dict[str, bytes]:
    """Six files; ``changed``: the second shard rewritten, ``added``: a third shard."""
    files = {
        "README.md": b"---\nlicense: other\n---\n# Corpus\n\nUn corpus de test.\n",
        "index.html": b"<!doctype html><title>Corpus</title><p>Un corpus de test.</p>\n",
        "plots/documents_per_year.png": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)) * 8,
        "data/senat/part-00000.parquet": parquet("senat", 0, 200),
        "data/senat/part-00001.parquet": parquet("senat", 200, 150 + (50 if changed else 0)),
        "metadata/quora/part-00000.parquet": parquet("quora", 0, 100),
    }
    if added:
        files["data/senat/part-00002.parquet"] = parquet("senat", 400, 120)
    return files


def stage(folder: Path, version: str, files: dict[str, bytes], **extra) -> Path:
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    release = {"format": "overton.dataset/1", "name": "corpus", "version": version, "release": extra,
               "files": [{"path": p, "kind": p.split("/")[0], "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                         for p, d in sorted(files.items())]}
    (folder / RELEASE_FILE).write_text(json.dumps(release, sort_keys=True, indent=2) + "\n")
    return folder


def tree(url: str) -> dict[str, bytes]:
    """Every file under ``url`` (a local path or an fsspec URL), by relative path."""
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    return {path[len(root) + 1:]: fs.cat_file(path) for path in fs.find(root)}


def staged_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def quiet(line: str) -> None:
    pass


@pytest.fixture(params=["local", "memory"])
def dest(request, tmp_path) -> str:
    if request.param == "local":
        yield str(tmp_path / "bucket")
    else:
        yield f"memory://{tmp_path.name}/bucket"
        fsspec.filesystem("memory").rm(f"/{tmp_path.name}", recursive=True)


def test_publish_sends_all_then_nothing_then_only_what_changed(tmp_path, dest):
    v1 = stage(tmp_path / "stage1", "v0001", release_files())
    sizes = sum(len(d) for d in release_files().values())

    first = publish_folder(v1, dest, visibility=None, say=quiet, progress=False)
    assert (first.files_sent, first.bytes_sent, first.files_reused, first.files_verified) == (6, sizes, 0, 0)
    assert first.url == f"{dest}/v0001"
    assert tree(f"{dest}/v0001") == staged_tree(v1)

    again = publish_folder(v1, dest, visibility=None, say=quiet, progress=False)
    assert (again.files_sent, again.bytes_sent, again.files_verified, again.files_repaired) == (0, 0, 6, 0)

    v2_files = release_files(changed=True, added=True)
    v2 = stage(tmp_path / "stage2", "v0002", v2_files, parent="v0001")
    second = publish_folder(v2, dest, visibility=None, say=quiet, progress=False)
    new = ("data/senat/part-00001.parquet", "data/senat/part-00002.parquet")
    assert (second.files_sent, second.files_reused, second.files_verified) == (2, 5, 0)
    assert second.bytes_sent == sum(len(v2_files[p]) for p in new)
    assert tree(f"{dest}/v0002") == staged_tree(v2)
    assert tree(f"{dest}/v0001") == staged_tree(v1)  # an earlier release is left as it was

    index = json.loads(tree(dest)[RELEASES_INDEX])
    assert index["name"] == "corpus"
    assert [(r["version"], r["files"], r["bytes"]) for r in index["releases"]] == [
        ("v0001", 6, sizes), ("v0002", 7, sum(len(d) for d in v2_files.values()))]


def test_a_flipped_byte_at_the_destination_is_found_and_sent_again(tmp_path, dest):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    publish_folder(v1, dest, visibility=None, say=quiet, progress=False)
    fs, root = fsspec.core.url_to_fs(f"{dest}/v0001/data/senat/part-00000.parquet")
    damaged = bytearray(fs.cat_file(root))
    damaged[len(damaged) // 2] ^= 0x01
    fs.pipe_file(root, bytes(damaged))
    lines = []

    report = publish_folder(v1, dest, visibility=None, say=lines.append, progress=False)
    assert (report.files_repaired, report.files_sent, report.files_verified) == (1, 1, 5)
    assert tree(f"{dest}/v0001") == staged_tree(v1)
    assert lines == [f"{dest}/v0001/data/senat/part-00000.parquet: other content (sha256 differs) at the "
                     "destination; sending it again"]


def test_a_published_release_is_immutable(tmp_path, dest):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    publish_folder(v1, dest, visibility=None, say=quiet, progress=False)
    before = tree(dest)
    other = stage(tmp_path / "other", "v0001", release_files(changed=True))
    with pytest.raises(Refused, match=r"v0001: release v0001 is already published there with other content; a "
                                      r"release is immutable: publish a new version") as refused:
        publish_folder(other, dest, visibility=None, say=quiet, progress=False)
    assert "\n" not in str(refused.value)
    assert tree(dest) == before


def test_a_staged_file_damaged_since_staging_is_not_published(tmp_path, dest):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    shard = v1 / "data/senat/part-00001.parquet"
    damaged = bytearray(shard.read_bytes())
    damaged[100] ^= 0x01
    shard.write_bytes(bytes(damaged))
    with pytest.raises(Refused, match=r"part-00001\.parquet: its sha256 is not the one in manifest.json; stage the "
                                      r"release again"):
        publish_folder(v1, dest, visibility=None, say=quiet, progress=False)
    published = tree(f"{dest}/v0001")
    assert RELEASE_FILE not in published and "data/senat/part-00001.parquet" not in published
    assert not [p for p in published if ".tmp-" in p]


class Corrupting(LocalFileSystem):
    """The local disk, except that the first ``damaged`` writes of a first shard lose a bit on the way."""

    protocol = ("corrupting",)
    damaged = 0

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("corrupting://"))

    def _open(self, path, mode="rb", **kwargs):
        opened = super()._open(path, mode, **kwargs)
        if "w" in mode and "part-00000.parquet" in path and Corrupting.damaged > 0:
            Corrupting.damaged -= 1
            write = opened.write
            opened.write = lambda data: write(bytes([data[0] ^ 0x40]) + data[1:])
        return opened


@pytest.mark.parametrize("damaged", [1, 2])
def test_a_file_damaged_in_transfer_is_sent_once_more_then_refused(tmp_path, monkeypatch, damaged):
    fsspec.register_implementation("corrupting", Corrupting, clobber=True)
    monkeypatch.setattr(Corrupting, "damaged", damaged)
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    dest = tmp_path / "bucket"
    lines = []
    if damaged == 1:
        report = publish_folder(v1, f"corrupting://{dest}", visibility=None, say=lines.append, progress=False)
        assert (report.files_sent, report.bytes_sent) == (6, sum(len(d) for d in release_files().values())
                                                          + len(release_files()["data/senat/part-00000.parquet"]))
        assert tree(str(dest / "v0001")) == staged_tree(v1)
    else:
        with pytest.raises(Refused, match=r"part-00000\.parquet: still other content \(sha256 differs\) after "
                                          r"sending it again; the destination does not keep what it receives"):
            publish_folder(v1, f"corrupting://{dest}", visibility=None, say=lines.append, progress=False)
        assert not (dest / "v0001" / RELEASE_FILE).exists()  # the release stays unfinished
    assert lines == [f"corrupting://{dest}/v0001/data/senat/part-00000.parquet: other content (sha256 differs) "
                     "after the transfer; sending it again"]


_SLOW_PUBLISH = textwrap.dedent("""
    import sys, time
    import fsspec
    from fsspec.implementations.local import LocalFileSystem
    from overton.corpus.destinations import publish_folder

    class Slow(LocalFileSystem):
        '''The local disk, a file written every 0.4 s: a publish that can be killed between two files.'''
        protocol = ("slow",)

        @classmethod
        def _strip_protocol(cls, path):
            return super()._strip_protocol(str(path).removeprefix("slow://"))

        def _open(self, path, mode="rb", **kwargs):
            opened = super()._open(path, mode, **kwargs)
            if "w" in mode:
                write = opened.write
                def slow(data):
                    written = write(data)
                    opened.flush()
                    time.sleep(0.4)
                    return written
                opened.write = slow
            return opened

    fsspec.register_implementation("slow", Slow)
    publish_folder(__import__("pathlib").Path(sys.argv[1]), "slow://" + sys.argv[2], visibility=None,
                   progress=False)
""")


def test_a_publish_killed_mid_transfer_finishes_on_rerun_without_resending(tmp_path):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    dest = tmp_path / "bucket"
    folder = dest / "v0001"
    process = subprocess.Popen([sys.executable, "-c", _SLOW_PUBLISH, str(v1), str(dest)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a file landed and the next is half-written
            names = [p.name for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
            if any(not n.startswith(".") for n in names) and any(".tmp-" in n for n in names):
                break
            assert process.poll() is None, "the publish ended before it could be killed"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    landed = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                    if p.is_file() and not p.name.startswith("."))
    assert 1 <= len(landed) < 6 and RELEASE_FILE not in landed
    assert any(".tmp-" in p.name for p in folder.rglob("*"))
    assert not (dest / RELEASES_INDEX).exists()

    lines = []
    report = publish_folder(v1, str(dest), visibility=None, say=lines.append, progress=False)
    assert (report.files_verified, report.files_sent) == (len(landed), 6 - len(landed))
    assert lines == [f"{folder}: removed 1 temporary file(s) left by an interrupted publish"]
    assert not [p for p in dest.rglob("*") if ".tmp-" in p.name]

    uninterrupted = tmp_path / "uninterrupted"
    publish_folder(v1, str(uninterrupted), visibility=None, say=quiet, progress=False)
    assert tree(str(folder)) == tree(str(uninterrupted / "v0001")) == staged_tree(v1)


@pytest.mark.parametrize(("where", "message"), [
    ("nosuch://bucket/x", r"nosuch://bucket/x: Protocol not known: nosuch"),
    ("hf://owner/name", r"hf://owner/name: a Hugging Face destination is hf://datasets/OWNER/NAME"),
    ("hf://datasets/owner", r"hf://datasets/owner: a Hugging Face destination is hf://datasets/OWNER/NAME"),
    ("hf://datasets/owner/name@dev", r"drop the @revision"),
    ("memory://bucket/v0001", r"memory://bucket/v0001: names a version folder; pass the folder that holds"),
    ("{staging}/out", r"/out: inside the staging folder"),
    ("{version}/published", r"/published: inside the dataset version .*/datasets/corpus/v0003; publish to a"),
])
def test_destination_mistakes_are_one_line(tmp_path, where, message):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    version = tmp_path / "ws" / "datasets" / "corpus" / "v0003"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match=message) as error:
        publish_folder(v1, where.format(staging=v1, version=version), visibility="public", say=quiet,
                       progress=False)
    assert "\n" not in str(error.value)


def test_a_destination_holding_another_dataset_is_refused(tmp_path):
    dest = str(tmp_path / "bucket")
    publish_folder(stage(tmp_path / "a", "v0001", release_files()), dest, visibility=None, say=quiet,
                   progress=False)
    other = stage(tmp_path / "b", "v0002", release_files())
    release = json.loads((other / RELEASE_FILE).read_text())
    (other / RELEASE_FILE).write_text(json.dumps({**release, "name": "autre"}))
    with pytest.raises(UserError, match="holds releases of the dataset 'corpus', not 'autre'"):
        publish_folder(other, dest, visibility=None, say=quiet, progress=False)
    assert not (tmp_path / "bucket" / "v0002").exists()


# --- Hugging Face Hub ----------------------------------------------------------------------------------------

def test_plan_commit_compares_lfs_by_sha256_and_small_files_by_blob_id():
    local = {"README.md": Entry("README.md", 5, hashlib.sha256(b"hello").hexdigest()),
             "data/a.parquet": Entry("data/a.parquet", 10, "a" * 64),
             "data/b.parquet": Entry("data/b.parquet", 10, "b" * 64)}
    contents = {"README.md": b"hello"}
    remote = {".gitattributes": RemoteFile(".gitattributes", 40, None, "1" * 40),
              "README.md": RemoteFile("README.md", 5, None, git_blob_id(b"hello")),
              "data/a.parquet": RemoteFile("data/a.parquet", 10, "a" * 64, "2" * 40),
              "data/b.parquet": RemoteFile("data/b.parquet", 10, "c" * 64, "3" * 40),
              "data/old.parquet": RemoteFile("data/old.parquet", 10, "d" * 64, "4" * 40)}
    plan = plan_commit(local, remote, lambda path: git_blob_id(contents[path]))
    assert plan == CommitPlan(add=["data/b.parquet"], delete=["data/old.parquet"],
                              keep=["README.md", "data/a.parquet"])
    assert git_blob_id(b"hello") == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"  # git hash-object of "hello"
    changed = plan_commit(local, {**remote, "README.md": RemoteFile("README.md", 5, None, git_blob_id(b"HELLO"))},
                          lambda path: git_blob_id(contents[path]))
    assert changed.add == ["README.md", "data/b.parquet"]


def test_hub_release_is_one_commit_and_a_tag_sending_only_what_changed(tmp_path, hub):
    v1 = stage(tmp_path / "stage1", "v0001", release_files(), visibility="private")
    lines = []
    first = publish_folder(v1, "hf://datasets/elus/corpus", visibility="private", say=lines.append)
    assert lines == ["hf://datasets/elus/corpus: created (private)"]
    assert hub.repos["elus/corpus"].private
    assert (first.files_sent, first.files_reused, first.files_verified, first.deleted) == (6, 0, 0, 0)
    assert first.url == f"{hub.url}/datasets/elus/corpus/tree/v0001"
    assert hub.files("elus/corpus", "v0001") == {**staged_tree(v1), ".gitattributes": hub.files(
        "elus/corpus", "v0001")[".gitattributes"]}
    assert len(hub.puts) == 4  # the binary files went to LFS: three shards and the plot

    again = publish_folder(v1, "hf://datasets/elus/corpus", visibility="private", say=quiet)
    assert (again.files_sent, again.files_verified) == (0, 6)

    files = release_files(changed=True, added=True)
    del files["metadata/quora/part-00000.parquet"]
    v2 = stage(tmp_path / "stage2", "v0002", files, visibility="private")
    second = publish_folder(v2, "hf://datasets/elus/corpus", visibility="private", say=quiet)
    assert (second.files_sent, second.files_reused, second.deleted) == (2, 4, 1)
    assert len(hub.puts) == 6
    at_v2 = hub.files("elus/corpus", "v0002")
    assert {p: d for p, d in at_v2.items() if p != ".gitattributes"} == staged_tree(v2)
    assert hub.files("elus/corpus", "main") == at_v2
    assert "metadata/quora/part-00000.parquet" in hub.files("elus/corpus", "v0001")
    assert len(hub.repos["elus/corpus"].commits) == 3  # the repository's first commit, then one per release


def test_hub_visibility_must_be_said_and_match(tmp_path, hub):
    v1 = stage(tmp_path / "stage", "v0001", release_files(), visibility="public")
    with pytest.raises(UserError, match="needs --public or --private"):
        publish_folder(v1, "hf://datasets/elus/corpus", visibility=None, say=quiet)
    assert hub.repos == {}
    publish_folder(v1, "hf://datasets/elus/corpus", visibility="public", say=quiet)
    assert not hub.repos["elus/corpus"].private
    with pytest.raises(Refused, match=r"hf://datasets/elus/corpus is public: publishing with --private would "
                                      r"change who reads it; pass --public"):
        publish_folder(v1, "hf://datasets/elus/corpus", visibility="private", say=quiet)
    private = stage(tmp_path / "private", "v0002", release_files(), visibility="private")
    with pytest.raises(UserError, match="staged for private readers"):
        publish_folder(private, "hf://datasets/elus/corpus", visibility="public", say=quiet)


def test_hub_credentials_missing_or_wrong_are_one_line_without_the_token(tmp_path, hub, monkeypatch):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UserError) as missing:
        publish_folder(v1, "hf://datasets/elus/corpus", visibility="public", say=quiet)
    assert str(missing.value) == ("hf://datasets/elus/corpus: the Hub refused the credentials (HTTP 401); set "
                                  "HF_TOKEN to a token with write access")
    monkeypatch.setenv("HF_TOKEN", "hf_wrongwrongwrongwrong")
    with pytest.raises(UserError) as wrong:
        publish_folder(v1, "hf://datasets/elus/corpus", visibility="public", say=quiet)
    assert str(wrong.value) == str(missing.value)
    assert hub.repos == {}


def test_hub_tag_holding_other_files_is_refused(tmp_path, hub):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    publish_folder(v1, "hf://datasets/elus/corpus", visibility="public", say=quiet)
    other = stage(tmp_path / "other", "v0001", release_files(changed=True))
    commits = len(hub.repos["elus/corpus"].commits)
    with pytest.raises(Refused, match=r"tag v0001 holds other files than this release \(data/senat/part-00001"
                                      r"\.parquet, manifest.json\); a release is immutable"):
        publish_folder(other, "hf://datasets/elus/corpus", visibility="public", say=quiet)
    assert len(hub.repos["elus/corpus"].commits) == commits


def test_hub_commit_of_a_file_damaged_since_staging_is_not_tagged(tmp_path, hub):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    shard = v1 / "data/senat/part-00000.parquet"
    damaged = bytearray(shard.read_bytes())
    damaged[100] ^= 0x01
    shard.write_bytes(bytes(damaged))
    with pytest.raises(Refused, match=r"commit \w{12} holds other files than this release \(data/senat/part-00000"
                                      r"\.parquet\), so it was not tagged v0001"):
        publish_folder(v1, "hf://datasets/elus/corpus", visibility="public", say=quiet)
    assert hub.repos["elus/corpus"].tags == {}


_HUB_PUBLISH = ("import sys, pathlib; from overton.corpus.destinations import publish_folder; "
                "publish_folder(pathlib.Path(sys.argv[1]), 'hf://datasets/elus/corpus', visibility='public')")


def test_hub_upload_killed_midway_resumes_without_resending(tmp_path, hub):
    v1 = stage(tmp_path / "stage", "v0001", release_files())
    hub.hold_puts_after = 1
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": hub.token,
           "HF_HOME": str(tmp_path / "hf-home")}
    process = subprocess.Popen([sys.executable, "-c", _HUB_PUBLISH, str(v1)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (hub.puts and hub._arrivals > 1):
            assert process.poll() is None, "the publish ended before it could be killed"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    stored = list(hub.puts)
    assert len(stored) == 1 and hub.repos["elus/corpus"].tags == {}
    hub.hold_puts_after = None
    hub.released.set()

    report = publish_folder(v1, "hf://datasets/elus/corpus", visibility="public", say=quiet)
    assert report.files_sent == 6
    assert len(hub.puts) == 4 and stored[0] not in hub.puts[1:]  # each LFS object uploaded once
    assert {p: d for p, d in hub.files("elus/corpus", "v0001").items() if p != ".gitattributes"} == staged_tree(v1)
