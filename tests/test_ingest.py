"""``overton ingest``: every input format, every kind of bad input, the CLI contract, and flat memory."""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overton.cli import main
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.spiders.formats import detect_format
from overton.spiders.ingest import IngestReport, ingest
from tests.conftest import shared_file

MB = 1 << 20


# --- helpers -------------------------------------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def jsonl_lines(path: Path, lines: Iterable[bytes]) -> Path:
    """A JSON Lines file from raw byte lines (to plant bad lines between good ones)."""
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def gptj(path: Path, speeches: Iterable[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"speechs": list(speeches)}, ensure_ascii=False), encoding="utf-8")
    return path


def good(key: str) -> bytes:
    return json.dumps({"id": key, "text": f"Texte du document {key}."}).encode()


def run(ws: Workspace, paths: list[Path], source: str = "mine", **kwargs: Any) -> tuple[IngestReport, list[str]]:
    """Ingest and collect every refusal as ``str`` (the "file:line: why" text users see)."""
    refusals: list[str] = []
    report = ingest(ws, paths, source, on_refusal=lambda r: refusals.append(str(r)), **kwargs)
    assert report.refused_count == len(refusals) == len(report.refused)
    return report, refusals


def rows(ws: Workspace, source: str = "mine") -> list[dict[str, Any]]:
    """Every raw document of ``source``, read back with pyarrow, sorted by id."""
    found = []
    for raw_run in ws.raw_runs():
        if raw_run.source == source:
            for part in raw_run.parts():
                found.extend(pq.read_table(part).to_pylist())
    return sorted(found, key=lambda row: row["id"])


def by_id(ws: Workspace, source: str = "mine") -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in rows(ws, source)}


def assert_no_raw_run(ws: Workspace) -> None:
    assert ws.raw_runs() == []
    assert not list(ws.raw.glob("*/*")), "no raw run folder may be left behind"


def check_common(docs: Iterable[dict[str, Any]], source: str = "mine") -> None:
    for doc in docs:
        assert doc["source"] == source
        assert doc["id"].startswith(f"{source}:")
        assert doc["content_sha256"] == sha256(doc["text"])
        assert isinstance(doc["fetched_at"], datetime) and doc["fetched_at"].tzinfo is not None


# --- formats -------------------------------------------------------------------------------------------------


def test_jsonl_maps_every_schema_field_and_keeps_extras_in_meta(ws: Workspace, tmp_path: Path):
    path = jsonl(tmp_path / "speeches.jsonl", [
        {
            "id": 243000039, "title": "Déclaration sur l'école", "url": "https://example.org/243000039",
            "published_at": "2023-05-17T09:30:00+02:00", "license": "LicenseRef-vie-publique",
            "speakers": [{"name": "Claire Vasseur", "function": "ministre de l'éducation"}, {"name": "Paul Roy"}],
            "keywords": ["école", "budget"], "thematics": ["Éducation"], "kind": "Déclaration",
            "text": "Mesdames et messieurs, l'école de la République…", "dila_id": "DILA-7", "pages": 3,
        },
        {"id": "b-2", "text": "Bonjour.", "speakers": ["Jean Martin", "Léa Petit"], "keywords": "a, b ,c",
         "date": "2020-01-02"},
        {"id": "mine:already-prefixed", "text": "Déjà préfixé."},
    ])
    before = datetime.now(UTC)
    report, refusals = run(ws, [path])
    assert refusals == [] and report.imported == 3 and report.files == 1

    docs = by_id(ws)
    assert sorted(docs) == ["mine:243000039", "mine:already-prefixed", "mine:b-2"]
    check_common(docs.values())
    first = docs["mine:243000039"]
    assert first["title"] == "Déclaration sur l'école"
    assert first["url"] == "https://example.org/243000039"
    assert first["published_at"] == datetime(2023, 5, 17, 7, 30, tzinfo=UTC)
    assert first["license"] == "LicenseRef-vie-publique"
    assert first["speakers"] == [{"name": "Claire Vasseur", "role": "ministre de l'éducation"},
                                 {"name": "Paul Roy", "role": None}]
    assert first["keywords"] == ["école", "budget"]
    assert first["thematics"] == ["Éducation"]
    assert first["kind"] == "Déclaration"
    assert first["text"] == "Mesdames et messieurs, l'école de la République…"
    assert json.loads(first["meta"]) == {"dila_id": "DILA-7", "pages": 3}

    second = docs["mine:b-2"]
    assert second["speakers"] == [{"name": "Jean Martin", "role": None}, {"name": "Léa Petit", "role": None}]
    assert second["keywords"] == ["a", "b", "c"]
    assert second["published_at"] == datetime(2020, 1, 2, tzinfo=UTC)  # "date" is an alias, naive means UTC
    assert second["title"] is None and second["license"] is None and second["meta"] is None

    fetched = {doc["fetched_at"] for doc in docs.values()}
    assert len(fetched) == 1 and before <= fetched.pop() <= datetime.now(UTC)

    [raw_run] = ws.raw_runs()
    assert raw_run.source == "mine" and raw_run.run_id == report.run_id and raw_run.run_id.endswith("-ingest")
    record = raw_run.record()
    assert record["rows"] == 3 and record["refused"] == 0 and record["files"] == [str(path)]
    assert [p["path"] for p in record["parts"]] == [p.name for p in raw_run.parts()] == ["part-00000.parquet"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param('[{"id": 1, "text": "un"}, {"id": 2, "text": "deux"}]', {"1": "un", "2": "deux"}, id="array"),
        pytest.param('  \n[{"id": 1, "text": "un"}]\n[{"id": 2, "text": "deux"},\n{"id": 3, "text": "trois"}]\n[]',
                     {"1": "un", "2": "deux", "3": "trois"}, id="scrapy-concatenated-arrays"),
    ],
)
def test_json_arrays(ws: Workspace, tmp_path: Path, content: str, expected: dict[str, str]):
    path = tmp_path / "items.json"
    path.write_text(content, encoding="utf-8")
    assert detect_format(path) == "json"
    report, refusals = run(ws, [path])
    assert refusals == [] and report.imported == len(expected)
    docs = by_id(ws)
    assert {doc_id: doc["text"] for doc_id, doc in docs.items()} == {f"mine:{k}": v for k, v in expected.items()}
    check_common(docs.values())


