"""What every overton collector shares: its workspace, settings, seen-store and politeness rules.

The workspace is the ``OVERTON_WORKSPACE`` setting (``overton crawl`` sets it; with ``scrapy crawl``
pass ``-s OVERTON_WORKSPACE=DIR`` or set the environment variable). :meth:`update_settings` turns its
``[crawl]`` section into Scrapy settings before the crawler starts, so ``overton crawl`` and ``scrapy
crawl`` run the same polite crawl, and a collector refuses to start without a contact User-Agent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import scrapy
from scrapy.exceptions import CloseSpider, IgnoreRequest

from overton.corpus.config import DEFAULT_PROFILE, CrawlConfig
from overton.corpus.workspace import Workspace
from overton.spiders.seen import SeenStore
from overton.spiders.settings import crawl_settings

SEEN_DB = "seen.sqlite3"


def workspace_of(settings) -> Workspace:
    return Workspace.open(Path(settings.get("OVERTON_WORKSPACE") or os.environ.get("OVERTON_WORKSPACE") or "."))


class OvertonSpider(scrapy.Spider):
    """Base of the collectors. Subclasses set ``name``, ``sources`` and ``expects_items``."""

    #: Source names this spider writes (its raw batches are recovered at start).
    sources: ClassVar[tuple[str, ...]] = ()
    #: Whether a run that stores nothing has failed (False where "nothing new tonight" is normal).
    expects_items: ClassVar[bool] = True
    #: The source profile of what it collects (recorded in each raw run; ``[sources.NAME] profile`` overrides it).
    profile: ClassVar[str] = DEFAULT_PROFILE

    def profile_of(self, source: str) -> str:
        return self.profile

    @classmethod
    def check(cls, crawl: CrawlConfig) -> None:
        """Refuse, with a :class:`UserError`, settings this collector cannot run with (before any request)."""

    @classmethod
    def update_settings(cls, settings) -> None:
        super().update_settings(settings)
        workspace = workspace_of(settings)
        crawl = workspace.config().crawl
        cls.check(crawl)
        http_cache = str(workspace.state / "httpcache") if crawl.http_cache else None
        values = crawl_settings(crawl.user_agent, delay=crawl.delay, http_cache_dir=http_cache,
                                AUTOTHROTTLE_ENABLED=crawl.autothrottle,
                                ITEM_PIPELINES={"overton.spiders.pipeline.RawPipeline": 300})
        settings.setdict(values, priority="spider")

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.workspace = workspace_of(crawler.settings)
        spider.crawl_config = spider.workspace.config().crawl
        spider.batch_items = spider.crawl_config.batch_items
        spider.seen = SeenStore(spider.workspace.state / SEEN_DB)
        return spider

    crawl_config: CrawlConfig
    seen: SeenStore

    def closed(self, reason: str) -> None:
        """Called once the pipeline has committed its last batch; subclasses call it last."""
        self.seen.close()

    def start_refused(self, failure) -> None:
        """Errback of start requests: robots.txt refusing a start page fails the crawl, loudly."""
        if failure.check(IgnoreRequest):
            self.crawler.stats.inc_value("overton/start_refused")
            self.logger.error("start page refused (robots.txt or off-site): %s", failure.request.url)
        else:
            self.logger.error("start page failed: %s: %s", failure.request.url, failure.value)

    def bot_challenge(self, url: str) -> None:
        """Count a bot-challenge page; stop the crawl after ``max_challenges`` of them. Never work around one."""
        stats = self.crawler.stats
        stats.inc_value("overton/bot_challenges")
        self.logger.warning("bot challenge instead of content: %s", url)
        if stats.get_value("overton/bot_challenges") >= self.crawl_config.max_challenges:
            raise CloseSpider("bot_challenge")
