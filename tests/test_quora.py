"""Quora: `overton crawl quora` (permission first, robots.txt first, no cookies) and `overton ingest --format
quora-html` (saved question pages), both through one parser, authors as keyed pseudonyms.

The pages in tests/fixtures/quora are written for these tests in the shape of Quora's pages; the crawl tests
serve them from a local server standing in for fr.quora.com.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from overton.corpus.config import TEMPLATE, parse_config, set_setting
from overton.corpus.dataset import Version
from overton.corpus.errors import UserError
from overton.corpus.schema import load_meta
from overton.corpus.workspace import Workspace
from overton.spiders.collectors.quora import QuoraSpider
from overton.spiders.formats import Record, Refusal, read
from overton.spiders.quora_html import LICENSE, Author, NotQuestionPage, Pseudonyms, documents, parse
from tests.sites import Reply, Site

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "quora"
UA = "overton-tests/0.1 (+mailto:crawl-tests@example.org)"
SENAT = "Le-Sénat-sert-il-encore-à-quelque-chose-sous-la-Ve-République"
PROPORTIONNELLE = "Faut-il-introduire-la-proportionnelle-aux-élections-législatives"
PATHS = {  # as Quora spells them, and as the crawler requests them
    "senat.html": "/Le-S%C3%A9nat-sert-il-encore-%C3%A0-quelque-chose-sous-la-Ve-R%C3%A9publique",
    "proportionnelle.html": "/Faut-il-introduire-la-proportionnelle-aux-%C3%A9lections-l%C3%A9gislatives",
    "topic-politique.html": "/topic/Politique-fran%C3%A7aise",
}
#: Every author's name and profile name in the fixtures: none may reach a document.
AUTHOR_NAMES = ("Élodie", "Marchand", "Bastien", "Lefort", "Karim", "Benali", "Nicolas", "Perrin", "Anonyme-87",
                "Juriste", "Professeur d'histoire", "Étudiant en science")
PSEUDONYM = re.compile(r"^auteur-[0-9a-f]{10}$")


def overton(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "overton", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def raw_documents(workspace: Workspace) -> list[dict]:
    return [row for run in workspace.raw_runs() for part in run.parts() for row in pq.read_table(part).to_pylist()]


def names_in(rows: list[dict]) -> list[str]:
    dump = json.dumps(rows, ensure_ascii=False, default=str)
    return [name for name in AUTHOR_NAMES if name in dump]


# ---------------------------------------------------------------- the parser


def test_a_question_page_is_its_question_and_its_answers_with_pseudonymous_authors(tmp_path: Path):
    page = parse((FIXTURES / "senat.html").read_bytes())
    assert (page.key, page.answer_count, page.details, page.author) == (SENAT, 3, "", None)
    assert page.url == "https://fr.quora.com" + PATHS["senat.html"]
    assert [(a.position, a.upvotes, a.published_at.isoformat()) for a in page.answers] == [
        (1, 37, "2021-03-12T09:14:00+00:00"), (2, 12, "2022-11-05T18:40:00+00:00"),
        (3, 3, "2023-01-20T07:05:00+00:00")]
    assert page.answers[0].text.split("\n\n")[1].startswith("Il représente aussi les collectivités")
    assert page.answers[0].author == Author("Élodie Marchand", "fr.quora.com/profile/Élodie-Marchand-4")
    assert page.answers[2].author is None  # "Anonyme" is nobody

    pseudonyms = Pseudonyms(tmp_path / "state")
    question, answers = documents(page, "quora", pseudonyms)
    assert question["id"] == f"quora:{SENAT}" and question["kind"] == "question"
    assert question["text"] == "Le Sénat sert-il encore à quelque chose sous la Ve République ?"
    assert [a["kind"] for a in answers] == ["answer"] * 3
    assert all(re.fullmatch(rf"quora:{re.escape(SENAT)}/answer-[0-9a-f]{{10}}", a["id"]) for a in answers)
    assert len({a["id"] for a in answers}) == 3
    for answer in answers:
        assert answer["meta"]["question_id"] == question["id"] and answer["meta"]["question"] == question["text"]
        assert answer["url"] == page.url and answer["title"] == question["text"]
        assert (answer["license"], answer["redistributable"]) == (LICENSE, False)
    assert [len(a["speakers"]) for a in answers] == [1, 1, 0]
    assert all(PSEUDONYM.match(a["speakers"][0]["name"]) for a in answers[:2])
    assert answers[0]["speakers"][0]["name"] != answers[1]["speakers"][0]["name"]
    assert names_in([question, *answers]) == []
    assert "de Gaulle" in answers[2]["text"]  # names inside the text are not rewritten

    other = parse((FIXTURES / "proportionnelle.html").read_bytes())
    assert other.details.startswith("On en parle avant chaque élection.")
    assert "\n\n" in other.answers[0].text and "<" not in other.answers[0].text  # its JSON-LD text is HTML
    question2, answers2 = documents(other, "quora", Pseudonyms(tmp_path / "state"))
    assert answers2[0]["speakers"] == answers[0]["speakers"]  # the same author: the same pseudonym
    assert question2["text"] == f"{other.question}\n\n{other.details}" and PSEUDONYM.match(
        question2["speakers"][0]["name"])


def test_pseudonyms_are_keyed_by_one_secret_per_workspace(tmp_path: Path):
    author = Author("Élodie Marchand", "fr.quora.com/profile/Élodie-Marchand-4")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(Pseudonyms(tmp_path / "a").author(author)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1, "creators racing end with one secret"
    secret = tmp_path / "a" / "pseudonym.key"
    assert secret.stat().st_mode & 0o777 == 0o600 and [p.name for p in (tmp_path / "a").iterdir()] == [secret.name]
    assert Pseudonyms(tmp_path / "b").author(author) != results[0], "another workspace, other pseudonyms"
    assert Pseudonyms(tmp_path / "a").author(Author("Élodie Marchand", None)) != results[0]  # keyed by profile

    secret.write_text("0123\n")
    with pytest.raises(Exception, match="pseudonym.key is damaged"):
        Pseudonyms(tmp_path / "a").author(author)


@pytest.mark.parametrize("change, why", [
    (lambda page: page.replace("https://fr.quora.com/", "https://forum.example.org/"),
     "not a Quora page: its address is https://forum.example.org/"),
    (lambda page: re.sub(r'<script type="application/ld\+json">.*?</script>', "", page, flags=re.S),
     "not a Quora question page: no schema.org QAPage data"),
    (lambda page: page.replace('{"@context"', '{"@context": ,'), "malformed schema.org JSON-LD"),
])
def test_pages_that_are_not_quora_question_pages_are_refused_with_the_reason(tmp_path: Path, change, why):
    path = tmp_path / "page.html"
    path.write_text(change((FIXTURES / "senat.html").read_text(encoding="utf-8")), encoding="utf-8")
    items = list(read(path, "quora-html", "page", source="quora", pseudonyms=Pseudonyms(tmp_path / "state")))
    assert len(items) == 1 and isinstance(items[0], Refusal) and items[0].where == str(path)
    assert items[0].why.startswith(why)
    with pytest.raises(NotQuestionPage):
        parse((FIXTURES / "profil.html").read_bytes())


def test_an_answer_without_text_is_refused_and_its_page_still_read(tmp_path: Path):
    page = (FIXTURES / "senat.html").read_text(encoding="utf-8")
    third = page.index('"text": "Il faut se souvenir')
    path = tmp_path / "page.html"
    path.write_text(page[:third] + '"text": " ", "_was": "' + page[third + len('"text": "'):], encoding="utf-8")
    items = list(read(path, "quora-html", "page", source="quora", pseudonyms=Pseudonyms(tmp_path / "state")))
    assert [item.where.removeprefix(str(path)) for item in items] == [
        "#question", "#answer-3", "#answer-1", "#answer-2"]
    assert isinstance(items[1], Refusal) and items[1].why == "no text"
    assert [type(item) for item in items].count(Record) == 3


# ---------------------------------------------------------------- overton ingest --format quora-html


def test_saved_pages_are_ingested_and_built_without_author_names(tmp_path: Path):
    workspace = Workspace.init(tmp_path / "ws")
    ws = str(workspace.root)
    first = overton("ingest", str(FIXTURES / "senat.html"), "--source", "quora", "--format", "quora-html", "-w", ws)
    assert first.returncode == 0, first.stderr
    assert "imported 4 documents from 1 files" in first.stdout and "(profile qa)" in first.stdout
    pages = tmp_path / "saved"
    pages.mkdir()
    (pages / "proportionnelle.html").write_bytes((FIXTURES / "proportionnelle.html").read_bytes())
    (pages / "profil.html").write_bytes((FIXTURES / "profil.html").read_bytes())
    second = overton("ingest", str(pages / "proportionnelle.html"), str(pages / "profil.html"), "--source", "quora",
                     "--format", "quora-html", "-w", ws)
    assert second.returncode == 1, second.stderr  # something was refused
    assert f"refused: {pages / 'profil.html'}: not a Quora question page: no schema.org QAPage data (save the " \
           "question page itself)" in second.stderr.splitlines()
    assert "imported 3 documents from 2 files" in second.stdout and "refused 1" in second.stdout

    raw = raw_documents(workspace)
    assert {run.record()["profile"] for run in workspace.raw_runs()} == {"qa"}
    by_id = {row["id"]: row for row in raw}
    assert f"quora:{SENAT}" in by_id and f"quora:{PROPORTIONNELLE}" in by_id
    assert names_in(raw) == []
    secret = (workspace.state / "pseudonym.key").read_text().strip()
    assert all(secret not in output for output in (first.stdout, first.stderr, second.stdout, second.stderr))
    assert all(secret not in path.read_text() for path in workspace.runs.glob("*.json"))

    built = overton("build", "-w", ws, "--jobs", "1", "--quiet")
    assert built.returncode == 0, built.stderr
    version = Version.open(workspace.dataset_dir("overton"))
    kept = [row for batch in version.iter_batches("data") for row in batch.to_pylist()]
    rejected = [row for batch in version.iter_batches("rejected") for row in batch.to_pylist()]
    answers = sorted((row for row in kept if row["kind"] == "answer"), key=lambda row: row["published_at"])
    assert len(answers) == 5 and len(kept) + len(rejected) == len(raw)
    assert all(row["redistributable"] is False and row["license"] == LICENSE and row["profile"] == "qa"
               for row in kept)
    marchand = [row["speakers"] for row in answers if load_meta(row["meta"])["upvotes"] in (37, 58)]
    assert marchand[0] == marchand[1] and PSEUDONYM.match(marchand[0][0]["name"]), "stable across two ingests"
    for answer in answers:
        meta = load_meta(answer["meta"])
        question = by_id[meta["question_id"]]
        assert meta["question"] == question["title"] and answer["url"] == question["url"]
    bare = next(row for row in rejected if row["id"] == f"quora:{SENAT}")
    assert bare["kind"] == "question" and bare["reject_reason"], "an 11-word question is below the qa profile"
    assert names_in(kept + rejected) == []


# ---------------------------------------------------------------- overton crawl quora


def _serve(site: Site, robots: Reply) -> None:
    """The fixtures as fr.quora.com would serve them, each response setting a cookie."""
    headers = {"Content-Type": "text/html; charset=utf-8", "Set-Cookie": "m-b=Zm9vYmFy; Path=/; HttpOnly"}
    for name, path in PATHS.items():
        body = (FIXTURES / name).read_text(encoding="utf-8").replace("https://fr.quora.com", site.url(""))
        site.routes[path] = Reply(200, body, headers)
    site.routes["/robots.txt"] = robots


def _workspace(tmp_path: Path, site: Site, permission: str = "licence QD-2025-014", max_pages: int = 100,
               start: str = '["/topic/Politique-française"]') -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    text = workspace.settings_path.read_text(encoding="utf-8")
    text = text.replace('user_agent = ""', f'user_agent = "{UA}"').replace("delay = 2.0", "delay = 0.0")
    text = text.replace("autothrottle = true", "autothrottle = false")
    for key, value in (("permission", json.dumps(permission)), ("base_url", json.dumps(site.url(""))),
                       ("start_urls", start), ("max_pages", str(max_pages))):
        text = set_setting(text, "crawl.quora", key, value)
    workspace.settings_path.write_text(text, encoding="utf-8")
    return workspace


def crawl(workspace: Workspace) -> subprocess.CompletedProcess:
    return overton("crawl", "quora", "-w", str(workspace.root), "--quiet", timeout=90)


ROBOTS_NAMING_US = Reply(200, "User-agent: overton-tests\nAllow: /\n\nUser-agent: *\nDisallow: /\n",
                         {"Content-Type": "text/plain", "Set-Cookie": "m-b=Zm9vYmFy; Path=/"})
ROBOTS_CLOSED = Reply(200, "User-agent: Googlebot\nAllow: /\n\nUser-agent: *\nDisallow: /\n",
                      {"Content-Type": "text/plain"})


def test_without_a_permission_the_crawl_is_refused_before_any_request(tmp_path: Path, site: Site):
    _serve(site, ROBOTS_NAMING_US)
    done = crawl(_workspace(tmp_path, site, permission=" "))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "overton: error: Quora's terms of use forbid collecting its content (for AI training too) without a licence: "
        "set [crawl.quora] permission to the reference of the licence or agreement you hold"]
    assert site.hits == []


@pytest.mark.parametrize("start, why", [
    ("[]", "no start page: set [crawl.quora] start_urls"),
    ('["https://www.quora.com/topic/Politics"]', "is not on"),
    ('["/profile/Bastien-Lefort"]', "is neither a question page"),
])
def test_start_pages_that_are_not_questions_or_topics_of_the_site_are_refused(start: str, why: str):
    text = TEMPLATE
    for key, value in (("permission", '"licence"'), ("base_url", '"http://127.0.0.1:8000"'), ("start_urls", start)):
        text = set_setting(text, "crawl.quora", key, value)
    with pytest.raises(UserError, match=re.escape(why)):
        QuoraSpider.check(parse_config(text).crawl)


def test_robots_txt_is_read_first_and_a_disallowed_page_is_never_requested(tmp_path: Path, site: Site):
    _serve(site, ROBOTS_CLOSED)
    workspace = _workspace(tmp_path, site, start=f'["/topic/Politique-française", "{PATHS["senat.html"]}"]')
    done = crawl(workspace)
    assert done.returncode == 1, done.stderr
    robots = site.url("/robots.txt")
    assert (f"{robots} disallows {site.url('/topic/Politique-française')} for User-Agent '{UA}': not fetched "
            "(a permission does not override robots.txt)") in done.stderr
    assert "FAILED: a start page was refused (robots.txt disallows it, or it is off-site)" in done.stderr
    assert [hit.path for hit in site.hits] == ["/robots.txt"]
    assert list(workspace.raw_runs()) == []


def test_settings_cannot_turn_robots_txt_off_or_cookies_on(tmp_path: Path, site: Site):
    """``scrapy crawl`` takes any setting on its command line; the collector pins the ones that matter."""
    _serve(site, ROBOTS_CLOSED)
    workspace = _workspace(tmp_path, site)
    done = subprocess.run([sys.executable, "-m", "scrapy", "crawl", "quora",
                           "-s", f"OVERTON_WORKSPACE={workspace.root}",
                           "-s", "ROBOTSTXT_OBEY=False", "-s", "ROBOTSTXT_USER_AGENT=Googlebot",
                           "-s", "COOKIES_ENABLED=True", "-s", "LOG_LEVEL=ERROR"],
                          cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert "disallows" in done.stderr, done.stderr[-3000:]
    assert [hit.path for hit in site.hits] == ["/robots.txt"]


def test_an_unreadable_robots_txt_stops_the_crawl_before_any_page(tmp_path: Path, site: Site):
    _serve(site, Reply(503, "busy", {"Retry-After": "0"}))
    done = crawl(_workspace(tmp_path, site))
    assert done.returncode == 1
    assert f"{site.url('/robots.txt')} could not be read (HTTP 503): nothing is fetched" in done.stderr
    assert {hit.path for hit in site.hits} == {"/robots.txt"}  # and its retries


def test_allowed_pages_are_fetched_once_without_cookies_then_only_new_questions(tmp_path: Path, site: Site):
    _serve(site, ROBOTS_NAMING_US)
    workspace = _workspace(tmp_path, site, max_pages=1)
    question_paths = [PATHS["senat.html"], PATHS["proportionnelle.html"]]
    runs = []
    for _ in range(3):
        site.hits.clear()
        done = crawl(workspace)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append([hit.path for hit in site.hits])
        assert all(hit.header("Cookie") is None for hit in site.hits), "no cookie is ever sent back"
        assert {hit.header("User-Agent") for hit in site.hits} == {UA}
    # robots.txt first, once per run; one new question per run (max_pages = 1), then nothing new.
    assert runs == [["/robots.txt", PATHS["topic-politique.html"], question_paths[0]],
                    ["/robots.txt", PATHS["topic-politique.html"], question_paths[1]],
                    ["/robots.txt", PATHS["topic-politique.html"]]]
    raw = raw_documents(workspace)
    assert sorted(row["kind"] for row in raw) == ["answer"] * 5 + ["question"] * 2
    assert len({row["id"] for row in raw}) == 7, "each document written once"
    assert {run.record()["profile"] for run in workspace.raw_runs()} == {"qa"}
    by_id = {row["id"]: row for row in raw}
    senat = by_id[f"quora:{SENAT}"]
    assert senat["url"] == site.url(PATHS["senat.html"]) and senat["redistributable"] is False
    for row in raw:
        meta = load_meta(row["meta"])
        assert meta["permission"] == "licence QD-2025-014" and row["license"] == LICENSE
        if row["kind"] == "answer":
            assert by_id[meta["question_id"]]["title"] == meta["question"] == row["title"]
    assert names_in(raw) == []
    stats = json.loads(sorted(workspace.runs.glob("*-crawl-quora.json"))[-1].read_text())["stats"]
    assert stats["overton/already_seen"] == 2 and stats["robotstxt/request_count"] == 1


def test_a_question_that_robots_txt_disallows_is_skipped_by_name(tmp_path: Path, site: Site):
    _serve(site, Reply(200, "User-agent: overton-tests\nDisallow: /Faut-il-\n", {"Content-Type": "text/plain"}))
    workspace = _workspace(tmp_path, site)
    done = crawl(workspace)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [hit.path for hit in site.hits] == ["/robots.txt", PATHS["topic-politique.html"], PATHS["senat.html"]]
    assert f"question not fetched: {site.url(PATHS['proportionnelle.html'])}: Forbidden by robots.txt" in done.stderr
    assert len(raw_documents(workspace)) == 4


def test_a_bot_challenge_fails_the_crawl_and_is_not_worked_around(tmp_path: Path, site: Site):
    _serve(site, ROBOTS_NAMING_US)
    site.routes[PATHS["senat.html"]] = Reply(403, "<html><head><title>Just a moment...</title></head><body>Enable "
                                             "JavaScript and cookies to continue</body></html>",
                                             {"Content-Type": "text/html"})
    workspace = _workspace(tmp_path, site)
    done = crawl(workspace)
    assert done.returncode == 1
    assert "FAILED: 1 bot-challenge pages instead of content" in done.stderr
    assert len(site.hits_of(PATHS["senat.html"])) == 1 and len(raw_documents(workspace)) == 3