def test_gptj_dump(ws: Workspace, tmp_path: Path):
    speeches = [
        {"title": "Déclaration de M. Jean Dupont sur la laïcité",
         "speakers": [{"name": "Jean Dupont", "function": "Premier ministre"}],
         "context": "Assemblée nationale", "keywords": ["laïcité", "école"], "thematics": ["Société", "Religion"],
         "datetime": "2021-03-04T10:00:00", "readtime": 12, "kind": "Déclaration",
         "text": "Monsieur le Président, mesdames et messieurs les députés…"},
        {"title": "Interview", "speakers": [], "text": "Question : pourquoi ? Réponse : parce que."},
    ]
    path = gptj(tmp_path / "dump.json", speeches)
    assert detect_format(path) == "gptj"
    report, refusals = run(ws, [path])
    assert refusals == [] and report.imported == 2

    docs = by_id(ws)
    expected_ids = {f"mine:{sha256(s['text'])[:16]}": s for s in speeches}
    assert set(docs) == set(expected_ids)
    check_common(docs.values())
    first = docs[f"mine:{sha256(speeches[0]['text'])[:16]}"]
    assert first["title"] == "Déclaration de M. Jean Dupont sur la laïcité"
    assert first["speakers"] == [{"name": "Jean Dupont", "role": "Premier ministre"}]
    assert first["published_at"] == datetime(2021, 3, 4, 10, 0, tzinfo=UTC)
    assert first["keywords"] == ["laïcité", "école"]
    assert first["thematics"] == ["Société", "Religion"]
    assert first["kind"] == "Déclaration"
    assert json.loads(first["meta"]) == {"context": "Assemblée nationale", "readtime": 12}
    second = docs[f"mine:{sha256(speeches[1]['text'])[:16]}"]
    assert second["speakers"] == [] and second["published_at"] is None and second["meta"] is None


def test_one_json_object_is_one_document(ws: Workspace, tmp_path: Path):
    single = tmp_path / "speech.json"
    record = {"url": "https://example.org/d/7", "title": "Déclaration", "text": "Mesdames, messieurs.",
              "tag": ["Défense", "Armées"]}
    single.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf\n" + json.dumps({"id": "b-1", "text": "Avec une marque d'ordre."}).encode())
    several = tmp_path / "pretty.json"  # `jq .` output: objects one after another, each over several lines
    several.write_text("".join(json.dumps({"id": f"p{i}", "text": f"Objet {i}."}, indent=2) + "\n" for i in range(3)),
                       encoding="utf-8")
    assert [detect_format(p) for p in (single, bom, several)] == ["json", "json", "json"]
    report, refusals = run(ws, [single, bom, several])
    assert refusals == [] and report.imported == 5
    docs = by_id(ws)
    check_common(docs.values())
    [speech] = [doc for doc in docs.values() if doc["title"] == "Déclaration"]
    assert speech["id"] == f"mine:{sha256('Mesdames, messieurs.')[:16]}"  # no id: the text's hash, as for any record
    assert speech["url"] == "https://example.org/d/7" and json.loads(speech["meta"]) == {"tag": ["Défense", "Armées"]}
    assert docs["mine:b-1"]["text"] == "Avec une marque d'ordre."
    assert [docs[f"mine:p{i}"]["text"] for i in range(3)] == ["Objet 0.", "Objet 1.", "Objet 2."]


