"""The corpus model: schema, shards, atomic writes, versions, verify, config, workspace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from overton.cli import main
from overton.corpus.atomic import is_temporary, write_json
from overton.corpus.config import TEMPLATE, Config, parse_config
from overton.corpus.dataset import FORMAT, Version, list_versions
from overton.corpus.errors import Refused, UserError
from overton.corpus.schema import DOCUMENT_SCHEMA, documents_to_batch, make_id, text_sha256
from overton.corpus.shards import ShardSettings, ShardWriter, iter_batches
from overton.corpus.workspace import Workspace


def _doc(i: int, text: str | None = None) -> dict:
    text = text if text is not None else f"Discours numéro {i}. " * 20
    return {
        "id": make_id("test", str(i)),
        "source": "test",
        "url": f"https://example.org/{i}",
        "title": f"Titre {i}",
        "text": text,
        "published_at": datetime(2020, 1, 1 + i % 28, tzinfo=UTC),
        "fetched_at": datetime(2026, 1, 1, tzinfo=UTC),
        "speakers": [{"name": "Claire Vasseur", "role": "ministre"}],
        "kind": "Discours",
        "keywords": ["budget", "école"],
        "thematics": ["Société"],
        "license": "CC0-1.0",
        "redistributable": True,
        "content_sha256": text_sha256(text),
        "meta": json.dumps({"n": i}),
    }


def test_schema_round_trip_through_shards(tmp_path: Path):
    rows = [_doc(i) for i in range(50)]
    writer = ShardWriter(tmp_path, DOCUMENT_SCHEMA, ShardSettings(row_group_bytes=4096))
    for start in range(0, 50, 10):
        writer.write(documents_to_batch(rows[start:start + 10]))
    shards = writer.close()
    assert [s.path.name for s in shards] == ["part-00000.parquet"]
    assert shards[0].rows == 50 and sum(shards[0].row_groups) == 50 and len(shards[0].row_groups) > 1
    back = [row for batch in iter_batches(shards[0].path) for row in batch.to_pylist()]
    assert back == rows
    metadata = pq.ParquetFile(shards[0].path).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_schema(shards[0].path) == DOCUMENT_SCHEMA


def test_shard_writer_rolls_files_at_target_size(tmp_path: Path):
    rows = [_doc(i, text=os.urandom(3000).hex()) for i in range(60)]  # incompressible text
    writer = ShardWriter(tmp_path, DOCUMENT_SCHEMA, ShardSettings(target_bytes=40_000, row_group_bytes=20_000))
    for row in rows:
        writer.write(documents_to_batch([row]))
    shards = writer.close()
    assert len(shards) >= 3
    assert sum(s.rows for s in shards) == 60
    assert all(s.path.stat().st_size < 40_000 + 30_000 for s in shards)
    # a reader never needs more than one row group: each is about row_group_bytes
    for shard in shards:
        metadata = pq.ParquetFile(shard.path).metadata
        assert all(metadata.row_group(g).total_byte_size < 40_000 for g in range(metadata.num_row_groups))


_KILLED_WRITER = """
import sys, time, os
from pathlib import Path
from overton.corpus.schema import DOCUMENT_SCHEMA, documents_to_batch, text_sha256
from overton.corpus.shards import ShardSettings, ShardWriter
writer = ShardWriter(Path(sys.argv[1]), DOCUMENT_SCHEMA, ShardSettings(row_group_bytes=1 << 16))
text = os.urandom(20000).hex()
i = 0
while True:
    writer.write(documents_to_batch([{"id": f"t:{i}", "source": "t", "text": text,
                                      "content_sha256": text_sha256(text)}]))
    i += 1
    if i == 20:
        print("writing", flush=True)
