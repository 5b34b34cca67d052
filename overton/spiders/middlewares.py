"""Retries that wait as long as the site asks (``Retry-After``), or back off when it does not say.

Scrapy's own RetryMiddleware retries a 429 or 503 at once, which is exactly what a rate-limited
site does not want. :class:`RetryAfterMiddleware` replaces it (``crawl_settings`` swaps them):

- the wait is the ``Retry-After`` header (seconds or an HTTP-date) when given, otherwise
  ``RETRY_BACKOFF_BASE * 2**(attempt - 1)``; both are capped at ``RETRY_AFTER_MAX``;
- the retry is built by Scrapy's ``get_retry_request`` (same ``RETRY_TIMES``, stats and logging);
- the wait is an ``await`` on the event loop, so other sites keep being crawled meanwhile;
- the whole site waits too: when the response arrives, its downloader slot is pushed back by the wait,
  so the next request to that site does not go out during the pause (this uses the slot's delay
  mechanism, so it needs ``DOWNLOAD_DELAY > 0``, which a polite crawl always has);
- stats: ``retry_after/waited`` (number of waits) and ``retry_after/seconds`` (their total).

Download errors (timeouts, lost connections) keep Scrapy's immediate retry.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.utils.asyncio import sleep
from scrapy.utils.response import response_status_message

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


class RetryAfterMiddleware(RetryMiddleware):
    def __init__(self, crawler: Crawler):
        super().__init__(crawler.settings)
        self.crawler = crawler
        self.max_wait = crawler.settings.getfloat("RETRY_AFTER_MAX", 300.0)
        self.backoff_base = crawler.settings.getfloat("RETRY_BACKOFF_BASE", 5.0)
        crawler.signals.connect(self._hold_site, signal=signals.response_downloaded)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def wait_for(self, request: Request, response: Response) -> float:
        """Seconds before retrying ``request`` after ``response``."""
        header = response.headers.get("Retry-After")
        asked = retry_after_seconds(header.decode("latin-1") if header else None)
        if asked is None:
            asked = self.backoff_base * 2 ** request.meta.get("retry_times", 0)
        return min(asked, self.max_wait)

    def _hold_site(self, response: Response, request: Request) -> None:
        """Push the site's slot back before the downloader hands it the next queued request."""
        if response.status not in self.retry_http_codes or request.meta.get("dont_retry", False):
            return
        slot = self.crawler.engine.downloader.slots.get(request.meta.get("download_slot"))
        if slot is not None:
            slot.lastseen = max(slot.lastseen, time.monotonic() + self.wait_for(request, response))

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        if response.status not in self.retry_http_codes or request.meta.get("dont_retry", False):
            return response
        retry = self._retry(request, response_status_message(response.status))
        if retry is None:
            return response
        seconds = self.wait_for(request, response)
        stats = self.crawler.stats
        stats.inc_value("retry_after/waited")
        stats.inc_value("retry_after/seconds", round(seconds, 3))
        await sleep(seconds)
        return retry