def test_gptj_dump_is_told_by_its_speechs_key_read_as_a_stream(ws: Workspace, tmp_path: Path):
    later_key = gptj(tmp_path / "dump.json", [{"text": "Un discours."}])
    later_key.write_text('{"version": 2, ' + later_key.read_text(encoding="utf-8")[1:], encoding="utf-8")
    truncated = tmp_path / "truncated.json"  # never loaded whole: the key is found before the break
    truncated.write_text('{"speechs": [{"text": "Premier discours."}, {"text": "Deuxi', encoding="utf-8")
    nested = tmp_path / "nested.json"
    nested.write_text('{"meta": {"speechs": []}, "text": "Un seul document."}', encoding="utf-8")
    assert [detect_format(p) for p in (later_key, truncated, nested)] == ["gptj", "gptj", "json"]
    report, refusals = run(ws, [later_key, truncated, nested])
    assert report.imported == 3
    assert refusals == [f"{truncated}#2: malformed JSON, rest of file not readable: parse error: premature EOF"]
    assert sorted(doc["text"] for doc in rows(ws)) == ["Premier discours.", "Un discours.", "Un seul document."]


def test_one_object_is_not_a_dump_under_format_gptj(ws: Workspace, tmp_path: Path):
    path = tmp_path / "one.json"
    path.write_text('{"id": 1, "text": "a single object"}', encoding="utf-8")
    report, refusals = run(ws, [path], fmt="gptj")
    assert report.imported == 0
    assert refusals == [f'{path}: no records found: expected {{"speechs": [...]}} (GPTJ-Overton dump); one object per '
                        "line is --format jsonl, one object per file --format json"]


def test_real_scraped_speech_is_one_document(ws: Workspace, capsys: pytest.CaptureFixture[str]):
    path = shared_file("viepublique/scraped-speech-1.json")
    original = json.loads(path.read_text(encoding="utf-8"))
    assert main(["ingest", str(path), "--source", "vp", "-w", str(ws.root), "--field", "keywords=tag"]) == 0
    assert capsys.readouterr().out.startswith("imported 1 documents from 1 files")
    [doc] = rows(ws, "vp")
    assert doc["text"] == original["text"] and doc["url"] == original["url"] and doc["keywords"] == original["tag"]
    assert doc["id"] == f"vp:{sha256(original['text'])[:16]}" and doc["meta"] is None


def test_csv_splits_keywords_and_honours_field_map(ws: Workspace, tmp_path: Path):
    path = tmp_path / "docs.csv"
    path.write_text(
        "\ufeffid,title,text,topics,keywords,date\n"
        '1,Budget,"Le budget, enfin.","finances, impôts",ignored,2022-06-01\n'
        '2,Multi,"Première ligne\nseconde ligne",santé,,\n',
        encoding="utf-8",
    )
    report, refusals = run(ws, [path], field_map={"keywords": "topics"})
    assert refusals == [] and report.imported == 2
    docs = by_id(ws)
    check_common(docs.values())
    assert docs["mine:1"]["keywords"] == ["finances", "impôts"]
    assert docs["mine:1"]["text"] == "Le budget, enfin."
    assert docs["mine:1"]["published_at"] == datetime(2022, 6, 1, tzinfo=UTC)
    assert json.loads(docs["mine:1"]["meta"]) == {"keywords": "ignored"}  # the unmapped column is kept as an extra
    assert docs["mine:2"]["text"] == "Première ligne\nseconde ligne"
    assert docs["mine:2"]["keywords"] == ["santé"]


def test_csv_keywords_column_without_field_map(ws: Workspace, tmp_path: Path):
    path = tmp_path / "docs.csv"
    path.write_text('id,text,keywords\n7,Texte,"a,b, c"\n', encoding="utf-8")
    report, _ = run(ws, [path])
    assert report.imported == 1 and rows(ws)[0]["keywords"] == ["a", "b", "c"]