"""


def test_killed_writer_leaves_no_visible_partial_file(tmp_path: Path):
    process = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE)
    assert process.stdout.readline() == b"writing\n"
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    files = list(tmp_path.iterdir())
    assert files, "the writer should have started a file"
    assert all(is_temporary(f) for f in files), files
    assert not list(tmp_path.glob("part-*.parquet"))


def _version(tmp_path: Path) -> Version:
    folder = tmp_path / "datasets" / "d" / "v0001"
    writer = ShardWriter(folder / "data" / "test", DOCUMENT_SCHEMA)
    writer.write(documents_to_batch([_doc(i) for i in range(5)]))
    shard = writer.close()[0]
    from overton.corpus.atomic import sha256_file

    write_json(folder / "manifest.json", {
        "format": FORMAT, "name": "d", "version": "v0001", "parent": None,
        "files": [{"path": "data/test/part-00000.parquet", "kind": "data", "source": "test", "rows": 5,
                   "bytes": shard.path.stat().st_size, "sha256": sha256_file(shard.path)}],
        "counts": {"sources": {}, "input": 5, "kept": 5, "rejected": 0, "reasons": {}},
    })
    return Version.open(folder)


def test_verify_catches_a_flipped_byte(tmp_path: Path, capsys):
    version = _version(tmp_path)
    assert version.verify() == []
    assert main(["verify", str(version.path)]) == 0
    shard = version.path / "data" / "test" / "part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    assert version.verify() == ["data/test/part-00000.parquet: sha256 differs from manifest"]
    assert main(["verify", str(version.path)]) == 1
    assert "data/test/part-00000.parquet: sha256 differs" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "data/../../v0002/x.parquet", "data\\..\\x"])
def test_manifest_pointing_outside_its_version_is_refused(tmp_path: Path, capsys, bad: str):
    version = _version(tmp_path)
    manifest = json.loads((version.path / "manifest.json").read_text())
    manifest["files"][0]["path"] = bad
    (version.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="outside the version folder"):
        Version.open(version.path)
    assert main(["verify", str(version.path)]) == 2
    assert main(["inspect", str(version.path)]) == 2
    assert "outside the version folder" in capsys.readouterr().err


def test_a_version_without_manifest_does_not_exist(tmp_path: Path):
    version = _version(tmp_path)
    (version.path.parent / "v0002" / "data").mkdir(parents=True)
    assert list_versions(version.path.parent) == ["v0001"]
    assert Version.open(version.path.parent).name == "v0001"
    (version.path / "manifest.json").unlink()
    assert list_versions(version.path.parent) == []
    with pytest.raises(UserError, match="no committed version"):
        Version.open(version.path.parent)


def _rename_title_column(shard: Path) -> None:
    """Flip one bit of the footer's schema: Parquet then reads column ``title`` as ``titld``, without an error."""
    data = bytearray(shard.read_bytes())
    data[data.index(b"title") + 4] ^= 0x01
    shard.write_bytes(bytes(data))
    assert "titld" in pq.ParquetFile(shard).schema_arrow.names


