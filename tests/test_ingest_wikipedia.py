"""``overton ingest --format wikipedia-html / wikipedia-dump``: saved articles and Wikimedia Enterprise dumps
(.tar.gz and .ndjson), their filters, bad and truncated input, real articles through a real build, flat memory."""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from overton.cli import main
from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.spiders.formats import detect_format
from overton.spiders.wikipedia_html import extract
from tests.conftest import french_text, shared_file
from tests.test_ingest import MB, by_id, check_common, ingest_peak_rss

OVERTON = Path(sys.executable).with_name("overton")


# --- helpers: articles and dumps written for the tests -------------------------------------------------------


def parsoid(title: str, paragraphs: list[str], categories: tuple[str, ...] = ()) -> str:
    """A Parsoid article (the HTML of an Enterprise dump line) with a reference, an infobox and a notes section."""
    body = "".join(f"<p>{text}<sup class=\"mw-ref reference\"><a href=\"#n\">[{n}]</a></sup></p>"
                   for n, text in enumerate(paragraphs, 1))
    links = "".join(f'<link rel="mw:PageProp/Category" href="./Catégorie:{quote(c.replace(" ", "_"))}"/>'
                    for c in categories)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"/><title>{title}</title></head>'
            f'<body lang="fr" class="mw-content-ltr mw-parser-output"><section data-mw-section-id="0">'
            f'<table class="infobox"><tr><td>Encadré</td></tr></table>{body}{links}</section>'
            f'<section data-mw-section-id="1"><h2 id="Notes">Notes et références</h2><ol class="references">'
            f"<li>Une source.</li></ol></section></body></html>")


def enterprise(name: str, pageid: int, html: str, categories: tuple[str, ...] = (), revid: int = 1,
               modified: str = "2024-01-02T03:04:05Z") -> dict[str, Any]:
    """One article as the Wikimedia Enterprise article model writes it (the fields the reader uses, and others)."""
    url = f"https://fr.wikipedia.org/wiki/{quote(name.replace(' ', '_'))}"
    return {
        "name": name, "identifier": pageid, "date_modified": modified, "version": {"identifier": revid},
        "url": url, "namespace": {"identifier": 0}, "in_language": {"identifier": "fr"},
        "is_part_of": {"identifier": "frwiki"}, "main_entity": {"identifier": f"Q{pageid}"},
        "categories": [{"name": f"Catégorie:{c}", "url": f"https://fr.wikipedia.org/wiki/Catégorie:{c}"}
                       for c in categories],
        "article_body": {"html": html, "wikitext": "''wikitexte''"},
        "license": [{"name": "Creative Commons Attribution Share Alike 4.0", "identifier": "CC-BY-SA-4.0"}],
    }


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def tar_gz(path: Path, members: dict[str, bytes], level: int = 6) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=level) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def run_cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OVERTON), *args, "-w", str(ws.root)], capture_output=True, text=True, timeout=300)


ARTICLES = [  # (name, pageid, categories): a subcategory of "Institution" is listed as an article's own category
    ("Conseil d'État", 11, ("Institution", "Droit public")),
    ("Cour des comptes", 12, ("Finances publiques",)),
    ("Conseil constitutionnel", 13, ("Juridiction constitutionnelle",)),
    ("Sénat", 14, ()),
]


def dump_records() -> list[dict[str, Any]]:
    return [enterprise(name, pageid, parsoid(name, [f"{name} : premier paragraphe.", "Second paragraphe."]), cats)
            for name, pageid, cats in ARTICLES]


# --- saved article HTML --------------------------------------------------------------------------------------


def real_dump(path: Path) -> Path:
    """The two real Enterprise-format pages as a dump of two NDJSON lines, their facts given as the HTML has them."""
    records = []
    for page in sorted(shared_file("wikipedia/enterprise-dump-html").glob("*.html")):
        html = page.read_text(encoding="utf-8")
        article = extract(html)
        pageid, name = page.stem.split("_", 1)
        records.append(enterprise(name.replace("_", " "), int(pageid), html, tuple(article.categories),
                                  revid=article.revid or 0, modified=article.modified or ""))
    return tar_gz(path, {"part_0.ndjson": ndjson(records)})


