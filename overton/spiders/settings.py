"""Production Scrapy settings: the politeness rules of DESIGN.md as one function every crawler uses.

robots.txt obeyed, one request at a time per site with a delay and AutoThrottle, a User-Agent that
says who to contact, retries with ``Retry-After`` honoured (:mod:`overton.spiders.middlewares`),
bounded page sizes and timeouts.

Checked against Scrapy 2.19:

- off-site filtering is the downloader middleware ``scrapy.downloadermiddlewares.offsite.
  OffsiteMiddleware``, enabled by default (``DOWNLOADER_MIDDLEWARES_BASE``); it reads the spider's
  ``allowed_domains`` and lets through any request with ``dont_filter=True`` -- which the default
  ``Spider.start()`` sets on every start URL -- so only followed links are filtered.
- Scrapy 2.19 starts a "remote control" HTTP server by default (``RemoteControl`` extension: runs
  Python code sent with a token, and writes that token to a job file in the user's state folder);
  a cron crawler has no use for it, so it is off like the telnet console.
- ``REQUEST_FINGERPRINTER_IMPLEMENTATION`` no longer exists (the 2.7 fingerprinter is the only one),
  so it is not set; the asyncio reactor is Scrapy's default and is pinned here because the
  middlewares and ``async def start()`` spiders rely on it.
"""

from __future__ import annotations

import re
from typing import Any

from overton.corpus.errors import UserError

_CONTACT = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+|https?://[\w.-]+\.\w+")


def crawl_settings(
    user_agent: str,
    *,
    delay: float = 1.0,
    http_cache_dir: str | None = None,
    jobdir: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Scrapy settings for a polite crawl; ``overrides`` win (dict values such as
    ``DOWNLOADER_MIDDLEWARES`` are merged into ours rather than replacing them).

    ``http_cache_dir`` (absolute path) replays pages while developing a spider; ``jobdir`` makes a
    long crawl resumable after a kill (Scrapy persists its queue and seen requests there).
    """
    if not _CONTACT.search(user_agent or ""):
        raise UserError(
            f"crawl User-Agent {user_agent!r} has no contact: include an e-mail address or a URL, "
            "e.g. 'overton/0.1 (+mailto:you@example.org)'"
        )
    if delay < 0:
        raise UserError(f"crawl delay must be 0 or more seconds, not {delay}")
    settings: dict[str, Any] = {
        "BOT_NAME": "overton",
        "USER_AGENT": user_agent,
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": 8,  # across sites; each site still gets one at a time
        "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
        "DOWNLOAD_DELAY": delay,  # AutoThrottle never goes below it
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": max(delay, 1.0),
        "AUTOTHROTTLE_MAX_DELAY": 60.0,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        "RETRY_ENABLED": True,
        "RETRY_TIMES": 3,
        "RETRY_HTTP_CODES": [429, 500, 502, 503, 504, 408, 522, 524],
        "RETRY_AFTER_MAX": 300.0,  # seconds; a longer Retry-After is cut to this
        "RETRY_BACKOFF_BASE": 5.0,  # seconds before the first retry when no Retry-After is given
        "DOWNLOADER_MIDDLEWARES": {
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "overton.spiders.middlewares.RetryAfterMiddleware": 550,
        },
        "REDIRECT_MAX_TIMES": 5,  # start URLs bypass the dupefilter, so this is what ends a loop
        "DOWNLOAD_TIMEOUT": 30,
        "DOWNLOAD_MAXSIZE": 16 * 1024 * 1024,
        "DOWNLOAD_WARNSIZE": 4 * 1024 * 1024,
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,  # new in 2.19, on by default: an HTTP server that runs Python code
    }
    if http_cache_dir is not None:
        settings.update(
            HTTPCACHE_ENABLED=True,
            HTTPCACHE_DIR=http_cache_dir,
            HTTPCACHE_IGNORE_HTTP_CODES=[429, 500, 502, 503, 504],  # never replay a transient failure
        )
    if jobdir is not None:
        settings["JOBDIR"] = jobdir
    for name, value in overrides.items():
        current = settings.get(name)
        settings[name] = {**current, **value} if isinstance(value, dict) and isinstance(current, dict) else value
    return settings