def test_parquet_input(ws: Workspace, tmp_path: Path):
    path = tmp_path / "input.parquet"
    table = pa.table({
        "id": ["p1", "p2", "p3"],
        "text": ["Premier texte.", "Deuxième texte.", "Troisième texte."],
        "title": ["Un", None, "Trois"],
        "published_at": pa.array([datetime(2019, 7, 14, 12, tzinfo=UTC), None, None], pa.timestamp("us", "UTC")),
        "votes": [10, 20, 30],
    })
    pq.write_table(table, path)
    report, refusals = run(ws, [path])
    assert refusals == [] and report.imported == 3
    docs = by_id(ws)
    check_common(docs.values())
    assert [docs[f"mine:p{i}"]["text"] for i in (1, 2, 3)] == table.column("text").to_pylist()
    assert docs["mine:p1"]["title"] == "Un" and docs["mine:p2"]["title"] is None
    assert docs["mine:p1"]["published_at"] == datetime(2019, 7, 14, 12, tzinfo=UTC)
    assert [json.loads(docs[f"mine:p{i}"]["meta"]) for i in (1, 2, 3)] == [{"votes": 10}, {"votes": 20}, {"votes": 30}]


def test_text_files_one_document_each_keyed_by_stem(ws: Workspace, tmp_path: Path):
    first = tmp_path / "discours-2021.txt"
    first.write_text("Mes chers compatriotes,\n\nVive la République.\n", encoding="utf-8")
    second = tmp_path / "note.md"
    second.write_text("# Note\n\nÉté.", encoding="utf-8")
    report, refusals = run(ws, [first, second])
    assert refusals == [] and report.imported == 2 and report.files == 2
    docs = by_id(ws)
    assert docs["mine:discours-2021"]["text"] == "Mes chers compatriotes,\n\nVive la République.\n"
    assert docs["mine:note"]["text"] == "# Note\n\nÉté."
    check_common(docs.values())
    assert len(ws.raw_runs()) == 1  # several files, one run


def test_text_latin1_needs_encoding(ws: Workspace, tmp_path: Path):
    path = tmp_path / "ancien.txt"
    text = "Le député a déclaré : « Ça suffit ! »"
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index("é".encode("latin-1"))

    report, refusals = run(ws, [path])
    assert report.imported == 0 and report.run_id is None
    assert refusals == [f"{path}: invalid utf-8 at byte {offset} (pass --encoding if the file is not UTF-8)"]
    assert_no_raw_run(ws)

    report, refusals = run(ws, [path], fmt="text", encoding="latin-1")
    assert refusals == [] and report.imported == 1
    [doc] = rows(ws)
    assert doc["id"] == "mine:ancien" and doc["text"] == text
    assert doc["content_sha256"] == sha256(text)  # the hash is of the decoded text, re-encoded as UTF-8

    with pytest.raises(UserError, match="--encoding applies to plain text files only"):
        ingest(ws, [path], "mine", encoding="latin-1")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("dump.json", b'{"speechs": []}', "gptj"),
        ("dump.json", b'\xef\xbb\xbf \n\t {"speechs": []}', "gptj"),
        ("dump.json", b'{"n": [1, {"speechs": 0}], "speechs": []}', "gptj"),
        ("one.json", b'{"id": 1, "text": "x"}', "json"),
        ("one.json", b'\xef\xbb\xbf{"text": "x", "meta": {"speechs": []}}', "json"),
        ("broken.json", b'{"text": ', "json"),
        ("items.json", b"[]", "json"),
        ("items.json", b"\n\n  [{}]", "json"),
        ("a.jsonl", b"{}", "jsonl"),
        ("a.ndjson", b"{}", "jsonl"),
        ("a.CSV", b"x", "csv"),
        ("a.tsv", b"x", "csv"),
        ("a.parquet", b"x", "parquet"),
        ("a.txt", b"x", "text"),
        ("a.md", b"x", "text"),
        ("a.xml", b"<x/>", None),
        ("noextension", b"{}", None),
    ],
    ids=["object", "bom-space-object", "later-key", "one-object", "bom-nested-key", "broken-object", "array",
         "space-array", "jsonl", "ndjson", "csv-upper", "tsv", "parquet",
         "txt", "md", "xml-unknown", "no-extension"],
)
def test_detect_format(tmp_path: Path, name: str, content: bytes, expected: str | None):
    path = tmp_path / name
    path.write_bytes(content)
    assert detect_format(path) == expected


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_line", "why"),
    [
        pytest.param(b'{"id": "x", "text": "caf\xe9"}', "invalid UTF-8 at byte 24", id="invalid-utf8"),
        pytest.param(b'{"id": "x", "text": }', "malformed JSON: Expecting value (column 21)", id="malformed-json"),
        pytest.param(b'[{"id": "x", "text": "in an array"}]', "expected a JSON object, got list", id="array-line"),
        pytest.param(b'{"id": "x", "title": "no text"}', "record has no 'text' field", id="no-text"),
        pytest.param(b'{"id": "x", "text": 42}', "'text' must be a string, got int", id="numeric-text"),
        pytest.param(b'{"id": "x", "text": "t", "published_at": "le 3 mars"}',
                     "bad published_at: Invalid isoformat string: 'le 3 mars'", id="bad-date"),
        pytest.param(b'{"id": "x", "text": "t", "speakers": [42]}',
                     "each speaker must be a name or an object with a 'name'", id="bad-speaker"),
        pytest.param(b'{"id": "x", "text": "t", "redistributable": "yes"}',
                     "'redistributable' must be true or false", id="bad-redistributable"),
    ],
)
def test_jsonl_bad_line_is_refused_rest_imported(ws: Workspace, tmp_path: Path, bad_line: bytes, why: str):
    path = jsonl_lines(tmp_path / "mixed.jsonl", [good("a"), b"", bad_line, good("c")])
    report, refusals = run(ws, [path])
    assert report.imported == 2
    assert len(refusals) == 1 and refusals[0].startswith(f"{path}:3: {why}")
    assert sorted(by_id(ws)) == ["mine:a", "mine:c"]
    assert ws.raw_runs()[0].record()["refused"] == 1


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("empty.jsonl", b"", "empty file, nothing to import"),
        ("empty.csv", b"", "empty file, nothing to import"),
        ("binary.jsonl", b'{"text": "a"}\n\x00\x01\x02\x89PNG\x00' * 10, "binary file (contains NUL bytes), not text"),
        ("empty-array.json", b"[]", "no records found: expected a JSON array of objects"),
        ("garbage.parquet", b"PAR1 this is not parquet", "not a readable Parquet file"),
    ],
    ids=["empty-jsonl", "empty-csv", "binary", "empty-array", "garbage-parquet"],
)
def test_unreadable_file_refused_and_nothing_written(ws: Workspace, tmp_path: Path, name: str, content: bytes,
                                                     why: str):
    path = tmp_path / name
    path.write_bytes(content)
    report, refusals = run(ws, [path])
    assert report.imported == 0 and report.run_id is None
    assert len(refusals) == 1 and refusals[0].startswith(f"{path}: {why}")
    assert_no_raw_run(ws)


