"""``overton crawl vie-publique``: the speeches of vie-publique.fr, only what is new since the last run.

Catalogue mode (the default): DILA's open-data catalogue lists every speech's metadata. It is fetched
with a conditional request (304 when unchanged since the last complete run: the night costs one
request), parsed as a stream, and diffed by id against the seen-store with a hash of the metadata
fields (:func:`~overton.spiders.dila_catalogue.record_hash`); only new or changed speeches have their
page fetched. The catalogue's validators are stored only after a run that fetched every speech it
listed, so a run that dies, is refused or is limited by ``max_items`` is followed by a full diff.

Listing mode walks ``/discours?page=N`` newest first and stops at the first page with nothing new.

A bot-challenge page is counted and, after ``[crawl] max_challenges``, stops the crawl with a non-zero
exit; it is never worked around. Texts are not licensed by DILA: documents are not redistributable.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import scrapy

from overton.corpus.schema import dump_meta, load_meta, make_id, parse_timestamp, text_sha256
from overton.spiders.base import OvertonSpider
from overton.spiders.dila_catalogue import (
    LICENSE,
    SOURCE,
    clean_url,
    iter_records,
    record_hash,
    record_key,
    record_to_document_fields,
)
from overton.spiders.viepublique_page import SpeechPage, extract_speech

#: Seen-store source of the catalogue file itself (its ETag and Last-Modified).
CATALOGUE = "vie-publique.catalogue"
_SPEECH_PATH = re.compile(r"/discours/(\d+)")
_CATALOGUE_MAX_BYTES = 2 * 1024**3  # the catalogue is ~230 MB and grows; pages keep the usual limit
_CATALOGUE_TIMEOUT = 1800  # seconds for the whole body: 230 MB needs 1 Mbit/s at least, not 61 in 30 s


class ViePubliqueSpider(OvertonSpider):
    name = "vie-publique"
    sources = (SOURCE,)
    expects_items = False  # a night without new speeches is normal; the catalogue's 304 says so
    profile = "speech"
    handle_httpstatus_list = [304]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.catalogue_validators: dict[str, str] | None = None
        self.requested = 0

    @property
    def settings_vp(self):
        return self.crawl_config.vie_publique

    async def start(self):
        self.allowed_domains = [urlsplit(self.settings_vp.listing_url).hostname]
        if self.settings_vp.mode == "catalogue":
            url = self.settings_vp.catalogue_url
            yield scrapy.Request(url, headers=self.seen.conditional_headers(CATALOGUE, url), dont_filter=True,
                                 callback=self.parse_catalogue, errback=self.start_refused,
                                 meta={"download_maxsize": _CATALOGUE_MAX_BYTES, "download_warnsize": 0,
                                       "download_timeout": _CATALOGUE_TIMEOUT})
        else:
            yield self._listing_request(0)

    # -- catalogue mode --

    def parse_catalogue(self, response):
        stats = self.crawler.stats
        if response.status == 304:
            stats.set_value("overton/catalogue_not_modified", 1)
            self.logger.info("catalogue not modified since the last complete run: nothing to fetch")
            return
        headers = {name: response.headers.get(header) for name, header in
                   (("etag", "ETag"), ("last_modified", "Last-Modified"))}
        self.catalogue_validators = {k: v.decode("latin-1") for k, v in headers.items() if v}
        limit = self.settings_vp.max_items
        for record in iter_records(io.BytesIO(response.body)):
            stats.inc_value("overton/catalogue_records")
            try:
                key, digest = record_key(record), record_hash(record)
            except ValueError:
                stats.inc_value("overton/catalogue_records_without_id")
                continue
            if not self.seen.is_new_or_changed(SOURCE, key, digest):
                continue
            url = record.get("url")
            if not isinstance(url, str) or not url.strip():
                stats.inc_value("overton/catalogue_records_without_url")
                continue
            if limit and self.requested >= limit:
                stats.inc_value("overton/deferred_to_next_run")
                continue
            self.requested += 1
            stats.inc_value("overton/speeches_requested")
            yield scrapy.Request(clean_url(url.strip()), callback=self.parse_speech,
                                 cb_kwargs={"fields": record_to_document_fields(record), "key": key,
                                            "digest": digest})

    def parse_speech(self, response, fields: dict[str, Any], key: str, digest: str):
        page = extract_speech(response.text, response.url)
        document = self._document(page, fields, response)
        if document is not None:
            yield {"document": document, "seen": self._seen(response, key, digest)}

    # -- listing mode --

    def _listing_request(self, page: int) -> scrapy.Request:
        url = f"{self.settings_vp.listing_url}?page={page}"
        return scrapy.Request(url, callback=self.parse_listing, cb_kwargs={"page": page}, dont_filter=True,
                              errback=self.start_refused if page == 0 else None)

    def parse_listing(self, response, page: int):
        new = 0
        for href in response.css("a::attr(href)").getall():
            match = _SPEECH_PATH.search(href)
            if not match or self.seen.get(SOURCE, match.group(1)) is not None:
                continue
            new += 1
            self.crawler.stats.inc_value("overton/speeches_requested")
            yield response.follow(href, callback=self.parse_listed_speech, cb_kwargs={"key": match.group(1)})
        if new and page + 1 < self.settings_vp.max_listing_pages:
            yield self._listing_request(page + 1)

    def parse_listed_speech(self, response, key: str):
        page = extract_speech(response.text, response.url)
        published = response.css("time::attr(datetime)").get()
        fields = {
            "id": make_id(SOURCE, key), "source": SOURCE, "url": clean_url(response.url), "title": page.title,
            "published_at": parse_timestamp(published) if published else None,
            "license": LICENSE, "redistributable": False, "meta": None,
        }
        document = self._document(page, fields, response)
        if document is not None:
            yield {"document": document, "seen": self._seen(response, key, text_sha256(document["text"]))}

    # -- shared --

    def _document(self, page: SpeechPage, fields: dict[str, Any], response) -> dict[str, Any] | None:
        stats = self.crawler.stats
        if page.challenge:
            self.bot_challenge(response.url)
            return None
        if not page.text:
            stats.inc_value("overton/pages_without_text")
            self.logger.warning("no speech text found on %s", response.url)
            return None
        stats.inc_value(f"overton/extracted_{page.method}")
        meta = load_meta(fields.get("meta"))
        meta["extraction"] = page.method
        if page.source_line:
            meta["source_line"] = page.source_line
        return {**fields, "text": page.text, "content_sha256": text_sha256(page.text),
                "fetched_at": datetime.now(UTC), "meta": dump_meta(meta)}

    @staticmethod
    def _seen(response, key: str, digest: str) -> dict[str, Any]:
        header = response.headers.get
        return {"key": key, "content_hash": digest, "url": response.url,
                "etag": (header("ETag") or b"").decode("latin-1") or None,
                "last_modified": (header("Last-Modified") or b"").decode("latin-1") or None}

    def closed(self, reason: str) -> None:
        """Remember the catalogue's validators only after a run that fetched everything it listed."""
        stats = self.crawler.stats
        incomplete = ("log_count/ERROR", "overton/deferred_to_next_run", "overton/pages_without_text",
                      "overton/bot_challenges")
        complete = (reason == "finished" and self.catalogue_validators is not None
                    and not any(stats.get_value(name) for name in incomplete)
                    and (stats.get_value("overton/documents_committed") or 0) == self.requested)
        if complete:
            url = self.settings_vp.catalogue_url
            self.seen.put(CATALOGUE, url, etag=self.catalogue_validators.get("etag"),
                          last_modified=self.catalogue_validators.get("last_modified"), url=url)
        super().closed(reason)
