"""``overton crawl SPIDER``: run one collector in this process and tell the scheduler whether it worked.

Scrapy reports a crawl as finished even when every page failed; a cron job needs an exit code. The
final stats decide: the crawl failed when it did not finish normally (``finish_reason``), logged
errors (a page that failed after its retries, a spider exception), met a bot challenge, was refused
its start page (robots.txt), or stored nothing although it found no page it already had. The
stats and the verdict go to ``runs/<time>-crawl-<spider>.json``. Two crawls of one spider never run at
once on a workspace (a lock); ``--resumable`` keeps Scrapy's request queue in ``state/crawl/<spider>/``
(``JOBDIR``) so a long backfill stopped with Ctrl-C or SIGTERM resumes where it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace


def spiders() -> dict[str, type]:
    from overton.spiders.collectors.viepublique import ViePubliqueSpider
    from overton.spiders.collectors.web import WebSpider

    return {spider.name: spider for spider in (ViePubliqueSpider, WebSpider)}


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


def run_crawl(workspace: Workspace, name: str, *, resumable: bool = False, log_level: str = "INFO") -> CrawlOutcome:
    from scrapy.crawler import AsyncCrawlerProcess

    available = spiders()
    if name not in available:
        raise UserError(f"unknown spider {name!r}: choose one of {', '.join(sorted(available))}")
    settings: dict[str, Any] = {"OVERTON_WORKSPACE": str(workspace.root), "LOG_LEVEL": log_level}
    if resumable:
        settings["JOBDIR"] = str(workspace.state / "crawl" / name / "job")
    with workspace.lock(f"crawl-{name}"):
        process = AsyncCrawlerProcess(settings)
        crawler = process.create_crawler(available[name])
        process.crawl(crawler)
        process.start()
    stats = {key: value.isoformat() if isinstance(value, datetime) else value
             for key, value in sorted(crawler.stats.get_stats().items())}
    return CrawlOutcome(name, stats, verdict(stats, available[name].expects_items))