def test_unreadable_file_does_not_stop_the_others(ws: Workspace, tmp_path: Path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    fine = jsonl_lines(tmp_path / "fine.jsonl", [good("a")])
    report, refusals = run(ws, [empty, fine])
    assert report.imported == 1 and report.files == 2
    assert refusals == [f"{empty}: empty file, nothing to import"]
    assert sorted(by_id(ws)) == ["mine:a"]


def test_csv_repeated_header_and_ragged_row(ws: Workspace, tmp_path: Path):
    path = tmp_path / "export.csv"
    path.write_text(
        "id,text,kind\n"        # line 1
        "1,Un,discours\n"       # line 2
        "id,text,kind\n"        # line 3: a second export appended to the first
        "2,Deux\n"              # line 4: a column short
        "3,Trois,a,b\n"         # line 5: a column too many
        "\n"                    # line 6: blank, skipped silently
        '4,"Quatre\nsur deux lignes",interview\n'  # lines 7-8
        "5,Cinq,\n",            # line 9
        encoding="utf-8",
    )
    report, refusals = run(ws, [path])
    assert refusals == [
        f"{path}:3: repeated header row",
        f"{path}:4: expected 3 columns, got 2",
        f"{path}:5: expected 3 columns, got 4",
    ]
    assert report.imported == 3
    docs = by_id(ws)
    assert sorted(docs) == ["mine:1", "mine:4", "mine:5"]
    assert docs["mine:4"]["text"] == "Quatre\nsur deux lignes" and docs["mine:4"]["kind"] == "interview"
    assert docs["mine:5"]["kind"] is None


def test_csv_invalid_utf8_row(ws: Workspace, tmp_path: Path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"id,text\n1,caf\xc3\xa9\n2,caf\xe9\n3,th\xc3\xa9\n")
    report, refusals = run(ws, [path])
    assert refusals == [f"{path}:3: invalid UTF-8 in this row"]
    assert report.imported == 2 and by_id(ws)["mine:1"]["text"] == "café"


def test_truncated_gptj_dump_keeps_what_came_before(ws: Workspace, tmp_path: Path):
    speeches = [{"title": f"Discours {i}", "text": f"Discours numéro {i}. " + "Blabla politique. " * 60}
                for i in range(300)]  # ~330 KB: the break lies well past the parser's first read buffer
    whole = json.dumps({"speechs": speeches}, ensure_ascii=False).encode("utf-8")
    cut = whole.index(b'"Discours 250"') + 5
    path = tmp_path / "truncated.json"
    path.write_bytes(whole[:cut])
    report, refusals = run(ws, [path])
    assert report.imported == 250
    assert len(refusals) == 1
    assert refusals[0].startswith(f"{path}#251: malformed JSON, rest of file not readable: ")
    assert {doc["title"] for doc in rows(ws)} == {f"Discours {i}" for i in range(250)}


def test_array_member_that_is_not_an_object(ws: Workspace, tmp_path: Path):
    path = tmp_path / "items.json"
    path.write_text('[{"id": 1, "text": "un"}, "deux", {"id": 3, "text": "trois"}]', encoding="utf-8")
    report, refusals = run(ws, [path])
    assert refusals == [f"{path}#2: expected a JSON object, got str"]
    assert sorted(by_id(ws)) == ["mine:1", "mine:3"]


def test_50_mb_document_is_imported_intact(ws: Workspace, tmp_path: Path):
    unit = "La séance est ouverte à quinze heures. « Très bien ! » sur les bancs. "
    huge = (unit * (50 * MB // len(unit.encode("utf-8")) + 1))
    path = jsonl(tmp_path / "huge.jsonl", [{"id": "small-1", "text": "avant"}, {"id": "huge", "text": huge},
                                           {"id": "small-2", "text": "après"}])
    assert path.stat().st_size > 50 * MB
    report, refusals = run(ws, [path])
    assert refusals == [] and report.imported == 3
    docs = by_id(ws)
    assert len(docs["mine:huge"]["text"]) == len(huge)
    assert docs["mine:huge"]["content_sha256"] == sha256(huge)
    assert docs["mine:huge"]["text"] == huge
    assert docs["mine:small-2"]["text"] == "après"


def test_unknown_extension_needs_format(ws: Workspace, tmp_path: Path):
    path = jsonl_lines(tmp_path / "export.data", [good("a"), good("b")])
    report, refusals = run(ws, [path])
    assert report.imported == 0 and refusals == [f"{path}: unknown file type: pass --format"]
    assert_no_raw_run(ws)
    report, refusals = run(ws, [path], fmt="jsonl")
    assert refusals == [] and report.imported == 2 and sorted(by_id(ws)) == ["mine:a", "mine:b"]


def test_missing_file_is_a_user_error_before_anything_is_written(ws: Workspace, tmp_path: Path):
    fine = jsonl_lines(tmp_path / "fine.jsonl", [good("a")])
    with pytest.raises(UserError, match=r"missing\.jsonl: no such file"):
        ingest(ws, [fine, tmp_path / "missing.jsonl"], "mine")
    assert_no_raw_run(ws)
    assert not (ws.raw / "mine").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "Bad Name"}, "invalid source name 'Bad Name'"),
        ({"source": "../escape"}, "invalid source name"),
        ({"fmt": "xml"}, "unknown format 'xml'"),
        ({"encoding": "cp1252", "fmt": "jsonl"}, "--encoding applies to plain text files only"),
    ],
    ids=["bad-source", "path-source", "unknown-format", "encoding-not-text"],
)
def test_api_user_errors(ws: Workspace, tmp_path: Path, kwargs: dict[str, str], message: str):
    fine = jsonl_lines(tmp_path / "fine.jsonl", [good("a")])
    kwargs = {"source": "mine", **kwargs}
    with pytest.raises(UserError, match=re.escape(message)):
        ingest(ws, [fine], **kwargs)
    assert_no_raw_run(ws)


