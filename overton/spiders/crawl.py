"""``overton crawl SPIDER``: run one collector in this process and tell the scheduler whether it worked.

Scrapy reports a crawl as finished even when every page failed; a cron job needs an exit code. The
final stats decide: the crawl failed when it did not finish normally (``finish_reason``), logged
errors (a page that failed after its retries, a spider exception), met a bot challenge, was refused
its start page (robots.txt), or stored nothing although it found no page it already had. The
stats and the verdict go to ``runs/<time>-crawl-<spider>.json``. Two crawls of one spider never run at
once on a workspace (a lock); ``--resumable`` keeps Scrapy's request queue in ``state/crawl/<spider>/``
(``JOBDIR``) so a long backfill stopped with Ctrl-C or SIGTERM resumes where it was.

What it logs (to stderr) is for a person or a cron mail, so by default only what matters: warnings and
errors, and overton's own lines (the collectors' notes, :class:`Progress` every minute). Scrapy's startup
banner, its settings and component lists and the final stats dump (the stats are in the run record) come
with ``log="verbose"``; ``log="quiet"`` keeps warnings and errors only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scrapy.extensions.logstats import LogStats
from scrapy.settings import default_settings
from scrapy.utils.asyncio import create_looping_call

from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace

LOGS = ("quiet", "progress", "verbose")
PROGRESS_SECONDS = 60.0  # between two progress lines
_logger = logging.getLogger(__name__)


def spiders() -> dict[str, type]:
    from overton.spiders.collectors.quora import QuoraSpider
    from overton.spiders.collectors.viepublique import ViePubliqueSpider
    from overton.spiders.collectors.web import WebSpider
    from overton.spiders.collectors.wikipedia import WikipediaSpider

    return {spider.name: spider for spider in (ViePubliqueSpider, WebSpider, WikipediaSpider, QuoraSpider)}


@dataclass
class CrawlOutcome:
    spider: str
    stats: dict[str, Any]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verdict(stats: dict[str, Any], expects_items: bool) -> list[str]:
    """Why the crawl failed, one line each; empty when it worked."""
    problems = []
    reason = stats.get("finish_reason")
    if reason == "bot_challenge" or stats.get("overton/bot_challenges"):
        problems.append(f"{stats.get('overton/bot_challenges', 0)} bot-challenge pages instead of content: the "
                        "site refuses automated clients; overton does not work around that")
    elif reason != "finished":
        problems.append(f"the crawl did not finish normally (finish_reason: {reason})")
    if stats.get("overton/start_refused"):
        problems.append("a start page was refused (robots.txt disallows it, or it is off-site)")
    if stats.get("log_count/ERROR"):
        problems.append(f"{stats['log_count/ERROR']} errors logged (pages that failed after their retries, "
                        "or spider errors): see the log")
    if expects_items and not stats.get("item_scraped_count") and not stats.get("overton/already_seen"):
        problems.append("no document was collected, and no page was already known: nothing was found")
    return problems


class Progress(LogStats):
    """overton's progress line, every ``LOGSTATS_INTERVAL`` seconds, in place of Scrapy's LogStats (whose
    final per-minute stats it keeps); unlike LogStats, no line of zeros when the crawl starts."""

    def spider_opened(self, spider) -> None:
        self.pagesprev, self.itemsprev = 0, 0
        self.task = create_looping_call(self.log, spider)
        self.task.start(self.interval, now=False)

    def log(self, spider) -> None:
        self.calculate_stats()
        _logger.info("crawl %s: %d pages fetched (%d/min), %d documents so far", spider.name, self.pages, self.prate,
                     self.items)


class _OwnLines(logging.Filter):
    """Lets through warnings and errors, and INFO lines of overton's loggers and of the spider's own logger."""

    def __init__(self, spider: str):
        super().__init__()
        self.own = ("overton", spider)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or any(
            record.name == name or record.name.startswith(name + ".") for name in self.own)


@contextlib.contextmanager
def _log_handler(log: str, spider: str) -> Iterator[None]:
    """A stderr handler on the root logger in Scrapy's format, for the time of the crawl.

    Ours rather than Scrapy's (``LOG_INSTALL_ROOT_HANDLER`` off): each crawler remakes Scrapy's root handler
    from its settings, which would drop the filter of the default log.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(default_settings.LOG_FORMAT, default_settings.LOG_DATEFORMAT))
    handler.setLevel(logging.WARNING if log == "quiet" else logging.INFO)
    if log == "progress":
        handler.addFilter(_OwnLines(spider))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.NOTSET)  # as Scrapy's own handler does: the handler decides
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def run_crawl(workspace: Workspace, name: str, *, resumable: bool = False, log: str = "progress") -> CrawlOutcome:
    """Crawl with spider ``name``; ``log`` is one of :data:`LOGS`."""
    from scrapy.crawler import AsyncCrawlerProcess

    available = spiders()
    if name not in available:
        raise UserError(f"unknown spider {name!r}: choose one of {', '.join(sorted(available))}")
    if log not in LOGS:
        raise ValueError(f"log must be one of {LOGS}, not {log!r}")
    settings: dict[str, Any] = {
        "OVERTON_WORKSPACE": str(workspace.root), "LOG_LEVEL": "WARNING" if log == "quiet" else "INFO",
        "LOG_INSTALL_ROOT_HANDLER": False, "LOGSTATS_INTERVAL": PROGRESS_SECONDS,
        "EXTENSIONS": {"scrapy.extensions.logstats.LogStats": None, f"{__name__}.Progress": 0},
    }
    if resumable:
        settings["JOBDIR"] = str(workspace.state / "crawl" / name / "job")
    with workspace.lock(f"crawl-{name}"), _log_handler(log, name):
        process = AsyncCrawlerProcess(settings)
        crawler = process.create_crawler(available[name])
        process.crawl(crawler)
        process.start()
    stats = {key: value.isoformat() if isinstance(value, datetime) else value
             for key, value in sorted(crawler.stats.get_stats().items())}
    return CrawlOutcome(name, stats, verdict(stats, available[name].expects_items))
