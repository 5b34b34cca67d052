"""``overton ingest --format lines``: one document per line or per block, stable ids, blank lines counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from overton.cli import main
from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from tests.conftest import shared_file
from tests.test_ingest import assert_no_raw_run, by_id, check_common, run

OVERTON = Path(sys.executable).with_name("overton")


def test_one_document_per_line(workspace: Workspace, tmp_path: Path):
    path = tmp_path / "phrases.fr"
    path.write_bytes(b"Premier.\r\n"          # 1: CRLF
                     b"\n"                    # 2: empty
                     b"   \t\n"               # 3: blank
                     b"Deuxi\xc3\xa8me.\n"    # 4
                     b"caf\xe9\n"             # 5: latin-1 in a UTF-8 file
                     b"\tTroisi\xc3\xa8me ligne.  \n"  # 6: kept as written
                     b"Derni\xc3\xa8re, sans fin de ligne")  # 7
    report, refusals = run(workspace, [path], fmt="lines")
    assert refusals == [f"{path}:5: invalid utf-8 at byte 3 (pass --encoding if the file is not UTF-8)"]
    assert (report.imported, report.empty, report.refused_count) == (4, 2, 1)
    docs = by_id(workspace)
    check_common(docs.values())
    assert {doc_id: doc["text"] for doc_id, doc in docs.items()} == {
        "mine:phrases:1": "Premier.", "mine:phrases:4": "Deuxième.", "mine:phrases:6": "\tTroisième ligne.  ",
        "mine:phrases:7": "Dernière, sans fin de ligne"}
    [raw_run] = workspace.raw_runs()
    assert (raw_run.record()["empty"], raw_run.record()["refused"]) == (2, 1)

    report, refusals = run(workspace, [path], fmt="lines", encoding="latin-1")
    assert refusals == [] and report.imported == 5
    assert by_id(workspace)["mine:phrases:5"]["text"] == "café"


def test_one_document_per_block(workspace: Workspace, tmp_path: Path):
    path = tmp_path / "discours.txt"
    path.write_bytes(b"\n"                          # 1
                     b"Titre un\n"                  # 2
                     b"suite un\n"                  # 3
                     b"\n\n\n"                      # 4-6: one separator however many blank lines
                     b"Titre deux\n"                # 7
                     b"  \n"                        # 8: blank too
                     b"Titre trois\r\n"             # 9
                     b"suite\n"                     # 10
                     b"\n"                          # 11
                     b"Bloc ab\xeem\xc3\xa9\n"      # 12
                     b"encore\n")                   # 13
    report, refusals = run(workspace, [path], fmt="lines", split="block")
    assert refusals == [f"{path}:12: invalid utf-8 at byte 7 (pass --encoding if the file is not UTF-8); "
                        "the block of lines 12-13 is not imported"]
    assert (report.imported, report.empty) == (3, 0)
    assert {doc_id: doc["text"] for doc_id, doc in by_id(workspace).items()} == {
        "mine:discours:2": "Titre un\nsuite un", "mine:discours:7": "Titre deux",
        "mine:discours:9": "Titre trois\nsuite"}


def test_cli_lines_summary_and_record(workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "corpus.txt"
    path.write_text("Une phrase.\n\nUne autre phrase.\n\n\n", encoding="utf-8")
    assert main(["ingest", str(path), "--source", "cli", "-w", str(workspace.root), "--format", "lines"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith("imported 2 documents from 1 files into raw/cli/")
    assert out.endswith("; refused 0; skipped 3 empty lines\n")
    record = json.loads(next(workspace.runs.glob("*-ingest.json")).read_text())
    assert (record["imported"], record["empty"], record["refused"], record["duplicates"]) == (2, 3, 0, 0)
    assert sorted(by_id(workspace, "cli")) == ["cli:corpus:1", "cli:corpus:3"]

    assert main(["ingest", str(path), "--source", "other", "-w", str(workspace.root), "--split", "block"]) == 2
    assert capsys.readouterr().err == "overton: error: --split applies to --format lines only\n"
    assert main(["ingest", str(path), "--source", "other", "-w", str(workspace.root), "--format", "lines",
                 "--split", "block"]) == 0
    assert sorted(by_id(workspace, "other")) == ["other:corpus:1", "other:corpus:3"]


def test_an_empty_file_imports_nothing(workspace: Workspace, tmp_path: Path):
    path = tmp_path / "rien.txt"
    path.write_text("", encoding="utf-8")
    blank = tmp_path / "blanc.txt"
    blank.write_text("\n  \n\n", encoding="utf-8")
    report, refusals = run(workspace, [path, blank], fmt="lines")
    assert refusals == [f"{path}: empty file, nothing to import"]
    assert (report.imported, report.empty, report.run_id) == (0, 3, None)
    assert_no_raw_run(workspace)


def test_real_aligned_europarl_lines_keep_their_alignment(workspace: Workspace):
    """Europarl's French and English files: line N of one translates line N of the other. The ids carry N, so
    the two sources align by id; the 6 empty French lines are counted, not imported; a real build keeps the ids."""
    french = shared_file("europarl-fr-en/europarl-v7.fr-en.fr")
    english = french.with_suffix(".en")
    lines = {path: path.read_text(encoding="utf-8").split("\n") for path in (french, english)}
    assert len(lines[french]) == len(lines[english]) == 3000
    blank = [number for number, line in enumerate(lines[french], 1) if not line.strip()]
    assert len(blank) == 6

    done = subprocess.run([str(OVERTON), "ingest", str(french), "--source", "europarl-fr", "--format", "lines",
                           "-w", str(workspace.root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith("imported 2994 documents from 1 files into raw/europarl-fr/")
    assert done.stdout.endswith("; refused 0; skipped 6 empty lines\n")
    done = subprocess.run([str(OVERTON), "build", "--quiet", "-w", str(workspace.root)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    version = Version.open(workspace.dataset_dir("overton"))
    built = [row["id"] for kind in ("data", "rejected") for batch in version.iter_batches(kind, columns=["id"])
             for row in batch.to_pylist()]
    fr = by_id(workspace, "europarl-fr")
    assert sorted(built) == sorted(fr)  # each line kept or rejected with its reason, under its own id

    args = ["ingest", str(english), "--source", "europarl-en", "--format", "lines", "-w", str(workspace.root)]
    assert main(args) == 0
    en = by_id(workspace, "europarl-en")
    assert len(fr) == 2994 and len(en) == 3000
    key = "europarl-v7.fr-en"  # the file's name without its extension: the same key for both languages
    for number, line in enumerate(lines[french], 1):
        assert fr.get(f"europarl-fr:{key}:{number}", {}).get("text") == (line if number not in blank else None)
        assert en[f"europarl-en:{key}:{number}"]["text"] == lines[english][number - 1]
    assert fr[f"europarl-fr:{key}:1"]["text"] == "Reprise de la session"
    assert en[f"europarl-en:{key}:1"]["text"] == "Resumption of the session"