def test_real_articles_detected_ingested_and_kept_by_a_real_build(workspace: Workspace, tmp_path: Path):
    """The 33 real articles as action=parse returns them: told from other HTML by MediaWiki's markers, one
    document each with the page id of the parser cache, judged by the encyclopedia profile; with the two real
    Enterprise pages ingested from a dump, a real build keeps them."""
    files = sorted(shared_file("wikipedia/parse-html").glob("*.html"))
    assert len(files) == 33
    done = run_cli(workspace, "ingest", *map(str, files), "--source", "wikipedia")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert re.match(r"imported 33 documents from 33 files into raw/wikipedia/\S+ \(profile encyclopedia\); "
                    r"refused 0$", done.stdout.strip())
    docs = by_id(workspace, "wikipedia")
    check_common(docs.values(), "wikipedia")
    pageids = [path.stem.split("_")[0] for path in files]
    assert sorted(docs) == sorted(f"wikipedia:fr:{pageid}" for pageid in pageids)
    for pageid in pageids:
        doc = docs[f"wikipedia:fr:{pageid}"]
        url = f"https://fr.wikipedia.org/?curid={pageid}"
        assert (doc["url"], doc["kind"], doc["license"], doc["redistributable"]) == (
            url, "article", "CC-BY-SA-4.0", True)
        meta = json.loads(doc["meta"])
        assert meta["pageid"] == int(pageid) and meta["revid"] > 100_000_000 and meta["lang"] == "fr"
        assert meta["attribution"] == f"Wikipédia, l'encyclopédie libre, {url}, CC BY-SA 4.0"
        assert len(doc["text"]) > 1000 and "[modifier" not in doc["text"] and "[1]" not in doc["text"]
        assert "\n\nNotes et références\n\n" not in doc["text"]
    assert docs["wikipedia:fr:556087"]["text"].startswith("Jacques Médecin, né le 5 mai 1928 à Nice")

    done = run_cli(workspace, "ingest", str(real_dump(tmp_path / "dump.tar.gz")), "--source", "wikidump")
    assert done.returncode == 0, done.stderr
    assert "imported 2 documents from 1 files into raw/wikidump/" in done.stdout
    ingested = set(docs) | set(by_id(workspace, "wikidump"))

    done = run_cli(workspace, "build", "--quiet")
    assert done.returncode == 0, done.stderr
    version = Version.open(workspace.dataset_dir("overton"))
    kept = {row["id"] for batch in version.iter_batches("data") for row in batch.to_pylist()}
    rejected = {row["id"]: row["reject_reason"] for batch in version.iter_batches("rejected")
                for row in batch.to_pylist()}
    assert kept | set(rejected) == ingested and len(ingested) == 35
    assert len(kept) >= 0.95 * len(ingested)
    # measured: all kept but one of the two revisions of « Espéranto » (parse-html and the dump), near-duplicates
    assert set(rejected.values()) <= {"near_duplicate"}