def test_default_license_only_fills_missing(ws: Workspace, tmp_path: Path):
    path = jsonl(tmp_path / "l.jsonl", [{"id": 1, "text": "a", "license": "CC-BY-4.0"}, {"id": 2, "text": "b"}])
    report, _ = run(ws, [path], default_license="LicenseRef-not-licensed")
    assert report.imported == 2
    docs = by_id(ws)
    assert docs["mine:1"]["license"] == "CC-BY-4.0"
    assert docs["mine:2"]["license"] == "LicenseRef-not-licensed"


# --- command line --------------------------------------------------------------------------------------------


def ingest_records(ws: Workspace) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(ws.runs.glob("*-ingest.json"))]


def test_cli_all_imported_exits_0(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    first = jsonl_lines(tmp_path / "a.jsonl", [good("a"), good("b")])
    second = tmp_path / "c.csv"
    second.write_text("id,text,topics\nc,Texte C,\"x, y\"\n", encoding="utf-8")
    code = main(["ingest", str(first), str(second), "--source", "cli", "--workspace", str(ws.root),
                 "--field", "keywords=topics", "--license", "CC0-1.0"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    [raw_run] = ws.raw_runs()
    assert out == f"imported 3 documents from 2 files into raw/cli/{raw_run.run_id} (profile web); refused 0\n"
    docs = by_id(ws, "cli")
    assert sorted(docs) == ["cli:a", "cli:b", "cli:c"]
    assert docs["cli:c"]["keywords"] == ["x", "y"] and {d["license"] for d in docs.values()} == {"CC0-1.0"}
    [record] = ingest_records(ws)
    assert record["status"] == "ok" and record["exit_code"] == 0
    assert (record["imported"], record["refused"], record["files"]) == (3, 0, 2)
    assert record["source"] == "cli" and record["run_id"] == raw_run.run_id and record["refusals"] == []


def test_cli_partial_import_exits_1(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = jsonl_lines(tmp_path / "mixed.jsonl", [good("a"), b"{broken", good("c"), b'{"text": 1}'])
    code = main(["ingest", str(path), "--source", "cli", "-w", str(ws.root)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        f"refused: {path}:2: malformed JSON: Expecting property name enclosed in double quotes (column 2)",
        f"refused: {path}:4: 'text' must be a string, got int",
    ]
    assert out.startswith("imported 2 documents from 1 files into raw/cli/") and out.endswith("; refused 2\n")
    [record] = ingest_records(ws)
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert (record["imported"], record["refused"]) == (2, 2)
    assert record["refusals"] == [line.removeprefix("refused: ") for line in err.splitlines()]
    assert sorted(by_id(ws, "cli")) == ["cli:a", "cli:c"]


def test_cli_many_refusals_are_summarised(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = jsonl_lines(tmp_path / "bad.jsonl", [good("ok")] + [b"not json"] * 30)
    assert main(["ingest", str(path), "--source", "cli", "-w", str(ws.root)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 21 and all(line.startswith(f"refused: {path}:") for line in lines[:20])
    assert lines[20].startswith("... and 10 more refusals, all listed in ")
    [record] = ingest_records(ws)
    assert record["refused"] == 30 and len(record["refusals"]) == 30


def test_cli_nothing_importable_exits_1_and_writes_no_raw_run(ws: Workspace, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert main(["ingest", str(path), "--source", "cli", "-w", str(ws.root)]) == 1
    out, err = capsys.readouterr()
    assert err == f"refused: {path}: empty file, nothing to import\n"
    assert out == "imported 0 documents from 1 files into nowhere (nothing importable); refused 1\n"
    assert_no_raw_run(ws)
    [record] = ingest_records(ws)
    assert record["run_id"] is None and record["imported"] == 0 and record["refused"] == 1


@pytest.mark.parametrize(
    ("inputs", "options", "message"),
    [
        pytest.param(["fine.jsonl", "missing.jsonl"], [], "missing.jsonl: no such file", id="missing-file"),
        pytest.param(["fine.jsonl"], ["--field", "nope=topics"], "--field 'nope=topics': expected FIELD=COLUMN",
                     id="unknown-field"),
        pytest.param(["fine.jsonl"], ["--field", "keywords"], "--field 'keywords': expected FIELD=COLUMN",
                     id="field-without-column"),
        pytest.param(["fine.jsonl"], ["--source", "Bad Name"], "invalid source name 'Bad Name'", id="bad-source"),
        pytest.param(["fine.jsonl"], ["--encoding", "latin-1"], "--encoding applies to plain text files only",
                     id="encoding-not-text"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              inputs: list[str], options: list[str], message: str):
    jsonl_lines(tmp_path / "fine.jsonl", [good("a")])
    argv = ["ingest", *(str(tmp_path / name) for name in inputs), "--source", "cli", "-w", str(ws.root), *options]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("overton: error: ") and message in err
    assert_no_raw_run(ws)
    [record] = ingest_records(ws)  # a scheduler still finds a record of the failed job
    assert record["status"] == "failed" and record["exit_code"] == 2 and message in record["error"]


def test_cli_not_a_workspace_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    fine = jsonl_lines(tmp_path / "fine.jsonl", [good("a")])
    code = main(["ingest", str(fine), "--source", "cli", "--workspace", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == (f"overton: error: {tmp_path} is not an overton workspace (no overton.toml); "
                   "create one with `overton init DIR` or pass --workspace\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fine.jsonl"]  # nothing created


# --- memory --------------------------------------------------------------------------------------------------

_SYLLABLES = ("de", "la", "ré", "pu", "bli", "que", "gou", "ver", "ne", "ment", "na", "tion", "al", "é", "co", "no",
              "mie", "so", "ci", "té", "fran", "çais", "pré", "si", "dent", "loi", "dé", "toy", "en", "pro", "jet")


def write_big_gptj(path: Path, speeches: int, speech_bytes: int, seed: int = 0) -> None:
    """A GPTJ-Overton dump written as a stream: French-looking paragraphs drawn by a seeded generator."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(_SYLLABLES, k=rng.randint(1, 4))) for _ in range(2000)]
    paragraphs = [" ".join(rng.choices(words, k=120)).capitalize() + "." for _ in range(256)]
    per_speech = max(1, speech_bytes // (len(paragraphs[0].encode()) + 1))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('{"speechs": [\n')
        for number in range(speeches):
            speech = {
                "title": f"Discours n°{number}", "speakers": [{"name": "Jean Dupont", "function": "ministre"}],
                "context": "Assemblée nationale", "keywords": ["budget", "école"], "thematics": ["Éducation"],
                "datetime": "2021-03-04T10:00:00", "readtime": 12, "kind": "Discours",
                "text": f"Discours {number}.\n" + "\n".join(rng.choices(paragraphs, k=per_speech)),
            }
            handle.write(("," if number else "") + json.dumps(speech, ensure_ascii=False) + "\n")
        handle.write("]}\n")


# ``python -m overton ARGS...`` that then writes its own peak RSS (VmHWM, KiB) to a file. getrusage() cannot be
# used from here: Linux carries the parent's peak RSS into a forked child's ru_maxrss, so it would report pytest's
# own size (measured: 620 MiB after the 50 MB-document test) instead of the ingest's.
_PEAK_RSS_WRAPPER = """
import runpy, sys
peak_file, sys.argv = sys.argv[1], ["overton", *sys.argv[2:]]
try:
    runpy.run_module("overton", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exc:
    code = exc.code
with open("/proc/self/status") as status:
    fields = dict(line.split(":", 1) for line in status)
with open(peak_file, "w") as out:
    out.write(" ".join(fields[key].split()[0] for key in ("VmHWM", "RssFile")))
sys.exit(code)
"""


def ingest_peak_rss(ws: Workspace, path: Path, source: str) -> tuple[int, float, str]:
    """Run ``python -m overton ingest`` in a child; return its peak RSS in bytes, its wall time and its stdout.

    The peak counts what the process holds, not the shared libraries it maps (RssFile, still mapped at exit):
    how much of a mapped library is resident depends on the kernel's page cache (a freshly installed venv's
    libarrow, in large folios, showed 28 MB more for the same `import pyarrow`), not on the ingest."""
    peak_file = path.with_suffix(".peak")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_WRAPPER, str(peak_file),
         "ingest", str(path), "--source", source, "--workspace", str(ws.root)],
        capture_output=True, text=True, timeout=300,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    high_water, libraries = map(int, peak_file.read_text().split())
    return (high_water - libraries) * 1024, elapsed, result.stdout


def test_memory_stays_flat_on_a_large_gptj_dump(ws: Workspace, tmp_path: Path):
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak RSS is read from /proc (Linux)")
    small, big = tmp_path / "small.json", tmp_path / "big.json"
    write_big_gptj(small, speeches=200, speech_bytes=50_000, seed=1)
    write_big_gptj(big, speeches=6000, speech_bytes=50_000)
    size = big.stat().st_size
    assert size > 250 * MB

    small_peak, _, _ = ingest_peak_rss(ws, small, "small")
    peak, elapsed, stdout = ingest_peak_rss(ws, big, "big")
    big.unlink()
    print(f"\ningest of a {size / MB:.0f} MiB GPTJ dump: peak RSS {peak / MB:.0f} MiB in {elapsed:.1f} s "
          f"(a {small.stat().st_size / MB:.0f} MiB dump: {small_peak / MB:.0f} MiB)")

    assert stdout.startswith("imported 6000 documents from 1 files into raw/big/")
    [raw_run] = [r for r in ws.raw_runs() if r.source == "big"]
    assert raw_run.record()["rows"] == 6000 and raw_run.record()["refused"] == 0
    assert sum(pq.ParquetFile(part).metadata.num_rows for part in raw_run.parts()) == 6000
    # Measured on the 2-core dev box: ~193 MiB of RSS for both the 285 MiB and the 10 MiB dump (about 90 MiB of
    # it the interpreter with pyarrow and pydantic loaded); 131 MiB without the libraries' mapped pages. Memory
    # follows the record and row-group size, not the file size.
    assert peak < 250 * MB and peak < 0.8 * size
    assert peak < small_peak + 48 * MB
