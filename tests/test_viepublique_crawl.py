"""``overton crawl vie-publique`` against a local copy of the site: catalogue diff, pages, faults, kills.

Every crawl is the real command in a subprocess (Scrapy's reactor cannot restart in one process)
against the ``site`` fixture's HTTP server on 127.0.0.1; the assertions read the raw Parquet files,
the run records and the server's request log.
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

from overton.corpus.workspace import Workspace
from overton.spiders.crawl import spiders
from tests.conftest import french_text
from tests.sites import Hit, Reply, Site

ROOT = Path(__file__).resolve().parents[1]
UA = "overton-tests/0.1 (+mailto:crawl-tests@example.org)"
CATALOGUE = "/OPENDATA/vp_discours.json"


def _page(title: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html lang='fr'><head><title>{title} | vie-publique.fr</title></head><body>"
            f"<header><nav><a href='/discours'>Discours</a><a href='/fiches'>Fiches</a></nav></header>"
            f"<main><article><div class='discour--desc'><h1>{title}</h1></div>"
            f"<div class='field field--name-field-texte-integral'>{body}</div></article></main>"
            f"<footer>vie-publique.fr est un site de la DILA. Mentions légales</footer></body></html>")


class Speeches:
    """The site: a catalogue of ``n`` speeches (ETag = its version) and their pages."""

    def __init__(self, site: Site, n: int, seed: int = 1):
        self.site, self.version = site, 1
        rng = random.Random(seed)
        self.records = []
        for i in range(n):
            key = str(300001 + i)
            self.records.append({
                "id": key, "titre": f"Déclaration numéro {i} sur la politique du logement",
                "url": site.url(f"/discours/{key}-declaration-{i}") + "?xtor=RSS-1",
                "prononciation": f"2024-0{1 + i % 9}-1{i % 10}", "type_document": "Déclaration",
                "intervenants": [{"nom": f"Ministre {i}", "qualite": "Ministre du logement"}],
                "thematiques": ["Logement"], "descripteurs": ["Logement social"], "mise_a_jour": "2024-03-01"})
            paragraphs = [french_text(rng, 60) for _ in range(3)] + [f"Source : https://www.gouvernement.fr, {i}"]
            site.routes[f"/discours/{key}-declaration-{i}"] = Reply(
                200, _page(self.records[-1]["titre"], paragraphs), {"Content-Type": "text/html; charset=utf-8"})
        site.routes["/robots.txt"] = Reply(200, "User-agent: *\nDisallow: /admin/\n", {"Content-Type": "text/plain"})
        site.routes[CATALOGUE] = self.catalogue

    def catalogue(self, hit: Hit) -> Reply:
        etag = f'"catalogue-v{self.version}"'
        if hit.header("If-None-Match") == etag:
            return Reply(304, b"", {"ETag": etag})
        body = json.dumps(self.records, ensure_ascii=False).encode()
        return Reply(200, body, {"Content-Type": "application/json", "ETag": etag})

    def page_hits(self) -> list[str]:
        return [h.path for h in self.site.hits if h.path.startswith("/discours/")]


@pytest.fixture
def ws(tmp_path: Path, site: Site) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    text = workspace.settings_path.read_text()
    for old, new in [('user_agent = ""', f'user_agent = "{UA}"'), ("delay = 2.0", "delay = 0.0"),
                     ("autothrottle = true", "autothrottle = false"), ("batch_items = 100", "batch_items = 2"),
                     ('"https://echanges.dila.gouv.fr/OPENDATA/DISCOURS_PUBLICS/vp_discours.json"',
                      f'"{site.url(CATALOGUE)}"'),
                     ('"https://www.vie-publique.fr/discours"', f'"{site.url("/discours")}"')]:
        assert old in text
        text = text.replace(old, new)
    workspace.settings_path.write_text(text)
    return workspace


def crawl(workspace: Workspace, *extra: str, timeout: int = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "overton", "crawl", "vie-publique", "-w", str(workspace.root),
                           "--quiet", *extra], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def raw_documents(workspace: Workspace) -> list[dict]:
    return [row for run in workspace.raw_runs() for part in run.parts()
            for row in pq.read_table(part).to_pylist()]


def last_record(workspace: Workspace) -> dict:
    return json.loads(sorted(workspace.runs.glob("*-crawl-vie-publique.json"))[-1].read_text())


def test_first_run_collects_every_speech_then_a_quiet_night_costs_one_request(ws: Workspace, site: Site):
    speeches = Speeches(site, 5)
    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "5 documents in 3 raw batches" in done.stdout
    docs = {d["id"]: d for d in raw_documents(ws)}
    assert sorted(docs) == [f"vie-publique:{300001 + i}" for i in range(5)]
    first = docs["vie-publique:300001"]
    assert first["title"] == "Déclaration numéro 0 sur la politique du logement"
    assert first["url"] == site.url("/discours/300001-declaration-0")  # tracking query stripped
    assert first["speakers"] == [{"name": "Ministre 0", "role": "Ministre du logement"}]
    assert first["published_at"].isoformat() == "2024-01-10T00:00:00+00:00"
    assert (first["redistributable"], first["license"].startswith("metadata: Licence Ouverte 2.0")) == (False, True)
    assert first["text"].count("\n\n") == 2 and "Source" not in first["text"] and "Mentions" not in first["text"]
    meta = json.loads(first["meta"])
    assert (meta["dila_id"], meta["source_line"], meta["extraction"]) == (
        "300001", "https://www.gouvernement.fr, 0", "structured")
    record = last_record(ws)
    assert (record["status"], record["exit_code"], record["problems"]) == ("ok", 0, [])
    assert record["stats"]["item_scraped_count"] == 5 and record["stats"]["overton/speeches_requested"] == 5
    assert {run.record()["profile"] for run in ws.raw_runs()} == {"speech"}  # judged as speeches by the build
    assert all(h.header("User-Agent") == UA for h in site.hits)

    site.hits.clear()
    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert speeches.page_hits() == []
    [catalogue] = site.hits_of(CATALOGUE)
    assert catalogue.header("If-None-Match") == '"catalogue-v1"'
    assert last_record(ws)["stats"]["overton/catalogue_not_modified"] == 1
    assert len(raw_documents(ws)) == 5

    # The same quiet night in the default log: the collector's own note, none of Scrapy's startup.
    default = subprocess.run([sys.executable, "-m", "overton", "crawl", "vie-publique", "-w", str(ws.root)], cwd=ROOT,
                             capture_output=True, text=True, timeout=90)
    assert default.returncode == 0, default.stderr[-3000:]
    assert "[vie-publique] INFO: catalogue not modified since the last complete run: nothing to fetch" in default.stderr
    assert not any(marker in default.stderr for marker in ("Scrapy 2.", "Overridden settings", "Enabled extensions",
                                                           "Dumping Scrapy stats")), default.stderr
    assert re.fullmatch(r"crawl vie-publique: finished, \d requests, 0 documents in 0 raw batches\n", default.stdout)
    # DILA rebuilds the catalogue: one record changed (its title), mise_a_jour changed on every record
    speeches.version = 2
    for record in speeches.records:
        record["mise_a_jour"] = "2024-04-01"
    speeches.records[3]["titre"] = "Déclaration numéro 3, titre corrigé"
    site.hits.clear()
    assert crawl(ws).returncode == 0
    assert speeches.page_hits() == ["/discours/300004-declaration-3"]
    changed = [d for d in raw_documents(ws) if d["id"] == "vie-publique:300004"]
    assert [d["title"] for d in changed] == ["Déclaration numéro 3 sur la politique du logement",
                                             "Déclaration numéro 3, titre corrigé"]


def test_a_bot_challenge_stops_the_crawl_with_a_clear_failure(ws: Workspace, site: Site):
    speeches = Speeches(site, 20)
    challenge = Reply(200, "<html><head><script src='/redirect_abc.js'></script></head><body>"
                      "<noscript>This website requires JS enabled and cookies.</noscript>"
                      "<script>document.cookie='bot_mitigation_cookie=1'</script></body></html>",
                      {"Content-Type": "text/html"})
    for path in [p for p in site.routes if p.startswith("/discours/")]:
        site.routes[path] = challenge
    done = crawl(ws)
    assert done.returncode == 1
    assert "bot-challenge pages instead of content" in done.stderr
    stats = last_record(ws)["stats"]
    assert stats["finish_reason"] == "bot_challenge" and stats["overton/bot_challenges"] >= 3
    assert raw_documents(ws) == [] and len(speeches.page_hits()) < 20  # stopped, not walked through
    # nothing was recorded as fetched: once the site serves pages again, everything is collected
    for i, record in enumerate(speeches.records):
        path = record["url"].split(str(site.port), 1)[1].split("?")[0]
        site.routes[path] = Reply(200, _page(record["titre"], [french_text(random.Random(i), 40)]),
                                  {"Content-Type": "text/html; charset=utf-8"})
    assert crawl(ws).returncode == 0
    assert len(raw_documents(ws)) == 20


def test_robots_refusing_the_catalogue_fails_the_crawl(ws: Workspace, site: Site):
    Speeches(site, 2)
    site.routes["/robots.txt"] = Reply(200, "User-agent: *\nDisallow: /OPENDATA/\n", {"Content-Type": "text/plain"})
    done = crawl(ws)
    assert done.returncode == 1 and "start page was refused" in done.stderr
    assert site.hits_of(CATALOGUE) == [] and last_record(ws)["stats"]["robotstxt/forbidden"] == 1


def test_a_page_that_keeps_failing_fails_the_run_and_is_fetched_next_time(ws: Workspace, site: Site):
    speeches = Speeches(site, 4)
    path = "/discours/300002-declaration-1"
    good = site.routes[path]
    site.routes[path] = Reply(503, "busy", {"Retry-After": "0"})
    done = crawl(ws)
    assert done.returncode == 1 and "errors logged" in done.stderr
    assert len(site.hits_of(path)) == 4  # the first try and 3 retries
    assert sorted(d["id"][-6:] for d in raw_documents(ws)) == ["300001", "300003", "300004"]
    site.routes[path] = good
    site.hits.clear()
    assert crawl(ws).returncode == 0
    assert speeches.page_hits() == [path]  # the catalogue was read again in full: only the missing one
    assert len(raw_documents(ws)) == 4


def test_killed_crawl_resumes_with_every_speech_exactly_once(ws: Workspace, site: Site):
    speeches = Speeches(site, 30)
    slow = {path: route for path, route in site.routes.items() if path.startswith("/discours/")}
    for path, route in slow.items():
        site.routes[path] = lambda hit, route=route: (time.sleep(0.05), route)[1]
    process = subprocess.Popen([sys.executable, "-m", "overton", "crawl", "vie-publique", "-w", str(ws.root),
                                "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(ws.raw_runs()) < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = len(raw_documents(ws))
    assert 8 <= before < 30, "kill the crawl in the middle"
    fetched_before = len(speeches.page_hits())
    assert crawl(ws).returncode == 0
    ids = [d["id"] for d in raw_documents(ws)]
    assert len(ids) == len(set(ids)) == 30
    # the second run fetched only what the first had not committed (at most the batch in progress again)
    refetched = len(speeches.page_hits()) - fetched_before
    assert 30 - before <= refetched <= 30 - before + 2


def test_scrapy_list_and_scrapy_crawl_work_from_the_repository(ws: Workspace, site: Site):
    Speeches(site, 3)
    scrapy = Path(sys.executable).parent / "scrapy"
    listed = subprocess.run([str(scrapy), "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listed.stdout.split() == sorted(spiders())  # the collectors `overton crawl` knows, no other
    done = subprocess.run([str(scrapy), "crawl", "vie-publique", "-s", f"OVERTON_WORKSPACE={ws.root}",
                           "-s", "LOG_LEVEL=WARNING"], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(raw_documents(ws)) == 3


def test_sigterm_stops_a_resumable_crawl_cleanly_and_the_same_command_finishes_it(ws: Workspace, site: Site):
    speeches = Speeches(site, 30)
    for path, route in [(p, r) for p, r in site.routes.items() if p.startswith("/discours/")]:
        site.routes[path] = lambda hit, route=route: (time.sleep(0.05), route)[1]
    command = [sys.executable, "-m", "overton", "crawl", "vie-publique", "-w", str(ws.root), "--quiet",
               "--resumable"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(speeches.page_hits()) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # what a preemptible machine or `systemctl stop` sends
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "did not finish normally (finish_reason: shutdown)" in err
    stopped = raw_documents(ws)
    assert 0 < len(stopped) < 30  # what was fetched before the stop is committed, not lost
    assert (ws.state / "crawl" / "vie-publique" / "job").is_dir()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = [d["id"] for d in raw_documents(ws)]
    assert len(ids) == len(set(ids)) == 30


def test_listing_mode_walks_pages_newest_first_until_nothing_is_new(ws: Workspace, site: Site):
    speeches = Speeches(site, 6)
    ws.settings_path.write_text(ws.settings_path.read_text().replace('mode = "catalogue"', 'mode = "listing"'))
    paths = [r["url"].split(str(site.port), 1)[1].split("?")[0] for r in speeches.records]

    def listing(page_paths: list[str], page: int, last: bool) -> Reply:
        items = "".join(f"<div class='views-row'><a href='{p}'>Discours</a></div>" for p in page_paths)
        more = "" if last else f"<a href='/discours?page={page + 1}'>Suivant</a>"
        return Reply(200, f"<html><body><nav><a href='/fiches'>Fiches</a></nav>{items}{more}</body></html>",
                     {"Content-Type": "text/html; charset=utf-8"})

    pages = {0: listing(paths[4:6], 0, False), 1: listing(paths[2:4], 1, False), 2: listing(paths[0:2], 2, True)}
    site.routes["/discours"] = lambda hit: pages.get(int(hit.path.rsplit("=", 1)[1]), listing([], 9, True))
    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    docs = {d["id"]: d for d in raw_documents(ws)}
    assert sorted(docs) == [f"vie-publique:{300001 + i}" for i in range(6)]
    assert docs["vie-publique:300003"]["title"] == "Déclaration numéro 2 sur la politique du logement"
    assert json.loads(docs["vie-publique:300003"]["meta"])["extraction"] == "structured"
    assert site.hits_of(CATALOGUE) == []

    # two new speeches on top of the first page: the walk stops after page 0 (nothing new on page 1)
    new = Speeches(site, 8, seed=2)  # same generator: ids 300001..300008, the pages of the last two are new
    new_paths = [r["url"].split(str(site.port), 1)[1].split("?")[0] for r in new.records]
    pages[0] = listing(new_paths[6:8] + paths[4:6], 0, False)
    site.hits.clear()
    assert crawl(ws).returncode == 0
    assert sorted(h.path for h in site.hits if h.path.startswith("/discours?")) == [
        "/discours?page=0", "/discours?page=1"]
    assert sorted(h.path for h in site.hits if h.path.startswith("/discours/")) == sorted(new_paths[6:8])
    assert len(raw_documents(ws)) == 8


def test_pages_that_fail_once_are_retried_and_off_site_records_are_not_fetched(ws: Workspace, site: Site):
    speeches = Speeches(site, 4)
    first, second = "/discours/300001-declaration-0", "/discours/300002-declaration-1"
    good_first, good_second = site.routes[first], site.routes[second]
    site.routes[first] = [Reply(429, "slow down", {"Retry-After": "1"}), good_first]
    site.routes[second] = [Reply(200, good_second.data, good_second.headers, send=200), good_second]  # cut short
    speeches.records[3]["url"] = site.url("/discours/300004-declaration-3", host="localhost")  # another host
    done = crawl(ws)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(d["id"][-6:] for d in raw_documents(ws)) == ["300001", "300002", "300003"]
    hits = site.hits_of(first)
    assert len(hits) == 2 and hits[1].time - hits[0].time >= 1.0
    assert len(site.hits_of(second)) == 2
    stats = last_record(ws)["stats"]
    assert stats["retry/count"] == 2 and stats["offsite/filtered"] == 1 and stats["retry_after/waited"] == 1


def test_two_crawls_of_one_spider_never_overlap(ws: Workspace, site: Site):
    Speeches(site, 1)
    with ws.lock("crawl-vie-publique"):
        done = crawl(ws)
    assert done.returncode == 2 and "another `overton crawl-vie-publique` is running" in done.stderr
    assert site.hits == []
