"""``overton ingest`` of TEI XML: turns, speakers, header facts, bad and hostile files, the real sitting reports."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from overton.cli import main
from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.spiders.formats import detect_format
from tests.conftest import shared_file
from tests.sites import Reply, Site
from tests.test_ingest import assert_no_raw_run, by_id, check_common, run

OVERTON = Path(sys.executable).with_name("overton")

# Written for the tests: a short sitting with every case the reader handles.
SITTING = """<?xml version="1.0" encoding="UTF-8"?>
<TEI xmlns="http://www.tei-c.org/ns/1.0">
  <teiHeader>
    <fileDesc>
      <titleStmt>
        <title type="sub">Compte rendu intégral</title>
        <title type="main">Séance du jeudi 1er février 2024</title>
      </titleStmt>
      <publicationStmt><date when="2030-06-30">édition de 2030</date></publicationStmt>
      <sourceDesc><p>Écrit pour les tests d'overton.</p></sourceDesc>
    </fileDesc>
    <profileDesc>
      <creation><date>jeudi 1er février 2024</date></creation>
      <particDesc><listPerson>
        <person xml:id="LMartin">
          <persName>Mme Louise Martin</persName><roleName>ministre de la culture</roleName>
        </person>
      </listPerson></particDesc>
    </profileDesc>
  </teiHeader>
  <text>
    <front><p>Sommaire de la séance</p></front>
    <body>
      <p>Présidence de M. Paul Durand</p>
      <sp who="#president">
        <speaker>M. le président</speaker>
        <p>La séance est ouverte.</p>
        <stage>La séance est ouverte à quinze heures.</stage>
      </sp>
      <div>
        <head>Questions au Gouvernement</head>
        <sp who="#JDupont">
          <speaker>M. Jean Dupont, rapporteur.</speaker>
          <p>Madame la ministre, <note>Voir l'annexe.</note>la culture<lb/>attend.
             <stage>(Applaudissements sur les bancs du groupe A.)</stage></p>
          <p>Second paragraphe avec <choice><sic>unne</sic><corr>une</corr></choice> correction.</p>
        </sp>
        <sp who="#LMartin"><p>Monsieur le député, je vous réponds.</p></sp>
        <sp who="#JDupont"><speaker>M. Jean Dupont</speaker><p>Merci.</p></sp>
        <sp who="#ABernard #CPetit"><speaker>M. Alain Bernard</speaker><p>et M. Claude Petit. Très bien !</p></sp>
        <sp>
          <speaker><persName>M. Paul Durand</persName>, <roleName>président de séance</roleName></speaker>
          <p>. La séance est levée.</p>
        </sp>
      </div>
    </body>
    <back><div><p>Annexe : liste des votants</p></div></back>
  </text>
