"""``overton crawl wikipedia`` against a fake MediaWiki API: categories, revisions, etiquette, faults, kills.

Every crawl is the real command in a subprocess against :class:`tests.wikiapi.Wiki` on 127.0.0.1; the
assertions read the API calls the crawler made, the raw Parquet files, the run records and the seen-store.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.spiders.collectors.wikipedia import _category_name
from overton.spiders.seen import SeenStore
from tests.conftest import french_text
from tests.sites import Reply, Site
from tests.wikiapi import API, Wiki, api_error

ROOT = Path(__file__).resolve().parents[1]
UA = "overton-tests/0.1 (+mailto:crawl-tests@example.org)"


def configure(workspace: Workspace, site: Site, categories: list[tuple[str, int]], *, max_pages: int = 0,
              batch_items: int = 100) -> None:
    text = workspace.settings_path.read_text()
    for old, new in [('user_agent = ""', f'user_agent = "{UA}"'), ("delay = 2.0", "delay = 0.0"),
                     ("autothrottle = true", "autothrottle = false"),
                     ("batch_items = 100", f"batch_items = {batch_items}"),
                     ('"https://fr.wikipedia.org/w/api.php"', f'"{site.url(API)}"'),
                     ("max_pages = 0\n# Sent with", f"max_pages = {max_pages}\n# Sent with")]:
        assert old in text
        text = text.replace(old, new)
    workspace.settings_path.write_text(text)
    set_categories(workspace, categories)


def set_categories(workspace: Workspace, categories: list[tuple[str, int]]) -> None:
    roots = ", ".join(f'{{ name = "{name}", depth = {depth} }}' for name, depth in categories)
    text, replaced = re.subn(r"^categories = \[\n?(    \{.*\},\n)*\]$|^categories = \[\{.*\}\]$",
                             f"categories = [{roots}]", workspace.settings_path.read_text(), flags=re.M)
    assert replaced == 1
    workspace.settings_path.write_text(text)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


def crawl(workspace: Workspace, timeout: int = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "overton", "crawl", "wikipedia", "-w", str(workspace.root), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def raw_documents(workspace: Workspace) -> list[dict]:
    return [row for run in workspace.raw_runs() for part in run.parts() for row in pq.read_table(part).to_pylist()]


def last_record(workspace: Workspace) -> dict:
    return json.loads(sorted(workspace.runs.glob("*-crawl-wikipedia.json"))[-1].read_text())


def paragraphs(pageid: int, words: int = 60) -> list[str]:
    rng = random.Random(pageid)
    return [french_text(rng, words), french_text(rng, words)]


def articles(wiki: Wiki, *pageids: int) -> list[int]:
    for pageid in pageids:
        wiki.article(pageid, f"Article {pageid}", paragraphs(pageid))
    return list(pageids)


def test_categories_then_a_nightly_run_fetches_only_what_changed(ws: Workspace, site: Site):
    """A tree with continuation, a cycle, an article in two categories, a depth limit, a missing page and a
    redirect; then a night with one changed revision, one new member and one member gone."""
    wiki = Wiki(site, page_size=3)
    articles(wiki, *range(101, 112), 114)
    wiki.pages[108].gone = "info"  # listed, then deleted: the info request finds it missing
    wiki.article(113, "Redirection", []).redirect = True
    courants = wiki.category("Courants", 110)  # 3 levels below the root: beyond depth 2
    disparus = wiki.category("Partis disparus", 109, courants)
    root = wiki.category("Politique en France")
    partis = wiki.category("Partis", 105, 106, 102, disparus, root)  # 102 is in the root too; a cycle
    elections = wiki.category("Élections", 107, 108, 113)
    wiki.category("Politique en France", 101, 102, partis, 103, elections, 104)  # 6 members: 2 listing pages
    wiki.category("Science politique", 111, wiki.category("Théorie", 112))  # depth 0: its own articles only
    configure(ws, site, [("Politique en France", 2), ("science_politique", 0)], batch_items=4)

    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "9 documents in 3 raw batches" in done.stdout
    listings = [(c["cmtitle"], c.get("cmcontinue")) for c in wiki.calls_of("list")]
    assert listings == [("Category:Politique en France", None), ("Category:Politique en France", "page|3"),
                        ("Category:Partis", None), ("Category:Partis", "page|3"), ("Category:Élections", None),
                        ("Category:Science politique", None), ("Category:Partis disparus", None)]
    assert wiki.calls[0]["meta"] == "siteinfo" and "meta" not in wiki.calls[1]
    [info] = wiki.calls_of("info")
    assert info["pageids"] == "|".join(str(i) for i in [*range(101, 110), 111, 113])
    assert (info["prop"], info["inprop"], info["rvprop"]) == ("info|revisions", "url", "ids|timestamp")
    assert sorted(wiki.parsed()) == [i * 10 for i in (101, 102, 103, 104, 105, 106, 107, 109, 111)]  # each once
    assert all((c["format"], c["formatversion"], c["maxlag"]) == ("json", "2", "5") for c in wiki.calls)
    assert all(h.header("User-Agent") == UA for h in site.hits)
    assert {h.path.split("?")[0] for h in site.hits} == {"/w/api.php"}  # the API only: no robots.txt, no page

    docs = {d["id"]: d for d in raw_documents(ws)}
    assert len(docs) == 9 and "wikipedia:fr:110" not in docs and "wikipedia:fr:112" not in docs
    doc = docs["wikipedia:fr:105"]
    assert (doc["source"], doc["title"], doc["url"]) == ("wikipedia", "Article 105", site.url("/wiki/Article_105"))
    assert (doc["license"], doc["redistributable"], doc["kind"]) == ("CC-BY-SA-4.0", True, "article")
    assert doc["text"] == "\n\n".join(paragraphs(105))  # the portal banner and the references are left out
    assert doc["published_at"].isoformat() == "2024-05-01T10:00:00+00:00"
    meta = json.loads(doc["meta"])
    assert (meta["pageid"], meta["revid"], meta["categories"]) == (105, 1050, ["Politique en France"])
    assert meta["attribution"].startswith("Wikipédia, l'encyclopédie libre, http://127.0.0.1:")
    assert {run.record()["profile"] for run in ws.raw_runs()} == {"encyclopedia"}
    stats = last_record(ws)["stats"]
    assert (stats["overton/pages_missing"], stats["overton/redirects_skipped"], stats["overton/listing_requests"],
            stats["overton/info_requests"], stats["overton/articles_listed"]) == (1, 1, 7, 1, 11)
    assert "overton/pages_removed" not in stats

    # the night after: 105 edited, 114 added to Élections, 106 taken out of Partis
    wiki.pages[105].revid = 1051
    wiki.members["Élections"].append(114)
    wiki.members["Partis"].remove(106)
    wiki.calls.clear()
    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (len(wiki.calls_of("list")), len(wiki.calls_of("info")), sorted(wiki.parsed())) == (8, 1, [1051, 1140])
    assert len(wiki.calls) == 11  # listing and info, then only the two pages
    record = last_record(ws)
    assert (record["exit_code"], record["stats"]["overton/pages_removed"]) == (0, 1)
    assert record["stats"]["overton/removed_pages"] == ["fr:106"]
    assert record["stats"]["overton/already_seen"] == 7
    with SeenStore(ws.state / "seen.sqlite3") as seen:
        assert seen.get("wikipedia.removed", "fr:106").content_hash == "removed"
        assert seen.get("wikipedia", "fr:105").content_hash == "1051"
    docs = raw_documents(ws)
    assert len(docs) == 11 and [d["id"] for d in docs].count("wikipedia:fr:106") == 1  # nothing deleted

    # a quiet night: nothing fetched, 106 not reported again; once back in a category, it is listed again
    wiki.calls.clear()
    assert crawl(ws).returncode == 0 and wiki.calls_of("parse") == []
    assert "overton/pages_removed" not in last_record(ws)["stats"]
    wiki.members["Partis"].append(106)
    assert crawl(ws).returncode == 0 and wiki.calls_of("parse") == []
    assert last_record(ws)["stats"]["overton/pages_listed_again"] == 1
    with SeenStore(ws.state / "seen.sqlite3") as seen:
        assert seen.get("wikipedia.removed", "fr:106").content_hash == "listed again"


def test_lag_rate_limits_deletions_and_the_page_cap(ws: Workspace, site: Site):
    """maxlag and 429 are waited out as the server asks; a page deleted before its fetch is skipped; max_pages
    defers the rest, 50 page ids an info request."""
    wiki = Wiki(site, page_size=500)
    pageids = articles(wiki, *range(201, 261))
    wiki.category("Idéologie politique", *pageids)
    wiki.pages[203].gone = "parse"
    wiki.faults = [(lambda p: wiki.kind(p) == "info", api_error("maxlag", "Waiting for 10.0.0.1: 7 seconds lagged.",
                                                                **{"Retry-After": "1", "X-Database-Lag": "7"})),
                   (lambda p: p.get("oldid") == "2050", Reply(429, "Too many requests", {"Retry-After": "1"}))]
    configure(ws, site, [("Idéologie politique", 1)], max_pages=25, batch_items=10)

    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    infos = [c["pageids"].split("|") for c in wiki.calls_of("info")]
    assert [len(i) for i in infos] == [50, 50, 10] and infos[0] == infos[1]  # the lagged one, asked again
    info_hits = [h for h in site.hits if "prop=info" in h.path]
    assert info_hits[1].time - info_hits[0].time >= 1.0
    parse_hits = [h for h in site.hits if "oldid=2050" in h.path]
    assert len(parse_hits) == 2 and parse_hits[1].time - parse_hits[0].time >= 1.0
    assert sorted(set(wiki.parsed())) == [i * 10 for i in range(201, 226)]  # the 25 smallest page ids
    ids = sorted(d["id"] for d in raw_documents(ws))
    assert ids == [f"wikipedia:fr:{i}" for i in range(201, 226) if i != 203]
    stats = last_record(ws)["stats"]
    assert (stats["overton/maxlag_waits"], stats["retry_after/waited"], stats["overton/pages_missing"],
            stats["overton/deferred_to_next_run"], stats["overton/pages_requested"]) == (1, 2, 1, 35, 25)

    # the next night, without a cap, fetches the 35 deferred ones (and 203 is still gone)
    ws.settings_path.write_text(ws.settings_path.read_text().replace("max_pages = 25", "max_pages = 0"))
    wiki.calls.clear()
    assert crawl(ws).returncode == 0
    assert sorted(wiki.parsed()) == [i * 10 for i in [203, *range(226, 261)]]
    assert len(raw_documents(ws)) == 59


def test_killed_crawl_resumes_with_every_article_exactly_once(ws: Workspace, site: Site):
    wiki = Wiki(site, page_size=500)
    wiki.category("Politique en France", *articles(wiki, *range(301, 331)))
    respond = wiki.reply
    site.routes[API] = lambda hit: (time.sleep(0.05) if "action=parse" in hit.path else None, respond(hit))[1]
    configure(ws, site, [("Politique en France", 0)], batch_items=2)
    process = subprocess.Popen([sys.executable, "-m", "overton", "crawl", "wikipedia", "-w", str(ws.root), "--quiet"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(ws.raw_runs()) < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    committed = {int(d["id"].rsplit(":", 1)[1]) for d in raw_documents(ws)}
    assert 8 <= len(committed) < 30, "kill the crawl in the middle"
    time.sleep(0.2)  # the answer in flight at the kill
    wiki.calls.clear()
    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = [d["id"] for d in raw_documents(ws)]
    assert len(ids) == len(set(ids)) == 30
    # fetched again: exactly what was not committed (pages downloaded but not yet in a committed batch included)
    assert sorted(wiki.parsed()) == [i * 10 for i in range(301, 331) if i not in committed]


def test_overton_build_judges_crawled_articles_by_the_encyclopedia_profile(ws: Workspace, site: Site):
    wiki = Wiki(site)
    wiki.category("Science politique", *articles(wiki, 401, 402, 403))
    configure(ws, site, [("Science politique", 0)])
    assert crawl(ws).returncode == 0
    done = subprocess.run([sys.executable, "-m", "overton", "build", "--quiet", "-w", str(ws.root)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    version = Version.open(ws.datasets / "overton")
    counts = version.manifest["counts"]["sources"]["wikipedia"]
    assert (counts["input"], counts["kept"], counts["profiles"]) == (3, 3, {"encyclopedia": 3})
    assert {i["profile"] for i in version.manifest["inputs"]} == {"encyclopedia"}
    rows = [row for batch in version.iter_batches("data", columns=["id", "license", "redistributable"])
            for row in batch.to_pylist()]
    assert sorted(rows, key=lambda r: r["id"]) == [
        {"id": f"wikipedia:fr:{i}", "license": "CC-BY-SA-4.0", "redistributable": True} for i in (401, 402, 403)]


def test_the_api_follows_wikimedias_api_policy_and_a_misspelt_category_fails_the_run(ws: Workspace, site: Site):
    """Wikimedia's robots.txt keeps crawlers out of /w/ (index.php's edit and history pages): API clients are
    governed by the API policy instead, which the collector follows (User-Agent, one at a time, maxlag)."""
    wiki = Wiki(site)
    wiki.category("Science politique", *articles(wiki, 501))
    configure(ws, site, [("Science politique", 0)])
    site.routes["/robots.txt"] = Reply(200, "User-agent: *\nDisallow: /w/\n", {"Content-Type": "text/plain"})
    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [d["id"] for d in raw_documents(ws)] == ["wikipedia:fr:501"]
    assert "/robots.txt" not in [h.path for h in site.hits]

    set_categories(ws, [("Science politique", 0), ("Sciense politique", 0)])
    done = crawl(ws)
    assert done.returncode == 1 and "category 'Sciense politique' has no member" in done.stderr
    assert [d["id"] for d in raw_documents(ws)] == ["wikipedia:fr:501"]  # what was found is kept

    # every run resumes from the seen-store: Scrapy's request queue would hold requests of a past listing
    wiki.calls.clear()
    done = subprocess.run([sys.executable, "-m", "overton", "crawl", "wikipedia", "-w", str(ws.root), "--resumable"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "has no use for --resumable" in done.stderr and wiki.calls == []


def test_category_names_are_normalised_as_mediawiki_does():
    assert [_category_name(n) for n in ("science_politique", "Catégorie:Politique en France", "Élection : résultats",
                                        "category: élections_en_France")] == [
        "Science politique", "Politique en France", "Élection : résultats", "Élections en France"]
    assert _category_name("Catégorie:Élection : résultats", listed=True) == "Élection : résultats"
