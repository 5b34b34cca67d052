"""``overton crawl web``: a configured site crawled through Scrapy and trafilatura, on a local server."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from overton.corpus.workspace import Workspace
from tests.conftest import french_text, shared_file
from tests.sites import Reply, Site

ROOT = Path(__file__).resolve().parents[1]
UA = "overton-tests/0.1 (+mailto:crawl-tests@example.org)"
HTML = {"Content-Type": "text/html; charset=utf-8"}


def _article(title: str, author: str, date: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html lang='fr'><head><meta charset='utf-8'><title>{title} - La Gazette</title>"
            f"<meta name='author' content='{author}'><meta property='og:site_name' content='La Gazette'>"
            f"<meta property='article:published_time' content='{date}'></head><body>"
            "<header><nav><a href='/'>Accueil</a> | <a href='/politique/'>Politique</a> | "
            "<a href='/abonnement/offre.html'>S'abonner</a></nav></header>"
            f"<main><article><h1>{title}</h1><p class='byline'>Par {author}</p>{body}</article></main>"
            "<div class='cookies'>Ce site utilise des cookies. Accepter tout</div>"
            "<footer>© La Gazette 2024 - Mentions légales - Nous contacter</footer></body></html>")


class Gazette:
    def __init__(self, site: Site):
        self.site = site
        rng = random.Random(5)
        self.paragraphs = {}
        for i in range(1, 6):
            self.paragraphs[i] = [french_text(rng, 70) for _ in range(3)]
            site.routes[f"/politique/article-{i}.html"] = Reply(200, _article(
                f"Article {i} sur la réforme des retraites", f"Camille Auteur{i}", f"2024-05-0{i}T08:00:00+02:00",
                self.paragraphs[i]), HTML)
        links = "".join(f"<li><a href='/politique/article-{i}.html'>Article {i}</a></li>" for i in (1, 2, 3))
        site.routes["/politique/"] = Reply(200, (
            f"<html><body><ul>{links}</ul><a href='/prive/secret.html'>privé</a>"
            f"<a href='{site.url('/politique/ailleurs.html', host='localhost')}'>ailleurs</a>"
            "<a href='https://fr.wikipedia.org/wiki/Assembl%C3%A9e_nationale'>Wikipédia</a>"
            "<a href='/abonnement/offre.html'>offre</a></body></html>"), HTML)
        site.routes["/prive/secret.html"] = Reply(200, _article("Secret", "X", "2024-01-01", ["Rien."]), HTML)
        site.routes["/abonnement/offre.html"] = Reply(200, _article("Offre", "X", "2024-01-01", ["Payez."]), HTML)
        site.routes["/rss.xml"] = Reply(200, (
            "<?xml version='1.0'?><rss version='2.0'><channel><title>Politique</title>"
            f"<item><title>Article 4</title><link>{site.url('/politique/article-4.html')}</link></item>"
            "</channel></rss>"), {"Content-Type": "application/rss+xml"})
        site.routes["/sitemap.xml"] = Reply(200, (
            "<?xml version='1.0' encoding='UTF-8'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>"
            f"<url><loc>{site.url('/politique/article-5.html')}</loc></url>"
            f"<url><loc>{site.url('/politique/article-1.html')}</loc></url></urlset>"), {"Content-Type": "text/xml"})
        site.routes["/robots.txt"] = Reply(200, "User-agent: *\nDisallow: /prive/\n", {"Content-Type": "text/plain"})

    def article_hits(self) -> list[str]:
        return sorted(h.path for h in self.site.hits if h.path.startswith(("/politique/a", "/prive/", "/abon")))


def _workspace(tmp_path: Path, site: Site, extra: str = "") -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    text = workspace.settings_path.read_text()
    text = text.replace('user_agent = ""', f'user_agent = "{UA}"').replace("delay = 2.0", "delay = 0.0")
    text = text.replace("autothrottle = true", "autothrottle = false").replace("sites = []\n", "")
    text += (f"\n[[crawl.web.sites]]\nname = \"gazette\"\nstart_urls = [\"{site.url('/politique/')}\"]\n"
             f"feeds = [\"{site.url('/rss.xml')}\"]\nsitemaps = [\"{site.url('/sitemap.xml')}\"]\n"
             f"deny = [\"/abonnement/\"]\n{extra}")
    workspace.settings_path.write_text(text)
    return workspace


def crawl(workspace: Workspace) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "overton", "crawl", "web", "-w", str(workspace.root), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=90)


def raw_documents(workspace: Workspace) -> list[dict]:
    return [row for run in workspace.raw_runs() for part in run.parts() for row in pq.read_table(part).to_pylist()]


def test_a_site_is_crawled_from_its_pages_feed_and_sitemap_then_only_new_articles(tmp_path: Path, site: Site):
    gazette = Gazette(site)
    workspace = _workspace(tmp_path, site, extra='profile = "qa"\n')
    done = crawl(workspace)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {run.record()["profile"] for run in workspace.raw_runs()} == {"qa"}  # the site's profile
    docs = {d["url"].rsplit("/", 1)[1]: d for d in raw_documents(workspace)}
    assert sorted(docs) == [f"article-{i}.html" for i in range(1, 6)]
    assert gazette.article_hits() == [f"/politique/article-{i}.html" for i in range(1, 6)]  # robots, deny, off-site
    first = docs["article-1.html"]
    assert first["source"] == "gazette" and first["title"] == "Article 1 sur la réforme des retraites"
    assert first["text"].split("\n\n")[-3:] == gazette.paragraphs[1]
    assert not any(word in first["text"] for word in ("cookies", "Mentions", "S'abonner", "Accueil"))
    assert first["speakers"] == [{"name": "Camille Auteur1", "role": "author"}]
    assert first["published_at"].isoformat() == "2024-05-01T06:00:00+00:00"
    assert first["redistributable"] is False and first["license"] == "LicenseRef-not-licensed"
    stats = json.loads(sorted(workspace.runs.glob("*-crawl-web.json"))[-1].read_text())["stats"]
    assert (stats["overton/wikipedia_excluded"], stats["overton/offsite_links"]) == (1, 1)
    assert stats["robotstxt/forbidden"] == 1 and stats["item_scraped_count"] == 5

    site.hits.clear()
    site.routes["/rss.xml"] = Reply(200, (
        "<?xml version='1.0'?><rss version='2.0'><channel>"
        f"<item><link>{site.url('/politique/article-4.html')}</link></item>"
        f"<item><link>{site.url('/politique/article-6.html')}</link></item></channel></rss>"))
    site.routes["/politique/article-6.html"] = Reply(200, _article(
        "Article 6 sur le budget", "Camille Auteur6", "2024-05-06", [french_text(random.Random(6), 80)]), HTML)
    done = crawl(workspace)
    assert done.returncode == 0, done.stderr[-3000:]
    assert gazette.article_hits() == ["/politique/article-6.html"]
    assert len(raw_documents(workspace)) == 6


def test_wikipedia_start_pages_and_empty_site_lists_are_refused(tmp_path: Path, site: Site):
    Gazette(site)
    workspace = _workspace(tmp_path, site)
    text = workspace.settings_path.read_text().replace(site.url("/politique/"), "https://fr.wikipedia.org/wiki/Sénat")
    workspace.settings_path.write_text(text)
    done = crawl(workspace)
    assert done.returncode == 2 and "is Wikipedia, which has its own collector" in done.stderr
    assert site.hits == []


def test_a_real_news_page_served_locally_is_extracted_without_its_boilerplate(tmp_path: Path, site: Site):
    folder = shared_file("web-pages/trafilatura-tests")
    gold = json.loads((folder / "evaldata_subset_for_staged_pages.json").read_text(encoding="utf-8"))
    url, expected = next((u, e) for u, e in gold.items() if "bondyblog.fr" in u)
    site.routes["/politique/"] = Reply(200, "<a href='/politique/paris-8.html'>Paris 8</a>", HTML)
    site.routes["/politique/paris-8.html"] = Reply(200, (folder / "html" / expected["file"]).read_bytes(), HTML)
    site.routes["/robots.txt"] = Reply(200, "User-agent: *\nAllow: /\n", {"Content-Type": "text/plain"})
    workspace = _workspace(tmp_path, site)
    text = workspace.settings_path.read_text()
    for route in ("/rss.xml", "/sitemap.xml"):
        text = text.replace(f"[\"{site.url(route)}\"]", "[]")
    workspace.settings_path.write_text(text)
    done = crawl(workspace)
    assert done.returncode == 0, done.stderr[-3000:]
    [doc] = raw_documents(workspace)
    for snippet in expected["with"]:
        assert snippet in doc["text"] or snippet in (doc["title"] or "")
    for snippet in expected["without"]:
        assert snippet not in doc["text"]


@pytest.mark.parametrize("agent", ["", "overton-bot/1.0"])
def test_a_crawl_without_a_contact_user_agent_is_refused(tmp_path: Path, site: Site, agent: str):
    Gazette(site)
    workspace = _workspace(tmp_path, site)
    workspace.settings_path.write_text(workspace.settings_path.read_text().replace(UA, agent))
    done = crawl(workspace)
    assert done.returncode == 2 and "has no contact" in done.stderr and site.hits == []


def _output(workspace: Workspace, *options: str, prelude: str = "") -> subprocess.CompletedProcess:
    """``overton crawl web`` with stderr and stdout in one stream, as a terminal or a cron mail shows them."""
    code = f"import sys; {prelude}from overton.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "crawl", "web", "-w", str(workspace.root), *options],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=90)


SCRAPY_STARTUP = ("Scrapy 2.", "Overridden settings", "Enabled extensions", "Enabled downloader middlewares",
                  "Enabled spider middlewares", "Enabled item pipelines", "Dumping Scrapy stats")


def test_crawl_logs_overtons_lines_by_default_scrapys_startup_with_verbose_and_the_verdict_last(tmp_path: Path,
                                                                                                 site: Site):
    Gazette(site)
    workspace = _workspace(tmp_path, site)
    workspace.settings_path.write_text(workspace.settings_path.read_text().replace("delay = 0.0", "delay = 0.4"))
    # A real crawl, with the progress line every 0.5 s instead of every minute so that a 3 s crawl shows it.
    done = _output(workspace, prelude="import overton.spiders.crawl as c; c.PROGRESS_SECONDS = 0.5; ")
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert not any(marker in done.stdout for marker in SCRAPY_STARTUP), done.stdout
    assert re.fullmatch(r"crawl web: finished, \d+ requests, 5 documents in 1 raw batches", lines[-1]), done.stdout
    progress = [line for line in lines if " [overton.spiders.crawl] INFO: crawl web: " in line]
    assert len(progress) >= 2, done.stdout
    assert all(re.search(r"INFO: crawl web: \d+ pages fetched \(\d+/min\), \d documents so far$", line)
               for line in progress)
    assert not any(" INFO: " in line for line in lines if line not in progress), done.stdout
    # --verbose: everything Scrapy says at INFO, the verdict still last.
    verbose = _output(workspace, "--verbose")
    assert verbose.returncode == 0, verbose.stdout
    assert all(marker in verbose.stdout for marker in SCRAPY_STARTUP), verbose.stdout
    assert re.fullmatch(r"crawl web: finished, \d+ requests, 0 documents in 0 raw batches",
                        verbose.stdout.splitlines()[-1]), verbose.stdout
    # --quiet: warnings and errors only; a failed crawl's reasons come before the verdict.
    site.routes["/robots.txt"] = Reply(200, "User-agent: *\nDisallow: /\n", {"Content-Type": "text/plain"})
    quiet = _output(workspace, "--quiet", prelude="import overton.spiders.crawl as c; c.PROGRESS_SECONDS = 0.5; ")
    assert quiet.returncode == 1, quiet.stdout
    lines = quiet.stdout.splitlines()
    assert not any(" INFO: " in line for line in lines), quiet.stdout
    assert any(" ERROR: start page refused (robots.txt or off-site): " in line for line in lines), quiet.stdout
    assert lines[-2].startswith("FAILED: ") and lines[-1].startswith("crawl web: finished, "), quiet.stdout
    both = _output(workspace, "--quiet", "--verbose")
    assert both.returncode == 2 and "argument --verbose/-v: not allowed with argument --quiet/-q" in both.stdout
