"""``overton crawl quora``: Quora question pages, with the user's permission and only where robots.txt allows.

Quora's terms of use forbid collecting its content, for AI training too, without a licence, and its
robots.txt closes question and answer pages to crawlers it does not name. So:

- **Off without a permission.** :meth:`QuoraSpider.check` refuses to start (exit 2, before any request)
  until ``[crawl.quora] permission`` names the licence or agreement the user holds; each document records
  it in ``meta.permission``.
- **robots.txt first, and it wins.** Before any page, the collector has Scrapy's robots.txt middleware fetch
  and parse the site's robots.txt (one request, which every later page request reuses) and checks each start
  page against it for the crawl's own User-Agent. A start page it disallows is refused with one error line
  naming the page and the agent, and never requested: a permission does not override robots.txt. A
  robots.txt that cannot be read (no answer, or a status other than 2xx, 404 or 410) stops the crawl before
  any page too: RFC 9309 reads an unreachable robots.txt as "disallow everything". Questions found on
  topic pages go through the same middleware; one it disallows is named in a warning and not requested.
  The settings that would turn any of this off (``ROBOTSTXT_OBEY``, ``ROBOTSTXT_USER_AGENT``) are pinned
  above command-line priority, and the crawl refuses to start if the middleware is not installed.
- **Plain requests.** No cookies (``COOKIES_ENABLED`` is pinned off too), no internal API, no proxy or
  User-Agent rotation, no browser: GETs of public pages at ``[crawl] delay``, like every collector. A bot
  challenge (Quora's come as HTTP 403) is counted and, after ``[crawl] max_challenges``, stops the crawl.

Start pages are question pages, fetched once (a question already collected is not fetched again, so answers
written later are not collected), and topic pages (``/topic/NAME``), read every run for the question links
in their HTML (at most ``max_pages`` new questions per run). Each question page becomes the question and
its answers (:mod:`overton.spiders.quora_html`, the parser ``overton ingest --format quora-html`` uses),
authors as pseudonyms, ``redistributable = false``, judged by the ``qa`` profile. A page's answers are
yielded before its question, and the question's key is what marks the page as collected: a crawl killed
between two batches of one page fetches it again and writes only the answers it did not commit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urldefrag, urljoin, urlsplit

import scrapy
from scrapy import signals
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.http import TextResponse

from overton.corpus.config import CrawlConfig, QuoraConfig
from overton.corpus.errors import UserError
from overton.corpus.schema import dump_meta, text_sha256
from overton.spiders.base import OvertonSpider
from overton.spiders.quora_html import NotQuestionPage, Pseudonyms, documents, parse, question_key
from overton.spiders.viepublique_page import is_bot_challenge

SOURCE = "quora"
#: Settings no configuration may change for this collector: set above the command line's priority.
PINNED = {"ROBOTSTXT_OBEY": True, "ROBOTSTXT_USER_AGENT": None, "COOKIES_ENABLED": False}
_PINNED_PRIORITY = 50  # Scrapy's highest named priority, "cmdline", is 40
#: First path segments of Quora pages that are not questions although their path has one segment.
_NOT_QUESTIONS = frozenset({"answer", "answers", "about", "contact", "careers", "following", "notifications",
                            "search", "settings", "spaces", "stats", "topic", "profile", "unanswered"})
#: Statuses of a robots.txt that can be read: the file, or no file (RFC 9309: everything allowed).
_ROBOTS_READABLE = (404, 410)


def start_pages(settings: QuoraConfig) -> list[str]:
    """The absolute start URLs, refusing (UserError) any that is off the site or neither a question nor a topic."""
    if not settings.start_urls:
        raise UserError("no start page: set [crawl.quora] start_urls to question pages or topic pages "
                        "(e.g. \"/topic/Politique-française\")")
    host = urlsplit(settings.base_url).netloc
    pages = []
    for given in settings.start_urls:
        url = urldefrag(urljoin(settings.base_url + "/", given))[0]
        if urlsplit(url).netloc != host:
            raise UserError(f"[crawl.quora] start_urls: {given} is not on {settings.base_url}")
        if not (is_topic(url) or is_question(url)):
            raise UserError(f"[crawl.quora] start_urls: {given} is neither a question page (/Question-words) nor "
                            "a topic page (/topic/NAME)")
        pages.append(url)
    return pages


def is_topic(url: str) -> bool:
    segments = [part for part in urlsplit(url).path.split("/") if part]
    return len(segments) == 2 and segments[0] == "topic"


def is_question(url: str) -> bool:
    """Whether ``url`` is a question page: one path segment of hyphen-joined words that names no site page."""
    segments = [part for part in urlsplit(url).path.split("/") if part]
    return len(segments) == 1 and "-" in segments[0] and segments[0].lower() not in _NOT_QUESTIONS


class QuoraSpider(OvertonSpider):
    name = "quora"
    sources = (SOURCE,)
    profile = "qa"
    handle_httpstatus_list = [403]  # how a bot challenge comes: recognised and counted, never worked around

    @classmethod
    def check(cls, crawl: CrawlConfig) -> None:
        if not crawl.quora.permission.strip():
            raise UserError("Quora's terms of use forbid collecting its content (for AI training too) without a "
                            "licence: set [crawl.quora] permission to the reference of the licence or agreement "
                            "you hold")
        start_pages(crawl.quora)

    @classmethod
    def update_settings(cls, settings) -> None:
        super().update_settings(settings)
        for name, value in PINNED.items():
            settings.set(name, value, priority=_PINNED_PRIORITY)

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.quora = spider.crawl_config.quora
        spider.start_urls = start_pages(spider.quora)
        spider.allowed_domains = [urlsplit(spider.quora.base_url).hostname]
        spider.pseudonyms = Pseudonyms(spider.workspace.state)
        spider.requested = 0
        spider.robots_status = None
        crawler.signals.connect(spider._robots_response, signal=signals.response_received)
        return spider

    def _robots_response(self, response, request, spider=None) -> None:
        if request.meta.get("dont_obey_robotstxt") and urlsplit(request.url).path == "/robots.txt":
            self.robots_status = response.status

    async def start(self):
        allowed = await self._allowed_by_robots()
        for url in allowed:
            if is_topic(url):
                yield scrapy.Request(url, callback=self.parse_topic, dont_filter=True, errback=self.start_refused)
            elif (request := self._question_request(url, errback=self.start_refused)) is not None:
                yield request

    async def _allowed_by_robots(self) -> list[str]:
        """The start pages robots.txt allows this crawl's User-Agent; the others are refused, loudly."""
        robots = self.quora.base_url + "/robots.txt"
        middleware = next((m for m in self.crawler.engine.downloader.middleware.middlewares
                           if isinstance(m, RobotsTxtMiddleware)), None)
        if middleware is None:
            return self._refuse(self.start_urls, "robots.txt is not obeyed (its middleware is not installed): "
                                "the quora collector does not run without it")
        parser = await middleware.robot_parser(scrapy.Request(self.start_urls[0]))
        status = self.robots_status
        if parser is None or status is None or not (200 <= status < 300 or status in _ROBOTS_READABLE):
            answer = "no answer" if status is None else f"HTTP {status}"
            return self._refuse(self.start_urls, f"{robots} could not be read ({answer}): nothing is fetched "
                                "until it can be (an unreachable robots.txt disallows everything)")
        agent = self.settings.get("USER_AGENT")
        refused = [url for url in self.start_urls if not parser.allowed(url, agent)]
        for url in refused:
            self._refuse([url], f"{robots} disallows {url} for User-Agent {agent!r}: not fetched (a permission "
                         "does not override robots.txt)")
        return [url for url in self.start_urls if url not in refused]

    def _refuse(self, urls: list[str], why: str) -> list[str]:
        self.crawler.stats.inc_value("overton/start_refused", len(urls))
        self.logger.error(why)
        return []

    def _question_request(self, url: str, errback=None) -> scrapy.Request | None:
        """The request for a question page not collected yet, within ``max_pages``; None otherwise."""
        stats = self.crawler.stats
        if self.seen.get(SOURCE, question_key(url)) is not None:
            stats.inc_value("overton/already_seen")
            return None
        if self.requested >= self.quora.max_pages:
            stats.inc_value("overton/deferred_to_next_run")
            return None
        self.requested += 1
        return scrapy.Request(url, callback=self.parse_question, errback=errback)

    def _refused_page(self, response) -> bool:
        """Whether ``response`` is a bot challenge (counted: enough of them stop the crawl) or a 403 (an error)."""
        if isinstance(response, TextResponse) and is_bot_challenge(response.text):
            self.bot_challenge(response.url)
            return True
        if response.status == 403:
            self.logger.error("%s: HTTP 403 Forbidden", response.url)
            return True
        return False

    def parse_topic(self, response):
        """Follow the topic's links to questions (an answer's link stands for its question) on the site."""
        if self._refused_page(response):
            return
        host = urlsplit(self.quora.base_url).netloc
        keys = []
        for href in response.css("a::attr(href)").getall():
            url = response.urljoin(href)
            key = question_key(url) if urlsplit(url).netloc == host else None
            if key and is_question(f"/{key}"):
                keys.append(key)
        for key in dict.fromkeys(keys):
            url = f"{self.quora.base_url}/{quote(key)}"
            if (request := self._question_request(url, errback=self.question_failed)) is not None:
                yield request

    def question_failed(self, failure) -> None:
        """Errback of the questions found on topics: one that robots.txt disallows, or that failed, is named."""
        self.crawler.stats.inc_value("overton/questions_not_fetched")
        self.logger.warning("question not fetched: %s: %s", failure.request.url, failure.value)

    def parse_question(self, response):
        stats = self.crawler.stats
        if response.status == 403 and self._refused_page(response):
            return
        try:
            page = parse(response.body)
        except NotQuestionPage as exc:
            if not self._refused_page(response):
                stats.inc_value("overton/not_question_pages")
                self.logger.warning("%s: %s", response.url, exc)
            return
        if self.seen.get(SOURCE, page.key) is not None:  # reached under another address
            stats.inc_value("overton/already_seen")
            return
        for position, why in page.skipped:
            stats.inc_value("overton/answers_skipped")
            self.logger.warning("%s: answer %d: %s", response.url, position, why)
        question, answers = documents(page, SOURCE, self.pseudonyms)
        for fields in answers:
            key = fields["id"].split(":", 1)[1]
            if self.seen.get(SOURCE, key) is None:
                yield self._item(fields, key)
        stats.inc_value("overton/questions")
        yield self._item(question, page.key)

    def _item(self, fields: dict[str, Any], key: str) -> dict[str, Any]:
        meta = {**fields["meta"], "permission": self.quora.permission}
        document = {**fields, "source": SOURCE, "fetched_at": datetime.now(UTC), "keywords": None,
                    "thematics": None, "content_sha256": text_sha256(fields["text"]), "meta": dump_meta(meta)}
        return {"document": document,
                "seen": {"key": key, "content_hash": document["content_sha256"], "url": fields["url"]}}