def test_inspect_of_a_shard_checks_it_against_its_version(tmp_path: Path, capsys):
    version = _version(tmp_path)
    shard = version.path / "data" / "test" / "part-00000.parquet"
    assert main(["inspect", str(shard)]) == 0
    assert f"  sha256 matches {version.path}/manifest.json\n" in capsys.readouterr().out
    loose = tmp_path / "loose.parquet"
    loose.write_bytes(shard.read_bytes())
    assert main(["inspect", str(loose)]) == 0
    assert "  not a file of a dataset version: no checksum to compare\n" in capsys.readouterr().out

    _rename_title_column(shard)
    assert main(["inspect", str(shard)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"overton: error: {shard}: sha256 differs from manifest; the version is damaged "
                            f"(`overton verify {version.path}` checks every file)\n")


def test_inspect_of_a_version_checks_every_size_and_hashes_what_it_reads(tmp_path: Path, capsys):
    version = _version(tmp_path)
    shard = version.path / "data" / "test" / "part-00000.parquet"
    good = shard.read_bytes()
    assert main(["inspect", str(version.path)]) == 0
    out = capsys.readouterr().out
    assert "Titre 0" in out and "  checked: the size of all 1 files, the sha256 of the 1 read" in out

    _rename_title_column(shard)  # same size: the hash of the file read for its documents catches it
    assert main(["inspect", str(version.path)]) == 1
    assert capsys.readouterr().err.startswith(f"overton: error: {shard}: sha256 differs from manifest;")
    assert main(["inspect", str(version.path), "--docs", "0"]) == 0  # nothing read, nothing hashed: sizes match
    assert "the sha256 of the 0 read" in capsys.readouterr().out

    shard.write_bytes(good[:-100])  # a truncated copy
    assert main(["inspect", str(version.path), "--docs", "0"]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"{shard}: size {len(good) - 100} != {len(good)} in manifest\n"
    assert captured.out.startswith("FAILED: 1 of 1 files differ from the manifest (sizes checked;")
    shard.unlink()
    assert main(["inspect", str(version.path)]) == 1
    assert capsys.readouterr().err == f"{shard}: missing\n"


def test_a_version_behind_an_fsspec_url_is_read_and_guarded_like_a_local_one(tmp_path: Path, capsys):
    import fsspec

    memory = fsspec.filesystem("memory")
    local = _version(tmp_path)
    files = {p.relative_to(local.path).as_posix(): p.read_bytes() for p in local.path.rglob("*") if p.is_file()}
    try:
        for name in ("v0002", "v10000"):  # numbered past 9999: sorted by number, not by spelling
            for relative, data in files.items():
                memory.pipe(f"/corpus-test/d/{name}/{relative}", data)
        memory.pipe("/corpus-test/d/v0003/data/test/part-00000.parquet", b"no manifest: not a version")
        assert list_versions("memory://corpus-test/d") == ["v0002", "v10000"]
        remote = Version.open("memory://corpus-test/d")
        assert (remote.name, remote.url, remote.local) == ("v10000", "memory://corpus-test/d/v10000", False)
        assert remote.verify() == []
        ids = [row["id"] for batch in remote.iter_batches("data", ["id"]) for row in batch.to_pylist()]
        assert ids == [f"test:{i}" for i in range(5)]
        assert main(["verify", "memory://corpus-test/d/v0002"]) == 0
        assert "ok: 1 files match memory://corpus-test/d/v0002/manifest.json" in capsys.readouterr().out

        shard = "/corpus-test/d/v10000/data/test/part-00000.parquet"
        memory.pipe(shard, files["data/test/part-00000.parquet"][:-1])
        with pytest.raises(Refused, match=r"v10000/data/test/part-00000.parquet: size \d+ != \d+ in manifest"):
            next(remote.iter_batches("data"))
        manifest = json.loads(files["manifest.json"])
        manifest["files"][0]["path"] = "data/../../v0002/data/test/part-00000.parquet"
        memory.pipe("/corpus-test/d/v10000/manifest.json", json.dumps(manifest).encode())
        assert main(["verify", "memory://corpus-test/d"]) == 2
        assert "outside the version folder" in capsys.readouterr().err
    finally:
        memory.rm("/corpus-test", recursive=True)


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.pop("files"), "'files' is not a list"),
    (lambda m: m["files"][0].pop("sha256"), "files[0] needs a path, a kind, bytes and a sha256"),
    (lambda m: m["files"][0].update(bytes="7"), "files[0] needs a path, a kind, bytes and a sha256"),
    (lambda m: m.update(format="overton.dataset/2"), "not an overton manifest (expected format"),
])
def test_a_malformed_manifest_is_one_line(tmp_path: Path, capsys, change, message: str):
    version = _version(tmp_path)
    manifest = json.loads((version.path / "manifest.json").read_text())
    change(manifest)
    (version.path / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(version.path)]) == 2
    err = capsys.readouterr().err
    assert err == f"overton: error: {version.path}/manifest.json: {message}" + err.split(message, 1)[1]
    assert err.count("\n") == 1


