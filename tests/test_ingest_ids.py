"""Ids at ingest: file keys that do not collide, duplicates refused and counted, long ids and null texts refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overton.cli import main
from overton.corpus.workspace import Workspace
from overton.pipelines.build import build
from overton.spiders.ingest import MAX_ID_CHARS, SeenIds, file_keys
from tests.conftest import french_text
from tests.test_ingest import by_id, jsonl, rows, run, sha256


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- file keys -------------------------------------------------------------------------------------------------


def test_same_name_in_two_folders_no_longer_collides(workspace: Workspace, tmp_path: Path):
    first = write(tmp_path / "2021" / "a" / "speech.txt", "Premier discours.")
    second = write(tmp_path / "2021" / "b" / "speech.txt", "Second discours.")
    nested = write(tmp_path / "2021" / "b" / "extra" / "seance.xml",
                   "<TEI><text><body><p>Une séance.</p></body></text></TEI>")
    report, refusals = run(workspace, [first, second, nested])
    assert refusals == [] and report.imported == 3
    assert {doc_id: doc["text"] for doc_id, doc in by_id(workspace).items()} == {
        "mine:a/speech": "Premier discours.", "mine:b/speech": "Second discours.", "mine:b/extra/seance": "Une séance."}


@pytest.mark.parametrize(
    ("names", "keys"),
    [
        pytest.param(["d/speech.txt"], ["speech"], id="one-file"),
        pytest.param(["d/a.txt", "d/b.md", "d/c.fr"], ["a", "b", "c"], id="one-folder-keeps-bare-names"),
        pytest.param(["d/x.txt", "d/sub/y.txt"], ["x", "sub/y"], id="deeper-file"),
        pytest.param(["d/a/s.txt", "d/b/s.txt"], ["a/s", "b/s"], id="same-stem"),
        pytest.param(["d/archive.tar.gz", "d/europarl-v7.fr-en.fr"], ["archive.tar", "europarl-v7.fr-en"],
                     id="last-extension-only"),
        pytest.param(["d/sub/../a.txt", "d/./b.txt"], ["a", "b"], id="normalised"),
    ],
)
def test_file_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str], keys: list[str]):
    monkeypatch.chdir(tmp_path)  # relative inputs, as typed on a command line
    assert file_keys([Path(name) for name in names]) == keys


# --- duplicates ------------------------------------------------------------------------------------------------


def test_duplicate_ids_are_refused_counted_and_the_first_kept(workspace: Workspace, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]):
    first = jsonl(tmp_path / "first.jsonl", [{"id": "x", "text": "Premier x."}, {"id": "y", "text": "Un y."},
                                             {"id": "x", "text": "Deuxième x, même fichier."}])
    second = tmp_path / "second.json"
    second.write_text(json.dumps([{"id": "z", "text": "Un z."}, {"id": "mine:y", "text": "Autre y."}]),
                      encoding="utf-8")
    text = write(tmp_path / "a.txt", "Texte a.")
    markdown = write(tmp_path / "a.md", "Markdown a.")  # same key "a": a collision the user should hear about
    code = main(["ingest", str(first), str(second), str(text), str(markdown), "--source", "mine",
                 "-w", str(workspace.root)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        f"refused: {first}:3: duplicate id mine:x, first seen at {first}:1",
        f"refused: {second}#2: duplicate id mine:y, first seen at {first}:2",
        f"refused: {markdown}: duplicate id mine:a, first seen at {text}",
    ]
    assert out.startswith("imported 4 documents from 4 files") and out.endswith("; refused 3 (3 duplicate ids)\n")
    assert {doc_id: doc["text"] for doc_id, doc in by_id(workspace).items()} == {
        "mine:x": "Premier x.", "mine:y": "Un y.", "mine:z": "Un z.", "mine:a": "Texte a."}
    record = json.loads(next(workspace.runs.glob("*-ingest.json")).read_text())
    assert (record["imported"], record["refused"], record["duplicates"]) == (4, 3, 3)
    assert workspace.raw_runs()[0].record()["duplicates"] == 3


def test_the_same_file_twice_imports_it_once(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = jsonl(tmp_path / "docs.jsonl", [{"id": i, "text": f"Texte {i}."} for i in range(3)])
    monkeypatch.chdir(tmp_path)
    report, refusals = run(workspace, [path, Path("docs.jsonl")])
    assert report.imported == 3 and report.duplicates == 3
    assert refusals == [f"docs.jsonl:{i + 1}: duplicate id mine:{i}, first seen at {path}:{i + 1}" for i in range(3)]


def test_same_text_without_id_is_left_to_the_build(workspace: Workspace, tmp_path: Path):
    """No id: the id is the text's hash, so a repeated id is a repeated text, an exact duplicate. The build keeps
    one and records the other in rejected/ with the copy it kept, as it does across ingests."""
    text = french_text(random.Random(5), 120)
    path = jsonl(tmp_path / "dump.jsonl", [{"title": "Original", "text": text}, {"title": "Copie", "text": text}])
    report, refusals = run(workspace, [path])
    assert refusals == [] and report.imported == 2 and report.duplicates == 0
    assert [doc["id"] for doc in rows(workspace)] == [f"mine:{sha256(text)[:16]}"] * 2
    version = build(workspace, jobs=1, progress=False).version
    counts = version.manifest["counts"]
    assert (counts["input"], counts["kept"], counts["reasons"]) == (2, 1, {"exact_duplicate": 1})


def test_seen_ids_memory_stays_flat(tmp_path: Path):
    """200,000 ids cost the process about 2 MiB: they live in a temporary SQLite file, not in a dict (29 MiB)."""
    def rss() -> int:
        with open("/proc/self/status") as status:
            return int(next(line.split()[1] for line in status if line.startswith("VmRSS:"))) * 1024

    if not Path("/proc/self/status").is_file():
        pytest.skip("RSS is read from /proc (Linux)")
    files = [str(tmp_path / "corpus.txt")]
    seen = SeenIds(files)
    try:
        before = rss()
        assert all(seen.add(f"europarl:corpus:{n}", 0, f"{files[0]}:{n}") is None for n in range(1, 200_001))
        grown = rss() - before
        assert seen.add("europarl:corpus:123", 0, f"{files[0]}:9") == f"{files[0]}:123"
    finally:
        seen.close()
    assert grown < 10 * (1 << 20), f"{grown / (1 << 20):.0f} MiB"


# --- ids and texts a document cannot have ----------------------------------------------------------------------


def test_id_longer_than_512_characters_is_refused(workspace: Workspace, tmp_path: Path):
    longest = "k" * (MAX_ID_CHARS - len("mine:"))
    path = jsonl(tmp_path / "ids.jsonl", [{"id": longest, "text": "Juste assez court."},
                                          {"id": longest + "k", "text": "Un caractère de trop."}])
    deep = write(tmp_path / ("d" * 200) / ("e" * 200) / ("f" * 150 + ".txt"), "Un chemin trop long pour un id.")
    report, refusals = run(workspace, [path, deep])
    assert refusals == [f"{path}:2: id longer than 512 characters", f"{deep}: id longer than 512 characters"]
    assert [doc["id"] for doc in rows(workspace)] == [f"mine:{longest}"]


def test_null_text_is_refused_as_missing(workspace: Workspace, tmp_path: Path):
    lines = jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "Un texte."}, {"id": "b", "text": None},
                                            {"id": "c", "text": ""}])
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["Un texte.", None]}), parquet)
    mapped = jsonl(tmp_path / "mapped.jsonl", [{"id": "m1", "body": "Un corps."}, {"id": "m2", "body": None},
                                               {"id": "m3", "text": "Pas de corps."}])
    report, refusals = run(workspace, [lines, parquet])
    assert refusals == [f"{lines}:2: 'text' is null: a document needs its text",
                        f"{parquet}#2: 'text' is null: a document needs its text"]
    # an empty text is a document with no words: imported, and the build rejects it as "empty"
    assert {doc["id"]: doc["text"] for doc in rows(workspace)} == {"mine:a": "Un texte.", "mine:c": "",
                                                                   "mine:p1": "Un texte."}
    report, refusals = run(workspace, [mapped], source="mapped", field_map={"text": "body"})
    assert refusals == [f"{mapped}:2: 'body' is null: a document needs its text",
                        f"{mapped}:3: record has no 'body' field"]
    assert [doc["text"] for doc in rows(workspace, "mapped")] == ["Un corps."]
