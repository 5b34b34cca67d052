"""The item pipeline every collector uses: documents into ``raw/<source>/`` in committed batches.

A spider yields ``{"document": {...schema fields...}, "seen": {"key": ..., "content_hash": ...,
"etag": ..., "last_modified": ..., "url": ...}}``. Documents are grouped by source; every
``[crawl] batch_items`` documents a batch becomes its own raw run (parts, then ``run.json`` last, which
also lists the batch's seen entries), and only then are its items recorded in the seen-store, in one
transaction with the run id. So:

- a crawl killed at any moment loses at most the batch in progress: its items are not recorded as
  seen, and the next run fetches them again;
- a document is never written twice: a kill between ``run.json`` and the seen-store leaves a run
  that the next crawl finds unrecorded when it opens, and records before fetching anything.
"""

from __future__ import annotations

from typing import Any

from overton.corpus.schema import check_source_name
from overton.corpus.workspace import Workspace
from overton.spiders.raw import RawRunWriter
from overton.spiders.seen import SeenStore


def record_seen(seen: SeenStore, source: str, run_id: str, entries: list[dict[str, Any]]) -> None:
    """Mark every entry of one committed raw run as fetched, with the run, in one transaction."""
    with seen.batch():
        for entry in entries:
            seen.put(source, entry["key"], etag=entry.get("etag"), last_modified=entry.get("last_modified"),
                     content_hash=entry.get("content_hash"), url=entry.get("url"))
        seen.record_run(source, run_id)


def recover(workspace: Workspace, seen: SeenStore, sources: set[str]) -> int:
    """Record the committed raw runs of ``sources`` whose items a killed crawl did not record; returns how many."""
    recovered = 0
    for run in workspace.raw_runs():
        if run.source in sources and not seen.run_recorded(run.source, run.run_id):
            entries = run.record().get("seen")
            if entries is not None:
                record_seen(seen, run.source, run.run_id, entries)
                recovered += 1
    return recovered


class RawPipeline:
    """Scrapy item pipeline; the spider provides ``workspace``, ``seen``, ``sources`` and ``batch_items``."""

    def __init__(self, crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler) -> RawPipeline:
        return cls(crawler)

    def open_spider(self) -> None:
        self.spider = spider = self.crawler.spider
        self.pending: dict[str, list[dict[str, Any]]] = {}
        recovered = recover(spider.workspace, spider.seen, set(spider.sources))
        self.crawler.stats.set_value("overton/batches_recovered", recovered)

    def process_item(self, item: dict[str, Any]) -> dict[str, Any]:
        source = check_source_name(item["document"]["source"])
        batch = self.pending.setdefault(source, [])
        batch.append(item)
        if len(batch) >= self.spider.batch_items:
            self._commit(source)
        return item

    def close_spider(self) -> None:
        for source in sorted(self.pending):
            self._commit(source)

    def _commit(self, source: str) -> None:
        items = self.pending.pop(source, [])
        if not items:
            return
        writer = RawRunWriter(self.spider.workspace, source, f"crawl-{self.spider.name}",
                              self.spider.profile_of(source))
        for item in items:
            writer.add(item["document"])
        entries = [item["seen"] for item in items]
        writer.commit({"job": "crawl", "spider": self.spider.name, "seen": entries})
        record_seen(self.spider.seen, source, writer.run_id, entries)
        stats = self.spider.crawler.stats
        stats.inc_value("overton/batches_committed")
        stats.inc_value("overton/documents_committed", len(items))