def test_config_template_holds_every_setting_with_its_default():
    assert parse_config(TEMPLATE) == Config()

    def check(model: type[BaseModel], section: str) -> None:
        assert f"\n[{section}]\n" in TEMPLATE
        body = TEMPLATE.split(f"\n[{section}]\n")[1].split("\n[")[0]
        for key, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                check(field.annotation, f"{section}.{key}")
            else:
                assert f"\n{key} = " in "\n" + body, f"{section}.{key} missing from the template"

    for section, field in Config.model_fields.items():
        if section not in ("profiles", "sources"):  # tables of named tables: tests/test_profiles.py
            check(field.annotation, section)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[build]\njobs = "two"', "setting 'build.jobs' must be an integer, got 'two'"),
        ("[buld]\njobs = 2", "unknown setting 'buld'"),
        ("[build]\nthreads = 2", "unknown setting 'build.threads'"),
        ("[normalize]\nstrip_html = 1", "setting 'normalize.strip_html' must be true or false, got 1"),
        ("[shards]\ntarget_mb = 0", "setting 'shards.target_mb'"),
        ("[dataset]\nname = 'Mon Corpus'", "setting 'dataset.name'"),
        ('[near_dedup]\nmode = "exact"', "setting 'near_dedup.mode'"),
        ("build = 3", "setting 'build' must be a table, got 3"),
        ("[build\n", "not valid TOML"),
        # settings that contradict each other, and those of earlier versions
        ("[profiles.qa.quality]\nmin_words = 200000",
         "setting 'profiles.qa.quality.min_words' (200000) must be below 'profiles.qa.quality.max_words' (100000)"),
        ("[profiles.web.quality]\nmin_mean_word_len = 12.0", "'profiles.web.quality.min_mean_word_len' (12.0) must be"),
        ('[sources.assemblee]\nprofile = "debat"', "setting 'sources.assemblee.profile': no profile named 'debat'"),
        ('[profiles.a]\nbase = "b"\n[profiles.b]\nbase = "a"', "the profiles a -> b -> a are each other's base"),
        ('[profiles.a]\nbase = "nope"', "setting 'profiles.a.base': no profile named 'nope'"),
        ("[profiles.web]\npii = 1", "setting 'profiles.web.pii' must be true or false, got 1"),
        ("[profiles.web.quality]\nmin_word = 5", "unknown setting 'profiles.web.quality.min_word'"),
        ('[quality]\ncurated_sources = ["assemblee"]',
         "setting 'quality.curated_sources' was replaced by source profiles"),
        ('[pii]\nskip_sources = ["assemblee"]', "setting 'pii.skip_sources' was replaced by"),
        ("[near_dedup]\nmargin = 0.04", "setting 'near_dedup.margin' was replaced by exact verification"),
        ("[language]\nmin_score = 0.3", "setting 'language.min_score' was replaced by the min_score of each profile"),
    ],
)
def test_bad_settings_are_refused_with_one_line_naming_the_key(tmp_path: Path, capsys, text: str, message: str):
    workspace = Workspace.init(tmp_path / "ws")
    workspace.settings_path.write_text(text)
    assert main(["build", "--workspace", str(workspace.root)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_init_creates_the_layout_and_refuses_twice(tmp_path: Path, capsys):
    assert main(["init", str(tmp_path / "ws")]) == 0
    for folder in ("raw", "state", "datasets", "runs"):
        assert (tmp_path / "ws" / folder).is_dir()
    assert parse_config((tmp_path / "ws" / "overton.toml").read_text()) == Config()
    assert main(["init", str(tmp_path / "ws")]) == 2
    assert "already an overton workspace" in capsys.readouterr().err


def test_commands_outside_a_workspace_say_so(tmp_path: Path, capsys):
    assert main(["build", "--workspace", str(tmp_path)]) == 2
    assert "is not an overton workspace" in capsys.readouterr().err


def test_raw_runs_without_marker_are_invisible(workspace: Workspace):
    run_id, path = workspace.new_raw_run("test", "ingest")
    pq.write_table(pa.Table.from_batches([documents_to_batch([_doc(1)])]), path / "part-00000.parquet")
    assert workspace.raw_runs() == []
    write_json(path / "run.json", {})
    assert [r.key for r in workspace.raw_runs()] == [f"test/{run_id}"]


def test_set_setting_rewrites_one_key_of_one_section_and_keeps_the_comments():
    from overton.corpus.config import set_setting

    text = set_setting(set_setting(TEMPLATE, "train", "lr", "3e-3"), "ingest", "row_group_mb", "1")
    assert parse_config(text).train.lr == 0.003 and parse_config(text).train.min_lr_ratio == 0.1
    assert parse_config(text).ingest.row_group_mb == 1 and parse_config(text).shards.row_group_mb == 32
    assert text.count("\n#") == TEMPLATE.count("\n#")
    with pytest.raises(KeyError, match=r"no learning_rate in \[train\]"):
        set_setting(TEMPLATE, "train", "learning_rate", "1")
