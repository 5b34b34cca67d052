"""``overton crawl web``: articles of the sites listed in ``[[crawl.web.sites]]``, through trafilatura.

Scrapy fetches (robots.txt, throttling, retries, cache and stats stay in one place; trafilatura's own
fetcher refuses loopback addresses and would duplicate all of that), trafilatura extracts
(:mod:`overton.spiders.web_extract`). Each run reads every site's start pages, RSS/Atom feeds and
sitemaps, which are where new articles appear, and fetches the article links found there that the
seen-store does not know, on the site's domains, matching its ``allow`` patterns and none of its
``deny`` ones, at most ``max_pages`` per site and run. Wikipedia is never crawled here: it has its own
collector and licence handling.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urldefrag, urlsplit

import lxml.etree
import scrapy
from scrapy.utils.sitemap import Sitemap

from overton.corpus.config import CrawlConfig, WebSite
from overton.corpus.errors import UserError
from overton.corpus.schema import dump_meta, make_id, text_sha256
from overton.spiders.base import OvertonSpider
from overton.spiders.web_extract import extract_article, is_wikipedia


def _host_in(url: str, domains: list[str]) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in domains)


class WebSpider(OvertonSpider):
    name = "web"

    @classmethod
    def check(cls, crawl: CrawlConfig) -> None:
        if not crawl.web.sites:
            raise UserError("no site to crawl: add [[crawl.web.sites]] tables to overton.toml")
        for site in crawl.web.sites:
            for url in [*site.start_urls, *site.sitemaps, *site.feeds]:
                if is_wikipedia(url):
                    raise UserError(f"site {site.name!r}: {url} is Wikipedia, which has its own collector")

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.sites = {site.name: site for site in spider.crawl_config.web.sites}
        spider.sources = tuple(sorted(spider.sites))
        spider.domains = {name: spider._domains(site) for name, site in spider.sites.items()}
        spider.allowed_domains = sorted({d for domains in spider.domains.values() for d in domains})
        spider.requested = dict.fromkeys(spider.sites, 0)
        return spider

    def profile_of(self, source: str) -> str:
        return self.sites[source].profile

    @staticmethod
    def _domains(site: WebSite) -> list[str]:
        if site.allowed_domains:
            return [d.lower() for d in site.allowed_domains]
        return sorted({urlsplit(u).hostname.lower() for u in [*site.start_urls, *site.sitemaps, *site.feeds]})

    async def start(self):
        for name, site in self.sites.items():
            for url, callback in ([(u, self.parse_start) for u in site.start_urls]
                                  + [(u, self.parse_feed) for u in site.feeds]
                                  + [(u, self.parse_sitemap) for u in site.sitemaps]):
                yield scrapy.Request(url, callback=callback, cb_kwargs={"site": name}, dont_filter=True,
                                     errback=self.start_refused)

    # -- where links come from --

    def parse_start(self, response, site: str):
        yield from self._candidates(site, response.css("a::attr(href)").getall(), response)

    def parse_feed(self, response, site: str):
        root = lxml.etree.fromstring(response.body, parser=lxml.etree.XMLParser(recover=True, resolve_entities=False))
        if root is None:
            self.crawler.stats.inc_value("overton/unreadable_feeds")
            return
        links = root.xpath("//item/link/text()") + root.xpath("//*[local-name()='entry']/*[local-name()='link']/@href")
        yield from self._candidates(site, [link.strip() for link in links], response)

    def parse_sitemap(self, response, site: str):
        sitemap = Sitemap(response.body)
        locations = [entry["loc"] for entry in sitemap if "loc" in entry]
        if sitemap.type == "sitemapindex":
            for url in locations:
                if _host_in(url, self.domains[site]):
                    yield scrapy.Request(url, callback=self.parse_sitemap, cb_kwargs={"site": site})
        else:
            yield from self._candidates(site, locations, response)

    def _candidates(self, site: str, links: list[str], response):
        config, stats = self.sites[site], self.crawler.stats
        for link in dict.fromkeys(links):
            url = urldefrag(response.urljoin(link))[0]
            if not url.startswith(("http://", "https://")) or url in config.start_urls:
                continue
            if is_wikipedia(url):
                stats.inc_value("overton/wikipedia_excluded")
                continue
            if not _host_in(url, self.domains[site]):
                stats.inc_value("overton/offsite_links")
                continue
            path = urlsplit(url).path
            if (config.allow and not any(re.search(p, url) for p in config.allow)) or any(
                    re.search(p, url) for p in config.deny):
                continue
            if path.endswith((".pdf", ".jpg", ".png", ".zip", ".xml", ".rss")):
                continue
            if self.seen.get(site, url) is not None:
                stats.inc_value("overton/already_seen")
                continue
            if self.requested[site] >= config.max_pages:
                stats.inc_value("overton/deferred_to_next_run")
                continue
            self.requested[site] += 1
            yield scrapy.Request(url, callback=self.parse_article, cb_kwargs={"site": site})

    # -- the article --

    def parse_article(self, response, site: str):
        article = extract_article(response.body, response.url)
        stats = self.crawler.stats
        if article is None or not article.text:
            stats.inc_value("overton/pages_without_article")
            return
        config = self.sites[site]
        key = hashlib.sha256(response.url.encode()).hexdigest()[:16]
        meta = {k: v for k, v in (("sitename", article.sitename), ("description", article.description),
                                  ("declared_language", article.language), ("extraction", "trafilatura"))
                if v}
        document = {
            "id": make_id(site, key), "source": site, "url": response.url, "title": article.title,
            "text": article.text, "published_at": article.published_at, "fetched_at": datetime.now(UTC),
            "speakers": [{"name": article.author, "role": "author"}] if article.author else [],
            "kind": "article", "keywords": list(article.tags), "thematics": list(article.categories),
            "license": config.license, "redistributable": False, "content_sha256": text_sha256(article.text),
            "meta": dump_meta(meta),
        }
        header = response.headers.get
        seen = {"key": response.url, "content_hash": document["content_sha256"], "url": response.url,
                "etag": (header("ETag") or b"").decode("latin-1") or None,
                "last_modified": (header("Last-Modified") or b"").decode("latin-1") or None}
        stats.inc_value("overton/articles")
        yield {"document": document, "seen": seen}
