"""Crawl infrastructure against a real local HTTP server: politeness settings, Retry-After, faults, seen-store.

Each crawl runs a tiny spider in a fresh Python process (``python -m tests.test_crawl_infra SPEC``):
Twisted's reactor cannot be restarted, so a subprocess per crawl is what stays repeatable in one
pytest session. The server runs in this process, so its request log is what the crawler really sent.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import pairwise
from pathlib import Path

import pytest
import scrapy
from scrapy.crawler import AsyncCrawlerProcess

from overton.corpus.errors import UserError
from overton.spiders.middlewares import retry_after_seconds
from overton.spiders.seen import SeenStore
from overton.spiders.settings import crawl_settings
from tests.sites import Reply, Site, conditional, html

UA = "overton-tests/0.1 (+mailto:crawl-tests@example.org)"
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_STAT = "downloader/exception_type_count/scrapy.exceptions.DownloadTimeoutError"


class ProbeSpider(scrapy.Spider):
    """Fetches its start URLs in the order given, optionally follows links, records what it got."""

    name = "probe"
    handle_httpstatus_list = [304]

    def __init__(self, urls: list[str], follow: bool = False, seen_db: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.urls, self.follow = urls, follow
        self.seen = SeenStore(seen_db) if seen_db else None
        self.pages: list[dict] = []
        self.errors: list[dict] = []

    async def start(self):
        for rank, url in enumerate(self.urls):
            headers = self.seen.conditional_headers("probe", url) if self.seen else {}
            # dont_filter=True like Spider.start()'s default; priorities keep the given order
            yield scrapy.Request(url, headers=headers, priority=len(self.urls) - rank, dont_filter=True,
                                 errback=self.failed)

    def parse(self, response):
        text = getattr(response, "text", "")
        self.pages.append({"url": response.url, "status": response.status, "text": text})
        if self.seen and response.status == 200:
            header = response.headers.get
            self.seen.put("probe", response.url, etag=(header("ETag") or b"").decode() or None,
                          last_modified=(header("Last-Modified") or b"").decode() or None)
        yield {"url": response.url}
        if self.follow:
            yield from response.follow_all(css="a", callback=self.parse, errback=self.failed)

    def failed(self, failure):
        self.errors.append({"url": failure.request.url, "error": failure.type.__name__})


def _crawl_main(spec: dict) -> None:
    process = AsyncCrawlerProcess(spec["settings"])
    crawler = process.create_crawler(ProbeSpider)
    process.crawl(crawler, urls=spec["urls"], follow=spec["follow"], seen_db=spec["seen_db"],
                  allowed_domains=spec["allowed_domains"])
    process.start()
    result = {"stats": crawler.stats.get_stats(), "pages": crawler.spider.pages, "errors": crawler.spider.errors}
    Path(spec["out"]).write_text(json.dumps(result, default=str), encoding="utf-8")


def crawl(site: Site, tmp_path: Path, paths: list[str], *, follow: bool = False, seen_db: Path | None = None,
          delay: float = 0.0, **overrides) -> dict:
    """Crawl ``paths`` of ``site`` with the production settings (no AutoThrottle, short backoff)."""
    settings = crawl_settings(UA, delay=delay, **{"AUTOTHROTTLE_ENABLED": False, "RETRY_BACKOFF_BASE": 0.2,
                                                   **overrides})
    out = tmp_path / f"crawl-{len(list(tmp_path.glob('crawl-*')))}.json"
    spec = {"settings": settings, "urls": [site.url(p) for p in paths], "follow": follow,
            "seen_db": str(seen_db) if seen_db else None, "allowed_domains": ["127.0.0.1"], "out": str(out)}
    done = subprocess.run([sys.executable, "-m", "tests.test_crawl_infra", json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and out.exists(), done.stderr[-4000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["stats"]["finish_reason"] == "finished"
    return result


def _paths(result: dict) -> list[str]:
    return sorted(page["url"].split("/", 3)[3] for page in result["pages"])


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["", "overton/0.1", "Mozilla/5.0 (X11; Linux x86_64)", "overton (contact: me)"])
def test_settings_refuse_a_user_agent_without_contact(agent):
    with pytest.raises(UserError, match="has no contact") as refused:
        crawl_settings(agent)
    assert "\n" not in str(refused.value)


def test_settings_are_polite_and_merge_overrides(tmp_path):
    settings = crawl_settings("overton/0.1 (+https://example.org/bot)", delay=2.0, http_cache_dir=str(tmp_path),
                              jobdir=str(tmp_path / "job"), DOWNLOADER_MIDDLEWARES={"x.Y": 10}, RETRY_TIMES=1)
    assert settings["ROBOTSTXT_OBEY"] is True
    assert settings["CONCURRENT_REQUESTS_PER_DOMAIN"] == 1
    assert (settings["DOWNLOAD_DELAY"], settings["AUTOTHROTTLE_ENABLED"]) == (2.0, True)
    assert {429, 503} <= set(settings["RETRY_HTTP_CODES"])
    assert settings["RETRY_TIMES"] == 1
    assert settings["DOWNLOADER_MIDDLEWARES"] == {
        "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
        "overton.spiders.middlewares.RetryAfterMiddleware": 550,
        "x.Y": 10,
    }
    assert (settings["HTTPCACHE_ENABLED"], settings["HTTPCACHE_DIR"]) == (True, str(tmp_path))
    assert settings["JOBDIR"] == str(tmp_path / "job")
    assert (settings["TELNETCONSOLE_ENABLED"], settings["REMOTE_CONTROL_ENABLED"]) == (False, False)
    assert "HTTPCACHE_ENABLED" not in crawl_settings(UA) and "JOBDIR" not in crawl_settings(UA)


def test_retry_after_header_values():
    now = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert retry_after_seconds("Mon, 05 Jan 2026 11:00:00 GMT", now) == 0.0  # in the past
    assert retry_after_seconds("-5", now) is None
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


# --- crawls -----------------------------------------------------------------------------------


def test_robots_txt_is_obeyed_with_the_configured_user_agent(site, tmp_path):
    site.routes["/robots.txt"] = Reply(200, "User-agent: *\nDisallow: /private/\n", {"Content-Type": "text/plain"})
    site.routes["/"] = html('<a href="/public">p</a> <a href="/private/secret">s</a>')
    site.routes["/public"] = html("public")
    site.routes["/private/secret"] = html("secret")
    result = crawl(site, tmp_path, ["/"], follow=True)
    assert site.hits_of("/private/secret") == []
    assert result["stats"]["robotstxt/forbidden"] == 1
    assert _paths(result) == ["", "public"]
    assert [hit.path for hit in site.hits] == ["/robots.txt", "/", "/public"]
    assert {hit.header("User-Agent") for hit in site.hits} == {UA}


def test_429_waits_for_retry_after_and_holds_the_whole_site(site, tmp_path):
    site.routes["/busy"] = [html("slow down", 429, **{"Retry-After": "1"}), html("ok now")]
    site.routes["/other"] = html("other page")
    result = crawl(site, tmp_path, ["/busy", "/other"], delay=0.01)
    first, second = site.hits_of("/busy")
    assert second.time - first.time >= 1.0
    (other,) = site.hits_of("/other")
    assert other.time - first.time >= 1.0  # the next request to the site waited too
    stats = result["stats"]
    assert (stats["retry_after/waited"], stats["retry_after/seconds"]) == (1, 1.0)
    assert (stats["retry/count"], stats["downloader/response_status_count/429"]) == (1, 1)
    assert _paths(result) == ["busy", "other"]
    assert next(p["text"] for p in result["pages"] if p["url"].endswith("/busy")).count("ok now") == 1


def test_503_backs_off_without_retry_after_caps_long_waits_then_gives_up(site, tmp_path):
    site.routes["/flaky"] = [html("down", 503), html("down", 503), html("up")]
    site.routes["/down"] = html("down for an hour", 503, **{"Retry-After": "3600"})
    result = crawl(site, tmp_path, ["/flaky", "/down"], RETRY_TIMES=2, RETRY_AFTER_MAX=0.5)
    flaky = site.hits_of("/flaky")
    assert len(flaky) == 3
    assert flaky[1].time - flaky[0].time >= 0.2 and flaky[2].time - flaky[1].time >= 0.4  # 0.2 s, doubled
    down = site.hits_of("/down")
    assert len(down) == 3  # the request and RETRY_TIMES retries
    assert all(0.5 <= later.time - earlier.time < 5 for earlier, later in pairwise(down))
    stats = result["stats"]
    assert stats["retry/max_reached"] == 1
    assert stats["retry_after/waited"] == 4  # no wait after the last refusal
    assert stats["retry_after/seconds"] == pytest.approx(0.2 + 0.4 + 0.5 + 0.5)
    assert stats["retry/reason_count/503 Service Unavailable"] == 4
    assert _paths(result) == ["flaky"]


def test_a_response_that_never_finishes_times_out_and_the_crawl_goes_on(site, tmp_path):
    site.routes["/stuck"] = Reply(200, b"x" * 1000, {"Content-Type": "text/html"}, send=100, hang=True)
    site.routes["/fine"] = html("fine")
    result = crawl(site, tmp_path, ["/stuck", "/fine"], DOWNLOAD_TIMEOUT=1, RETRY_TIMES=1)
    assert len(site.hits_of("/stuck")) == 2
    assert result["stats"][TIMEOUT_STAT] == 2
    assert result["errors"] == [{"url": site.url("/stuck"), "error": "DownloadTimeoutError"}]
    assert _paths(result) == ["fine"]


def test_a_truncated_body_is_a_data_loss_error_and_retried(site, tmp_path):
    site.routes["/cut"] = Reply(200, b"y" * 1000, {"Content-Type": "text/html"}, send=100)
    result = crawl(site, tmp_path, ["/cut"], RETRY_TIMES=1)
    assert len(site.hits_of("/cut")) == 2
    assert result["stats"]["downloader/exception_type_count/scrapy.exceptions.ResponseDataLossError"] == 2
    assert result["errors"] == [{"url": site.url("/cut"), "error": "ResponseDataLossError"}]
    assert result["pages"] == []


def test_an_over_size_page_is_dropped_without_retry(site, tmp_path):
    site.routes["/big"] = html("z" * 50_000)
    site.routes["/medium"] = html("m" * 6_000)
    result = crawl(site, tmp_path, ["/big", "/medium"], DOWNLOAD_MAXSIZE=10_000, DOWNLOAD_WARNSIZE=5_000)
    assert len(site.hits_of("/big")) == 1
    assert result["stats"]["downloader/exception_type_count/scrapy.exceptions.DownloadCancelledError"] == 1
    assert result["errors"] == [{"url": site.url("/big"), "error": "DownloadCancelledError"}]
    assert _paths(result) == ["medium"]  # over the warning size only: kept


def test_a_redirect_loop_stops_after_redirect_max_times(site, tmp_path):
    site.routes["/loop/a"] = Reply(302, b"", {"Location": "/loop/b"})
    site.routes["/loop/b"] = Reply(302, b"", {"Location": "/loop/a"})
    result = crawl(site, tmp_path, ["/loop/a"])
    assert [hit.path for hit in site.hits[1:]] == ["/loop/a", "/loop/b"] * 3  # 1 + REDIRECT_MAX_TIMES (5)
    assert result["errors"] == [{"url": site.url("/loop/b"), "error": "IgnoreRequest"}]  # the last hop
    assert result["pages"] == []


def test_off_site_links_are_not_followed(site, tmp_path):
    site.routes["/"] = html(f'<a href="/inside">i</a> <a href="{site.url("/outside", host="localhost")}">o</a>')
    site.routes["/inside"] = html("inside")
    site.routes["/outside"] = html("outside")
    result = crawl(site, tmp_path, ["/"], follow=True)
    assert site.hits_of("/outside") == []
    assert result["stats"]["offsite/filtered"] == 1
    assert _paths(result) == ["", "inside"]


def test_invalid_encoding_bytes_become_replacement_characters(site, tmp_path):
    site.routes["/latin"] = Reply(200, b"<html><body>caf\xe9 cr\xe8me \xff</body></html>",
                                  {"Content-Type": "text/html; charset=utf-8"})
    result = crawl(site, tmp_path, ["/latin"])
    (page,) = result["pages"]
    assert "caf\ufffd cr\ufffdme \ufffd" in page["text"]


def test_conditional_requests_from_the_seen_store_get_304(site, tmp_path):
    modified = "Wed, 21 Oct 2015 07:28:00 GMT"
    site.routes["/doc"] = conditional("the speech", etag='"v1"', last_modified=modified)
    seen_db = tmp_path / "state" / "seen.sqlite3"
    first = crawl(site, tmp_path, ["/doc"], seen_db=seen_db)
    second = crawl(site, tmp_path, ["/doc"], seen_db=seen_db)
    before, after = site.hits_of("/doc")
    assert before.header("If-None-Match") is None
    assert (after.header("If-None-Match"), after.header("If-Modified-Since")) == ('"v1"', modified)
    assert [p["status"] for p in first["pages"] + second["pages"]] == [200, 304]
    with SeenStore(seen_db) as store:
        row = store.get("probe", site.url("/doc"))
    assert (row.etag, row.last_modified) == ('"v1"', modified)


# --- seen-store -------------------------------------------------------------------------------


def test_seen_store_upsert_and_conditional_headers(tmp_path):
    with SeenStore(tmp_path / "state" / "seen.sqlite3") as store:
        assert store.get("vie-publique", "243000039") is None
        assert store.conditional_headers("vie-publique", "243000039") == {}
        store.put("vie-publique", "243000039", etag='"a1"', content_hash="h1", url="https://example.org/1",
                  fetched_at=datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
        store.put("vie-publique", "243000039", last_modified="Wed, 21 Oct 2015 07:28:00 GMT", content_hash="h2")
        store.put("wikipedia", "fr:556087", etag='W/"9"')
        row = store.get("vie-publique", "243000039")
        assert (row.etag, row.last_modified, row.content_hash, row.url) == (
            None, "Wed, 21 Oct 2015 07:28:00 GMT", "h2", "https://example.org/1")
        assert row.fetched_at > "2026-01-05T12:00:00+00:00"
        assert store.conditional_headers("vie-publique", "243000039") == {
            "If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT"}
        assert store.conditional_headers("wikipedia", "fr:556087") == {"If-None-Match": 'W/"9"'}
        assert store.keys("vie-publique") == ["243000039"] and store.keys("quora") == []


def test_seen_store_detects_new_and_changed_content(tmp_path):
    with SeenStore(tmp_path / "seen.sqlite3") as store:
        assert store.is_new_or_changed("s", "k", "h1") is True
        store.put("s", "k", content_hash="h1")
        assert store.is_new_or_changed("s", "k", "h1") is False
        assert store.is_new_or_changed("s", "k", "h2") is True
        assert store.is_new_or_changed("other", "k", "h1") is True


def test_seen_store_batch_is_all_or_nothing(tmp_path):
    with SeenStore(tmp_path / "seen.sqlite3") as store:
        with pytest.raises(RuntimeError), store.batch():
            store.put("s", "a")
            raise RuntimeError("crawl died")
        with store.batch():
            store.put("s", "b")
            store.put("s", "c")
        assert store.keys("s") == ["b", "c"]


def test_seen_store_put_survives_sigkill(tmp_path):
    db = tmp_path / "state" / "seen.sqlite3"
    code = (
        "import os, signal\n"
        "from overton.spiders.seen import SeenStore\n"
        f"store = SeenStore({str(db)!r})\n"
        "store.put('vie-publique', '243000039', etag='\"e1\"', content_hash='h1')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert Path(f"{db}-wal").stat().st_size > 0  # the row is only in the write-ahead log
    with SeenStore(db) as store:
        row = store.get("vie-publique", "243000039")
    assert (row.etag, row.content_hash) == ('"e1"', "h1")


if __name__ == "__main__":
    _crawl_main(json.loads(sys.argv[1]))
