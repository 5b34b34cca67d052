"""``overton crawl wikipedia``: the articles of Wikipedia categories, through the MediaWiki Action API.

Each run makes three kinds of request to ``[crawl.wikipedia] api_url``, one at a time:

1. **listing**: ``list=categorymembers`` (``cmtype=page|subcat``, namespaces 0 and 14, ``cmlimit=max``,
   followed through ``cmcontinue``) of every root category, then of its subcategories breadth-first, up to
   the root's ``depth`` (0: the root's own articles only). A category is listed once even where the
   category graph has cycles or several paths: categories are taken in decreasing order of the depth
   left, so each is listed with the most depth any path gives it. The first listing request also asks
   ``meta=siteinfo`` for the wiki's language, which makes the document ids (``wikipedia:fr:<pageid>``).
2. **info**: ``prop=info|revisions`` (``inprop=url``, ``rvprop=ids|timestamp``) for every article found,
   50 page ids a request (the limit for clients without bot rights): each page's ``lastrevid``, URL and
   revision time. A page whose ``lastrevid`` is the one in the seen-store is not fetched again; missing
   pages and redirects are counted and skipped.
3. **parse**: ``action=parse&oldid=<lastrevid>&prop=text|revid|categories`` (no edit links, no limit
   report) for each new or changed article (at most ``max_pages`` a run, the rest counted as deferred): the
   parser's HTML, read by :func:`overton.spiders.wikipedia_html.extract`. ``oldid`` rather than ``pageid``
   makes the document exactly the revision whose id and time the info request gave and the seen-store
   records; the plain ``title`` rather than ``displaytitle``, which may hold markup. A page
   deleted since it was listed (``missingtitle``, ``nosuchpageid``, ``nosuchrevid``) is counted, not an
   error. Title, page id, revision, URL and visible categories come from the API, not the HTML.

So a night with ``N`` articles in ``L`` listing pages and ``k`` changed costs ``L + ceil(N / 50) + k``
requests: listing and info, then only what changed.

The API is called, not crawled, and the rules for calling it are Wikimedia's API policies (the User-Agent
policy and API:Etiquette): a User-Agent with a contact, one request at a time, ``maxlag``, and backing off
when asked. This collector follows them. robots.txt is another matter: it keeps web crawlers out of ``/w/``,
where ``index.php`` serves edit, history and special pages that would multiply every article, and it says
nothing of API clients, to which Wikimedia points bots instead; read literally (``Disallow: /w/`` covers
``/w/api.php``), it would forbid every API client, Wikimedia's own tools included. So the API requests, and
only they (Scrapy's ``dont_obey_robotstxt`` on each), are not checked against robots.txt; this collector
requests no other URL, and every other collector obeys robots.txt for every request.

Every request carries ``format=json&formatversion=2&maxlag=<maxlag>``. When the database replicas lag
more than that, the API answers HTTP 200 with ``{"error": {"code": "maxlag"}}`` and ``Retry-After``:
:class:`MaxlagRetryMiddleware` retries it after that wait, as 429 and 503 are (stats ``overton/maxlag_waits``).

A page that was fetched once and is no longer in any crawled category is recorded as removed, once, when
a run has listed every category without error: in the run record (stats ``overton/pages_removed`` and
``overton/removed_pages``, the keys) and in the seen-store under the source ``wikipedia.removed`` (the
state ``removed``; ``listed again`` if it comes back). Nothing is deleted from ``raw/`` or datasets. Its
seen entry stays, so a page that comes back unchanged is not fetched again.

A run stopped or killed is resumed by the next one, without ``--resumable`` (which is refused): it lists
the categories again and fetches only what no committed batch holds.

Documents are CC BY-SA 4.0 (``redistributable``: yes, with attribution and under the same licence; each
carries its URL and an attribution line in ``meta``) and are judged by the ``encyclopedia`` profile.

Why not the ``wikipedia-api`` package: it fetches with its own blocking HTTP client, outside Scrapy, so
none of what every collector gets here (one request at a time with delay and AutoThrottle,
``Retry-After``, the seen-store and committed raw batches) would apply; its endpoint is fixed to
``https://<lang>.wikipedia.org/w/api.php`` (no other wiki, no local test server); it sends no ``maxlag``,
asks ``prop=info`` one page at a time, and gives TextExtracts' plain text instead of the parser HTML the
extractor reads (no choice of tables, no dropped apparatus). The three API calls above are all this
collector needs.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import scrapy
from scrapy.exceptions import IgnoreRequest

from overton.corpus.config import CrawlConfig
from overton.corpus.errors import UserError
from overton.spiders.base import OvertonSpider
from overton.spiders.middlewares import RetryAfterMiddleware
from overton.spiders.wikipedia_html import article_document, extract

SOURCE = "wikipedia"
#: Seen-store source of the pages no longer in any crawled category (key: ``<lang>:<pageid>``).
REMOVED = "wikipedia.removed"
INFO_BATCH = 50  # page ids per prop=info|revisions request: the API's limit without apihighlimits
_MISSING = frozenset({"missingtitle", "nosuchpageid", "nosuchrevid"})
_ARTICLES, _CATEGORIES = 0, 14  # namespaces
_PREFIX = re.compile(r"^\s*(category|catégorie)\s*:", re.IGNORECASE)


def _api_error(body: bytes) -> str | None:
    """The ``error.code`` of an API answer, or None (a cheap look first: article bodies are large)."""
    if b'"error"' not in body[:64]:
        return None
    try:
        error = json.loads(body).get("error")
    except ValueError:
        return None
    return error.get("code") if isinstance(error, dict) else None


def _category_name(title: str, *, listed: bool = False) -> str:
    """A category's name as MediaWiki normalises it (underscores are spaces, the first letter upper case),
    without its namespace: ``science_politique`` -> ``Science politique``. A ``listed`` title always has
    the namespace (``Catégorie:Science politique``); a configured name may (``Category:`` or ``Catégorie:``);
    names themselves may hold colons (``Élection : résultats``)."""
    title = title.partition(":")[2] if listed else _PREFIX.sub("", title)
    title = " ".join(title.replace("_", " ").split())
    return title[:1].upper() + title[1:]


class MaxlagRetryMiddleware(RetryAfterMiddleware):
    """Retries the API's ``maxlag`` error (HTTP 200, JSON ``error.code = "maxlag"``, ``Retry-After``) as a 503:
    after the wait the server asks, with the whole site held meanwhile, within ``RETRY_TIMES``."""

    @staticmethod
    def _as_unavailable(response):
        if response.status == 200 and _api_error(response.body) == "maxlag":
            return response.replace(status=503)
        return response

    def _hold_site(self, response, request) -> None:
        super()._hold_site(self._as_unavailable(response), request)

    async def process_response(self, request, response):
        unavailable = self._as_unavailable(response)
        if unavailable is response:
            return await super().process_response(request, response)
        self.crawler.stats.inc_value("overton/maxlag_waits")
        return await super().process_response(request, unavailable)


class WikipediaSpider(OvertonSpider):
    name = "wikipedia"
    sources = (SOURCE,)
    expects_items = False  # a night in which no article changed is normal
    profile = "encyclopedia"

    @classmethod
    def check(cls, crawl: CrawlConfig) -> None:
        settings = crawl.wikipedia
        if urlsplit(settings.api_url).scheme not in ("http", "https") or not urlsplit(settings.api_url).hostname:
            raise UserError(f"[crawl.wikipedia] api_url {settings.api_url!r} is not an http(s) URL")
        if not settings.categories:
            raise UserError("[crawl.wikipedia] categories is empty: name at least one root category")

    @classmethod
    def update_settings(cls, settings) -> None:
        if settings.get("JOBDIR"):
            raise UserError("overton crawl wikipedia has no use for --resumable: every run lists the categories "
                            "again and fetches only what is not committed yet; run it without --resumable")
        super().update_settings(settings)
        middlewares = dict(settings.getdict("DOWNLOADER_MIDDLEWARES"))
        middlewares.update({f"{RetryAfterMiddleware.__module__}.{RetryAfterMiddleware.__name__}": None,
                            f"{__name__}.{MaxlagRetryMiddleware.__name__}": 550})
        settings.set("DOWNLOADER_MIDDLEWARES", middlewares, priority="spider")

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.settings_wiki = spider.crawl_config.wikipedia
        spider.allowed_domains = [urlsplit(spider.settings_wiki.api_url).hostname]
        # categories still to list: (-depth left, order found, name); a name is listed once, with the most
        # depth left any path gives it, because the heap yields the deepest first
        spider.queue, spider.order = [], itertools.count()
        spider.listed = set()
        for root in spider.settings_wiki.categories:
            spider._enqueue(_category_name(root.name), root.depth)
        spider.roots = {_category_name(root.name) for root in spider.settings_wiki.categories}
        spider.articles = set()  # page ids of the articles listed
        spider.lang = None
        spider.listing_complete = True
        spider.requested = 0
        spider.warned = set()
        return spider

    settings_wiki: Any
    queue: list[tuple[int, int, str]]
    order: Iterator[int]
    listed: set[str]
    roots: set[str]
    articles: set[int]
    pageids: list[int]
    lang: str | None
    listing_complete: bool
    requested: int
    warned: set[str]

    # -- requests --

    def _api(self, callback, errback, cb_kwargs: dict[str, Any], **params: Any) -> scrapy.Request:
        """A request to the API, under Wikimedia's API policy rather than robots.txt (see the module docstring)."""
        params.update(format="json", formatversion="2", maxlag=str(self.settings_wiki.maxlag))
        return scrapy.Request(f"{self.settings_wiki.api_url}?{urlencode(params)}", callback=callback,
                              errback=errback, cb_kwargs=cb_kwargs, dont_filter=True,
                              meta={"dont_obey_robotstxt": True})

    def _enqueue(self, name: str, depth: int) -> None:
        if name not in self.listed:
            heapq.heappush(self.queue, (-depth, next(self.order), name))

    def _next_listing(self, first: bool = False) -> scrapy.Request | None:
        while self.queue:
            negative_depth, _, name = heapq.heappop(self.queue)
            if name not in self.listed:
                self.listed.add(name)
                return self._listing_request(name, -negative_depth, {}, first=first)
        return None

    def _listing_request(self, name: str, depth: int, cont: dict[str, str], found: int = 0,
                         first: bool = False) -> scrapy.Request:
        params = {"action": "query", "list": "categorymembers", "cmtitle": f"Category:{name}",
                  "cmtype": "page|subcat", "cmnamespace": f"{_ARTICLES}|{_CATEGORIES}", "cmprop": "ids|title",
                  "cmlimit": "max", **cont}
        if first:
            params.update(meta="siteinfo", siprop="general")
        self.crawler.stats.inc_value("overton/listing_requests")
        return self._api(self.parse_listing, self.start_refused if first else self.listing_failed,
                         {"name": name, "depth": depth, "found": found, "first": first}, **params)

    async def start(self):
        request = self._next_listing(first=True)
        if request is not None:
            yield request

    # -- responses --

    def _answer(self, response, what: str, accept: frozenset[str] = frozenset()) -> dict[str, Any] | None:
        """The API's JSON answer; None (with an error logged) when it is not one or is an error outside ``accept``."""
        try:
            data = json.loads(response.text)
        except ValueError:
            self.logger.error("%s: the API did not answer JSON (%s)", what, response.url)
            return None
        error = data.get("error")
        if isinstance(error, dict) and error.get("code") not in accept:
            self.logger.error("%s: API error %s: %s", what, error.get("code"), error.get("info"))
            return None
        for module, warning in (data.get("warnings") or {}).items():
            text = f"{module}: {warning.get('warnings') if isinstance(warning, dict) else warning}"
            self.crawler.stats.inc_value("overton/api_warnings")
            if text not in self.warned:
                self.warned.add(text)
                self.logger.warning("API warning (%s): %s", what, text)
        return data

    def parse_listing(self, response, name: str, depth: int, found: int, first: bool):
        data = self._answer(response, f"listing of category {name!r}")
        if data is None:
            if first:
                return  # without the wiki's language no document can be named; the error fails the run
            self.listing_complete = False
            yield from self._after()
            return
        query = data.get("query", {})
        if first:
            self.lang = query["general"]["lang"]
        members = query.get("categorymembers", [])
        for member in members:
            if member.get("ns") == _ARTICLES:
                self.articles.add(member["pageid"])
            elif member.get("ns") == _CATEGORIES and depth > 0:
                self._enqueue(_category_name(member["title"], listed=True), depth - 1)
        found += len(members)
        if "continue" in data:
            yield self._listing_request(name, depth, data["continue"], found)
            return
        self.crawler.stats.inc_value("overton/categories_listed")
        if not found and name in self.roots:
            self.logger.error("category %r has no member: is its name right (without the namespace prefix)?", name)
            self.listing_complete = False  # its pages are not "removed": the name is more likely wrong
        yield from self._after()

    def listing_failed(self, failure):
        name = failure.request.cb_kwargs["name"]
        self.logger.error("listing of category %r failed: %s", name, failure.value)
        self.listing_complete = False
        yield from self._after()

    def _after(self):
        """The next listing request, or, when every category is listed, the removals and the info requests."""
        request = self._next_listing()
        if request is not None:
            yield request
            return
        stats = self.crawler.stats
        stats.set_value("overton/articles_listed", len(self.articles))
        if self.listing_complete:
            self._record_removals()
        self.pageids = sorted(self.articles)
        yield from self._info_request(0)

    def _info_request(self, start: int):
        """The info request of the batch of page ids from ``start``, if any: one batch after the other, so that
        ``max_pages`` takes the smallest page ids first."""
        if start >= len(self.pageids):
            return
        self.crawler.stats.inc_value("overton/info_requests")
        batch = "|".join(str(pageid) for pageid in self.pageids[start:start + INFO_BATCH])
        yield self._api(self.parse_info, self.info_failed, {"start": start}, action="query", prop="info|revisions",
                        inprop="url", rvprop="ids|timestamp", pageids=batch)

    def _key(self, pageid: int) -> str:
        return f"{self.lang}:{pageid}"

    def _record_removals(self) -> None:
        """Mark, once, the fetched pages that no crawled category lists any more; unmark those that are back."""
        prefix = f"{self.lang}:"
        listed = {self._key(pageid) for pageid in self.articles}
        marks = {key: self.seen.get(REMOVED, key) for key in self.seen.keys(REMOVED) if key.startswith(prefix)}
        removed = []
        with self.seen.batch():
            for key in self.seen.keys(SOURCE):
                if not key.startswith(prefix):
                    continue  # another wiki's page
                mark = marks.get(key)
                if key not in listed and (mark is None or mark.content_hash != "removed"):
                    removed.append(key)
                    self.seen.put(REMOVED, key, content_hash="removed", url=self.seen.get(SOURCE, key).url)
                elif key in listed and mark is not None and mark.content_hash == "removed":
                    self.crawler.stats.inc_value("overton/pages_listed_again")
                    self.seen.put(REMOVED, key, content_hash="listed again", url=mark.url)
        if removed:
            self.crawler.stats.set_value("overton/pages_removed", len(removed))
            self.crawler.stats.set_value("overton/removed_pages", removed)
            self.logger.info("%d pages are no longer in any crawled category (recorded as removed)", len(removed))

    def info_failed(self, failure):
        self.request_failed(failure)
        yield from self._info_request(failure.request.cb_kwargs["start"] + INFO_BATCH)

    def parse_info(self, response, start: int):
        yield from self._fetches(self._answer(response, "page info") or {})
        yield from self._info_request(start + INFO_BATCH)

    def _fetches(self, data: dict[str, Any]):
        """The parse requests of the new and changed pages of one info answer."""
        stats, limit = self.crawler.stats, self.settings_wiki.max_pages
        for page in data.get("query", {}).get("pages", []):
            if page.get("missing") or page.get("invalid"):
                stats.inc_value("overton/pages_missing")
                continue
            if page.get("redirect"):
                stats.inc_value("overton/redirects_skipped")
                continue
            key, revid = self._key(page["pageid"]), page["lastrevid"]
            if not self.seen.is_new_or_changed(SOURCE, key, str(revid)):
                stats.inc_value("overton/already_seen")
                continue
            if limit and self.requested >= limit:
                stats.inc_value("overton/deferred_to_next_run")
                continue
            self.requested += 1
            stats.inc_value("overton/pages_requested")
            revision = (page.get("revisions") or [{}])[0]
            yield self._api(self.parse_article, self.request_failed,
                            {"key": key, "url": page.get("fullurl"), "modified": revision.get("timestamp")},
                            action="parse", oldid=revid, prop="text|revid|categories", disableeditsection="1",
                            disablelimitreport="1")

    def parse_article(self, response, key: str, url: str | None, modified: str | None):
        data = self._answer(response, f"page {key}", accept=_MISSING)
        if data is None:
            return
        if "error" in data:
            self.crawler.stats.inc_value("overton/pages_missing")
            self.logger.info("page %s is gone since it was listed (%s)", key, data["error"].get("code"))
            return
        parsed = data["parse"]
        article = extract(parsed["text"], tables=self.settings_wiki.tables)
        categories = [c["category"].replace("_", " ") for c in parsed.get("categories", []) if not c.get("hidden")]
        article = dataclasses.replace(article, title=parsed["title"], pageid=parsed["pageid"], revid=parsed["revid"],
                                      url=url or article.url, categories=categories, modified=modified)
        if not article.text:
            self.crawler.stats.inc_value("overton/articles_without_text")  # the build rejects it, with its reason
        document = article_document(article, SOURCE, self.lang, datetime.now(UTC))
        yield {"document": document, "seen": {"key": key, "content_hash": str(article.revid), "url": document["url"]}}

    def request_failed(self, failure):
        if failure.check(IgnoreRequest):
            self.logger.error("request refused (robots.txt): %s", failure.request.url)
        else:
            self.logger.error("request failed: %s: %s", failure.request.url, failure.value)
