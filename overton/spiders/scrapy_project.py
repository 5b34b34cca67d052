"""Scrapy project settings for ``scrapy list`` / ``scrapy crawl`` run from the repository (``scrapy.cfg``).

Only where the collectors are: every other setting comes from the workspace's ``[crawl]`` section, which
each collector applies itself (:meth:`overton.spiders.base.OvertonSpider.update_settings`), so ``scrapy
crawl`` and ``overton crawl`` make the same polite crawl.
"""

BOT_NAME = "overton"
SPIDER_MODULES = ["overton.spiders.collectors"]