def test_html_without_page_id_is_refused_and_other_html_is_not_taken_for_wikipedia(workspace: Workspace,
                                                                                      tmp_path: Path,
                                                                                      capsys: pytest.CaptureFixture):
    article = tmp_path / "sans_id.html"
    article.write_text('<div class="mw-parser-output" lang="fr"><p>Un article sans identifiant.</p></div>',
                       encoding="utf-8")
    page = tmp_path / "page.html"
    page.write_text("<html><body><p>Une page quelconque.</p></body></html>", encoding="utf-8")
    redirect = tmp_path / "redirection.html"
    redirect.write_text('<div class="mw-parser-output"></div><!-- Saved in parser cache with key '
                        "frwiki:pcache:idhash:5-0!canonical and timestamp 1 and revision id 6 -->", encoding="utf-8")
    assert [detect_format(p) for p in (article, page, redirect)] == ["wikipedia-html", None, "wikipedia-html"]

    assert main(["ingest", str(article), str(page), str(redirect), "--source", "wp", "-w", str(workspace.root)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"refused: {article}: no page id in the HTML (Parsoid's mw:pageId, action=parse's parser cache comment or a "
        "saved page's wgArticleId): a document's id is its page id",
        f"refused: {page}: unknown file type: pass --format",
        f"refused: {redirect}: no article text in this HTML (a redirect, an empty page, or not a MediaWiki page)",
    ]
    assert workspace.raw_runs() == []


def test_tables_follow_the_workspace_setting(workspace: Workspace, tmp_path: Path):
    html = ('<div class="mw-parser-output" lang="fr"><p>Les résultats du scrutin.</p><table class="wikitable">'
            "<tr><th>Liste</th><th>Voix</th></tr><tr><td>A</td><td>1 200</td></tr></table>"
            "<!-- Saved in parser cache with key frwiki:pcache:idhash:77-0!canonical and timestamp 1 and revision "
            "id 78 --></div>")
    path = tmp_path / "scrutin.html"
    path.write_text(html, encoding="utf-8")
    assert main(["ingest", str(path), "--source", "sans", "-w", str(workspace.root)]) == 0
    settings = workspace.settings_path.read_text(encoding="utf-8")
    assert settings.count("\ntables = false\n") == 1
    workspace.settings_path.write_text(settings.replace("\ntables = false\n", "\ntables = true\n"), encoding="utf-8")
    assert main(["ingest", str(path), "--source", "avec", "-w", str(workspace.root)]) == 0
    assert by_id(workspace, "sans")["sans:fr:77"]["text"] == "Les résultats du scrutin."
    assert by_id(workspace, "avec")["avec:fr:77"]["text"] == "Les résultats du scrutin.\n\nListe | Voix\nA | 1 200"


# --- Enterprise dumps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tar.gz", "ndjson"])
def test_dump_with_titles_and_categories(workspace: Workspace, tmp_path: Path, kind: str):
    records = dump_records()
    if kind == "tar.gz":  # two NDJSON files in one archive, as the dumps are split
        path = tar_gz(tmp_path / "frwiki-NS0-ENTERPRISE-HTML.json.tar.gz",
                      {"frwiki_namespace_0_0.ndjson": ndjson(records[:2]), "frwiki_namespace_0_1.ndjson":
                       ndjson(records[2:])})
    else:
        path = tmp_path / "frwiki_namespace_0_0.ndjson"
        path.write_bytes(ndjson(records))
    assert detect_format(path) == "wikipedia-dump"
    titles = tmp_path / "titles.txt"
    titles.write_text("conseil_d'État\n\nSénat\nArticle absent\n", encoding="utf-8")  # as MediaWiki compares them

    def ingest(source: str, *options: str) -> list[str]:
        assert main(["ingest", str(path), "--source", source, "-w", str(workspace.root), *options]) == 0
        return sorted(by_id(workspace, source))

    assert ingest("tout") == ["tout:fr:11", "tout:fr:12", "tout:fr:13", "tout:fr:14"]
    assert ingest("titres", "--format", "wikipedia-dump", "--titles", str(titles)) == ["titres:fr:11", "titres:fr:14"]
    # an article's own categories only: "Juridiction constitutionnelle" is not found under "Institution"
    assert ingest("cats", "--format", "wikipedia-dump", "--categories", "Institution,finances_publiques") == [
        "cats:fr:11", "cats:fr:12"]
    assert ingest("deux", "--format", "wikipedia-dump", "--titles", str(titles), "--categories", "Institution") == [
        "deux:fr:11"]

    doc = by_id(workspace, "tout")["tout:fr:11"]
    url = "https://fr.wikipedia.org/wiki/Conseil_d%27%C3%89tat"
    assert (doc["title"], doc["url"], doc["license"], doc["kind"]) == ("Conseil d'État", url, "CC-BY-SA-4.0",
                                                                       "article")
    assert doc["text"] == "Conseil d'État : premier paragraphe.\n\nSecond paragraphe."
    assert doc["published_at"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert json.loads(doc["meta"]) == {
        "pageid": 11, "revid": 1, "lang": "fr", "categories": ["Institution", "Droit public"],
        "attribution": f"Wikipédia, l'encyclopédie libre, {url}, CC BY-SA 4.0"}


def test_real_enterprise_pages_as_a_dump(workspace: Workspace, tmp_path: Path):
    """The two real Enterprise-format pages, put into a dump of two NDJSON lines: facts from the JSON fields,
    text from the Parsoid HTML, the category filter on the article's real categories."""
    pages = sorted(shared_file("wikipedia/enterprise-dump-html").glob("*.html"))
    path = real_dump(tmp_path / "dump.tar.gz")
    done = run_cli(workspace, "ingest", str(path), "--source", "wikipedia")
    assert done.returncode == 0, done.stderr
    docs = by_id(workspace, "wikipedia")
    assert sorted(docs) == ["wikipedia:fr:1004", "wikipedia:fr:4197390"]
    esperanto = docs["wikipedia:fr:1004"]
    assert esperanto["title"] == "Espéranto" and esperanto["url"] == "https://fr.wikipedia.org/wiki/Esp%C3%A9ranto"
    assert esperanto["published_at"] == datetime(2023, 11, 23, 9, 1, 2, tzinfo=UTC)
    assert esperanto["text"] == extract(pages[0].read_text(encoding="utf-8")).text
    meta = json.loads(esperanto["meta"])
    assert meta["revid"] == 209919146 and len(meta["categories"]) == 68
    category = meta["categories"][0]
    done = run_cli(workspace, "ingest", str(path), "--source", "cat", "--format", "wikipedia-dump",
                   "--categories", category)
    assert done.returncode == 0, done.stderr
    assert sorted(by_id(workspace, "cat")) == ["cat:fr:1004"]


def test_bad_lines_are_refused_with_their_place_and_the_rest_imported(workspace: Workspace, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture):
    good = [ndjson([record]).rstrip(b"\n") for record in dump_records()]
    no_html = json.dumps({"name": "Sans HTML", "identifier": 20, "article_body": {"wikitext": "x"}}).encode()
    lines = [good[0], b'{"name": "Coupe", "identifier": 21, "article_bo', b"[1, 2]", b'{"identifier": 22}',
             b'{"name": "Mauvais", "identifier": "23", "article_body": {"html": "<p>x</p>"}}', no_html,
             b'{"name": "\xff"}', b"", good[1]]
    path = tmp_path / "dump.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    archive = tar_gz(tmp_path / "dump.tar.gz", {"part_0.ndjson": path.read_bytes()})

    for source, dump, where in (("plat", path, f"{path}:"), ("archive", archive, f"{archive}:part_0.ndjson:")):
        assert main(["ingest", str(dump), "--source", source, "--format", "wikipedia-dump",
                     "-w", str(workspace.root)]) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"refused: {where}2: malformed JSON: Unterminated string starting at (column 37)",
            f"refused: {where}3: expected a JSON object, got list",
            f"refused: {where}4: no 'name': not a Wikimedia Enterprise article",
            f"refused: {where}5: no integer 'identifier' (the page id): not a Wikimedia Enterprise article",
            f"refused: {where}6: no 'article_body.html': an HTML dump is needed (the wikitext-only dumps have no "
            "HTML)",
            f"refused: {where}7: invalid UTF-8 at byte 10",
        ]
        assert sorted(by_id(workspace, source)) == [f"{source}:fr:11", f"{source}:fr:12"]


def test_truncated_or_corrupt_archive_keeps_what_came_before(workspace: Workspace, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture):
    rng = random.Random(7)
    records = [enterprise(f"Article {n}", 100 + n, parsoid(f"Article {n}", [french_text(rng, 400)]))
               for n in range(60)]
    whole = tar_gz(tmp_path / "whole.tar.gz", {"part_0.ndjson": ndjson(records)})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a download cut short
    not_gzip = tmp_path / "faux.tar.gz"
    not_gzip.write_bytes(b"ceci n'est pas une archive\n")

    assert main(["ingest", str(cut), str(not_gzip), "--source", "wp", "--format", "wikipedia-dump",
                 "-w", str(workspace.root)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert re.fullmatch(rf"refused: {re.escape(str(cut))}: archive ends early or is corrupt after part_0\.ndjson:"
                        r"(\d+), the rest is not readable: .+", err[0])
    read = int(re.search(r"ndjson:(\d+)", err[0])[1])
    assert err[1].startswith(f"refused: {not_gzip}: archive ends early or is corrupt, the rest is not readable: ")
    assert 10 < read < 50
    assert sorted(by_id(workspace, "wp")) == sorted(f"wp:fr:{100 + n}" for n in range(read))


def test_filters_need_the_dump_format_and_a_readable_titles_file(workspace: Workspace, tmp_path: Path):
    path = tmp_path / "dump.ndjson"
    path.write_bytes(ndjson(dump_records()))
    done = run_cli(workspace, "ingest", str(path), "--source", "wp", "--categories", "Institution")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "overton: error: --titles and --categories apply to --format wikipedia-dump only\n"
    done = run_cli(workspace, "ingest", str(path), "--source", "wp", "--format", "wikipedia-dump",
                   "--titles", str(tmp_path / "absent.txt"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"overton: error: --titles {tmp_path / 'absent.txt'}: No such file or directory\n"
    assert workspace.raw_runs() == []


def write_big_dump(path: Path, articles: int, seed: int = 0) -> int:
    """A .tar.gz dump of ``articles`` distinct articles of ~60 KB of HTML each; returns its uncompressed size."""
    rng = random.Random(seed)
    paragraphs = [french_text(rng, 120) for _ in range(400)]
    lines = path.with_suffix(".ndjson")
    with open(lines, "wb") as handle:
        for n in range(articles):
            html = parsoid(f"Article {n}", rng.sample(paragraphs, 60), ("Politique",))
            handle.write(ndjson([enterprise(f"Article {n}", 1000 + n, html, ("Politique",))]))
    size = lines.stat().st_size
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        archive.add(lines, arcname="part_0.ndjson")
    lines.unlink()
    return size


def test_memory_stays_flat_on_a_large_dump(workspace: Workspace, tmp_path: Path):
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak RSS is read from /proc (Linux)")
    small, big = tmp_path / "small.tar.gz", tmp_path / "big.tar.gz"
    small_size = write_big_dump(small, 100)
    size = write_big_dump(big, 1500, seed=1)
    assert size > 80 * MB

    small_peak, _, _ = ingest_peak_rss(workspace, small, "small")
    peak, elapsed, stdout = ingest_peak_rss(workspace, big, "big")
    print(f"\ningest of a {size / MB:.0f} MiB Enterprise dump ({big.stat().st_size / MB:.0f} MiB .tar.gz): peak RSS "
          f"{peak / MB:.0f} MiB in {elapsed:.1f} s (a {small_size / MB:.0f} MiB dump: {small_peak / MB:.0f} MiB)")
    assert stdout.startswith("imported 1500 documents from 1 files into raw/big/")
    assert peak < small_peak + 32 * MB