</TEI>
"""

SITTING_TEXT = "\n\n".join([
    "Présidence de M. Paul Durand",
    "M. le président. La séance est ouverte.",
    "(La séance est ouverte à quinze heures.)",
    "Questions au Gouvernement",
    "M. Jean Dupont, rapporteur. Madame la ministre, la culture attend. (Applaudissements sur les bancs du groupe A.)",
    "Second paragraphe avec une correction.",
    "Mme Louise Martin, ministre de la culture. Monsieur le député, je vous réponds.",
    "M. Jean Dupont. Merci.",
    "M. Alain Bernard et M. Claude Petit. Très bien !",
    "M. Paul Durand, président de séance. La séance est levée.",
])


def tei(path: Path, body: str, header: str = "", doctype: str = "") -> Path:
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}<TEI xmlns="http://www.tei-c.org/ns/1.0">'
                    f"<teiHeader>{header}</teiHeader><text><body>{body}</body></text></TEI>\n", encoding="utf-8")
    return path


# --- the reader on a file written for the tests ----------------------------------------------------------------


def test_sitting_becomes_one_document_with_turns_speakers_title_and_date(workspace: Workspace, tmp_path: Path):
    path = tmp_path / "seances" / "2024-02-01.xml"
    path.parent.mkdir()
    path.write_text(SITTING, encoding="utf-8")
    assert detect_format(path) == "tei"
    report, refusals = run(workspace, [path])
    assert refusals == [] and report.imported == 1

    [doc] = by_id(workspace).values()
    check_common([doc])
    assert doc["id"] == "mine:2024-02-01"
    assert doc["title"] == "Séance du jeudi 1er février 2024"  # the main title, not the subtitle
    assert doc["published_at"] == datetime(2024, 2, 1, tzinfo=UTC)  # the creation date, not the edition's
    assert doc["text"] == SITTING_TEXT  # no note, no front or back matter, the <choice>'s correction
    assert doc["speakers"] == [
        {"name": "M. le président", "role": None},
        {"name": "M. Jean Dupont", "role": "rapporteur"},  # the role of his first turn stays
        {"name": "Mme Louise Martin", "role": "ministre de la culture"},  # from who="#LMartin" and <listPerson>
        {"name": "M. Alain Bernard", "role": None},
        {"name": "M. Paul Durand", "role": "président de séance"},  # <persName> and <roleName>
    ]
    assert doc["meta"] is None


@pytest.mark.parametrize(
    ("header", "published_at", "meta"),
    [
        pytest.param("<profileDesc><creation><date when='2013-01-29T15:00:00+01:00'>mardi</date></creation>"
                     "</profileDesc>", datetime(2013, 1, 29, 14, tzinfo=UTC), None, id="when-wins-over-text"),
        pytest.param("<fileDesc><sourceDesc><bibl><date>le 3 mars 2021</date></bibl></sourceDesc></fileDesc>",
                     datetime(2021, 3, 3, tzinfo=UTC), None, id="source-date"),
        pytest.param("<profileDesc><creation><date when='2013'>2013</date></creation></profileDesc>",
                     None, {"tei_date": "2013"}, id="year-only-kept-in-meta"),
        pytest.param("<profileDesc><creation><date>un jeudi de printemps</date></creation></profileDesc>",
                     None, {"tei_date": "un jeudi de printemps"}, id="no-day-kept-in-meta"),
        pytest.param("", None, None, id="no-header-date"),
    ],
)
def test_header_date(workspace: Workspace, tmp_path: Path, header: str, published_at: datetime | None,
                     meta: dict | None):
    report, refusals = run(workspace, [tei(tmp_path / "s.xml", "<p>Texte.</p>", header)])
    assert refusals == [] and report.imported == 1
    [doc] = by_id(workspace).values()
    assert doc["published_at"] == published_at
    assert (json.loads(doc["meta"]) if doc["meta"] else None) == meta
    assert doc["title"] is None and doc["text"] == "Texte."


def test_utterances_without_speaker_take_their_names_from_who(workspace: Workspace, tmp_path: Path):
    """A spoken-language corpus: <u who> with <seg>s or bare text, names from <listPerson> or the id itself."""
    header = ("<profileDesc><particDesc><listPerson><person xml:id='p1'><persName>Anne Roy</persName></person>"
              "</listPerson></particDesc></profileDesc>")
    body = ("<u who='#p1'><seg>Première phrase.</seg><seg>Deuxième <vocal><desc>rires</desc></vocal> phrase.</seg></u>"
            "<u who='#Marc_Leroy'>Une réponse <kinesic><desc>il montre la salle</desc></kinesic> directe.</u>"
            "<u>Sans locuteur.</u>")
    report, refusals = run(workspace, [tei(tmp_path / "oral.xml", body, header)])
    assert refusals == [] and report.imported == 1
    [doc] = by_id(workspace).values()
    assert doc["text"] == ("Anne Roy. Première phrase.\n\nDeuxième (rires) phrase.\n\n"
                           "Marc Leroy. Une réponse (il montre la salle) directe.\n\nSans locuteur.")
    assert doc["speakers"] == [{"name": "Anne Roy", "role": None}, {"name": "Marc Leroy", "role": None}]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(SITTING.encode(), "tei", id="tei-p5"),
        pytest.param(b"<TEI.2><text><body><p>x</p></body></text></TEI.2>", "tei", id="tei-p4"),
        pytest.param(b"<?xml version='1.0'?>\n<!-- a comment -->\n<TEI><text/></TEI>", "tei", id="no-namespace"),
        pytest.param(b"<rss version='2.0'><channel/></rss>", None, id="other-root"),
        pytest.param(b"<TEI><teiHeader>", "tei", id="truncated-after-root"),
        pytest.param(b"not xml at all", "tei", id="unreadable-root"),  # the TEI reader says why, with the line
    ],
)
def test_detect_xml(tmp_path: Path, content: bytes, expected: str | None):
    path = tmp_path / "doc.xml"
    path.write_bytes(content)
    assert detect_format(path) == expected


# --- bad and hostile files -------------------------------------------------------------------------------------


def test_malformed_xml_is_refused_with_its_line_and_the_other_files_imported(workspace: Workspace, tmp_path: Path):
    broken = tmp_path / "broken.xml"
    broken.write_text('<TEI xmlns="http://www.tei-c.org/ns/1.0"><text><body>\n<sp><speaker>M. X</speaker>\n'
                      "<p>Un paragraphe.</p>\n<p>Un paragraphe jamais fermé.\n</sp>\n</body></text></TEI>\n",
                      encoding="utf-8")
    fine = tei(tmp_path / "fine.xml", "<p>Bonjour.</p>")
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(SITTING.encode()[:1500])
    report, refusals = run(workspace, [broken, fine, truncated])
    assert report.imported == 1 and sorted(by_id(workspace)) == ["mine:fine"]
    assert refusals[0] == f"{broken}:5: malformed XML: Opening and ending tag mismatch: p line 4 and sp (column 6)"
    assert refusals[1].startswith(f"{truncated}:") and "malformed XML: " in refusals[1]
    assert len(refusals) == 2


def test_a_file_of_another_kind_is_refused_under_format_tei(workspace: Workspace, tmp_path: Path):
    path = tmp_path / "feed.xml"
    path.write_text("<rss><channel><title>Actualités</title></channel></rss>", encoding="utf-8")
    report, refusals = run(workspace, [path])
    assert refusals == [f"{path}: unknown file type: pass --format"]
    report, refusals = run(workspace, [path], fmt="tei")
    assert refusals == [f"{path}: root element is <rss>, not <TEI>: pass a TEI file, or another --format"]
    assert report.imported == 0
    assert_no_raw_run(workspace)


def test_external_entities_and_dtds_are_never_loaded(workspace: Workspace, tmp_path: Path):
    """XXE: no file is read and no request is sent, whatever the file declares; the bad file is refused."""
    secret = tmp_path / "secret.txt"
    secret.write_text("MOT-DE-PASSE-SECRET", encoding="utf-8")
    with Site() as site:
        site.routes["/tei.dtd"] = Reply(200, '<!ENTITY ministre "FROM-THE-NETWORK">')
        site.routes["/entity"] = Reply(200, "FROM-THE-NETWORK")
        files = {
            "dtd": tei(tmp_path / "dtd.xml", "<p>Le texte reste lisible.</p>",
                       doctype=f'<!DOCTYPE TEI SYSTEM "{site.url("/tei.dtd")}">\n'),
            "file": tei(tmp_path / "file.xml", "<p>A &secret; B</p>",
                        doctype=f'<!DOCTYPE TEI [<!ENTITY secret SYSTEM "{secret.as_uri()}">]>\n'),
            "http": tei(tmp_path / "http.xml", "<p>A &remote; B</p>",
                        doctype=f'<!DOCTYPE TEI [<!ENTITY remote SYSTEM "{site.url("/entity")}">]>\n'),
            "dtd-entity": tei(tmp_path / "dtd-entity.xml", "<p>Mme &ministre;</p>",
                              doctype=f'<!DOCTYPE TEI SYSTEM "{site.url("/tei.dtd")}">\n'),
        }
        report, refusals = run(workspace, list(files.values()))
        time.sleep(0.2)  # a request sent by a background loader would have arrived by now
        assert site.hits == []
    assert report.imported == 1 and by_id(workspace)["mine:dtd"]["text"] == "Le texte reste lisible."
    never = "external DTDs and entities are never loaded"
    assert refusals == [
        f"{files['file']}:3: malformed XML: Entity 'secret' not defined (column 90): {never}",
        f"{files['http']}:3: malformed XML: Entity 'remote' not defined (column 90): {never}",
        f"{files['dtd-entity']}:3: malformed XML: Entity 'ministre' not defined (column 94): {never}",
    ]


def test_internal_entities_are_expanded_but_a_billion_laughs_is_refused(workspace: Workspace, tmp_path: Path):
    fine = tei(tmp_path / "fine.xml", "<p>&an; vote.</p>",
               doctype='<!DOCTYPE TEI [<!ENTITY an "L\'Assemblée nationale">]>\n')
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = tei(tmp_path / "bomb.xml", "<p>&l9;</p>", doctype=f'<!DOCTYPE TEI [<!ENTITY l0 "ha">{laughs}]>\n')
    started = time.monotonic()
    report, refusals = run(workspace, [fine, bomb])
    assert time.monotonic() - started < 5
    assert by_id(workspace)["mine:fine"]["text"] == "L'Assemblée nationale vote."
    assert len(refusals) == 1 and refusals[0].startswith(f"{bomb}:")
    assert "Maximum entity amplification factor exceeded" in refusals[0]


# --- the real sitting reports ----------------------------------------------------------------------------------


def test_real_sitting_reports_through_ingest_and_build(workspace: Workspace):
    """The Assemblée nationale's TEI reports of the "mariage pour tous" debate, against the plain-text version of
    the same sittings (made from the same TEI by its encoder): one document each, the sitting's date, the
    speakers, and the text's size, then a real build that carries them through."""
    folder = shared_file("assemblee-2013/tei")
    files = sorted(folder.glob("*.xml"))
    assert files, f"no TEI file in {folder}"
    with open(folder.parent / "metadata.csv", encoding="utf-8", newline="") as handle:
        sittings = {row["id"]: row for row in csv.DictReader(handle)}

    done = subprocess.run([str(OVERTON), "ingest", *map(str, files), "--source", "an", "-w", str(workspace.root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.startswith(f"imported {len(files)} documents from {len(files)} files")
    docs = by_id(workspace, "an")
    assert sorted(docs) == [f"an:{path.stem}" for path in files]
    for path in files:
        doc, sitting = docs[f"an:{path.stem}"], sittings[path.stem]
        assert doc["title"] == f"Mariage pour tous - {sitting['seance']}"
        assert doc["published_at"] == datetime.fromisoformat(sitting["date"]).replace(tzinfo=UTC)
        names = [speaker["name"] for speaker in doc["speakers"]]
        assert len(names) >= 40 and len(set(names)) == len(names) and "le président" in names
        plain = (folder.parent / "txt" / f"{path.stem}.txt").read_text(encoding="utf-8")
        words, plain_words = len(doc["text"].split()), len(plain.split())
        assert abs(words - plain_words) <= 0.02 * plain_words, (path.name, words, plain_words)  # measured: < 0.3 %
        assert doc["text"].startswith("Présidence de M. Claude Bartolone\n\nle président. La séance est ouverte.")
        assert "<" not in doc["text"] and "  " not in doc["text"]
    roles = {s["name"]: s["role"] for doc in docs.values() for s in doc["speakers"]}
    assert roles["Christiane Taubira"] == "garde des Sceaux, ministre de la justice"

    done = subprocess.run([str(OVERTON), "build", "--quiet", "-w", str(workspace.root)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    version = Version.open(workspace.dataset_dir("overton"))
    built = {row["id"]: row for kind in ("data", "rejected") for batch in version.iter_batches(kind)
             for row in batch.to_pylist()}
    assert sorted(built) == sorted(docs)  # every sitting is kept or rejected with a reason, none lost
    for doc_id, row in built.items():
        assert row["speakers"] == docs[doc_id]["speakers"] and row["title"] == docs[doc_id]["title"]
        assert row["published_at"] == docs[doc_id]["published_at"]


def test_cli_format_tei_and_its_one_line_errors(workspace: Workspace, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]):
    path = tei(tmp_path / "seance.tei", "<sp><speaker>Mme A</speaker><p>Oui.</p></sp>")
    assert main(["ingest", str(path), "--source", "cli", "-w", str(workspace.root)]) == 1  # no known extension
    assert capsys.readouterr().err == f"refused: {path}: unknown file type: pass --format\n"
    assert main(["ingest", str(path), "--source", "cli", "-w", str(workspace.root), "--format", "tei"]) == 0
    assert by_id(workspace, "cli")["cli:seance"]["text"] == "Mme A. Oui."
    capsys.readouterr()
    assert main(["ingest", str(path), "--source", "cli", "-w", str(workspace.root), "--format", "tei",
                 "--encoding", "latin-1"]) == 2
    assert capsys.readouterr().err == ("overton: error: --encoding applies to plain text files only: "
                                       "pass --format text or --format lines\n")
