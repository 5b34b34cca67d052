"""The article on one fetched web page, as text and metadata, without fetching anything.

Why it is split this way:

- **trafilatura extracts.** Telling an article from its menus, teasers, share buttons and footer on any
  site is what trafilatura is built and evaluated for; this module only chooses its settings for news
  and political pages and puts its output in the build's normal form.
- **Scrapy fetches.** trafilatura's own fetcher refuses loopback addresses (so the tests' local sites
  could not be crawled) and would duplicate what the Scrapy settings already do for every collector:
  robots.txt, per-site throttling, the HTTP cache, conditional requests and crawl statistics. The
  generic spider hands each response to :func:`extract_article` and counts the pages it returns None for.
- **Wikipedia is refused.** It has its own collector (the API, revision ids, CC BY-SA attribution), so
  the generic spider calls :func:`is_wikipedia` to leave its pages alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import lxml.html
import trafilatura
from trafilatura.deduplication import LRUCache
from w3lib.encoding import html_to_unicode

from overton.corpus.schema import parse_timestamp
from overton.corpus.text import clean_whitespace

_WIKIMEDIA_DOMAINS = ("wikipedia.org", "wikimedia.org", "wikidata.org")
# The last " - ", " | " or " – " of a title, and what follows it.
_TITLE_SUFFIX = re.compile(r"(?P<title>.+)\s[-|–—]\s(?P<site>.+)$")
# French and English bylines: "Par Attac France", "By Jane Doe".
_BYLINE = re.compile(r"^(?:par|by)\s+(?=\S)", re.IGNORECASE)
# Inline tags trafilatura deletes when empty; in precision mode it deletes the text after them too, which
# cuts words out of the middle of sentences ('"gourou de la majorité"<strong></strong>par un dirigeant...').
_INLINE_TAGS = ("b", "em", "i", "q", "span", "strong")
# htmldate: the first publication date, not the last modification (a corrected article keeps its date);
# no "extensive" search of the visible text, which turns any date the article mentions into its date.
# The time of day and its zone are kept when the page gives them.
_DATE_PARAMS = {"original_date": True, "extensive_search": False, "outputformat": "%Y-%m-%dT%H:%M:%S%z"}


@dataclass(frozen=True)
class Article:
    text: str  # paragraphs separated by "\n\n", in the build's normal form (clean_whitespace)
    title: str | None
    author: str | None  # as the page credits it; several names are joined by "; "
    published_at: datetime | None  # UTC; midnight when the page only gives the day
    language: str | None  # the language the page declares (<html lang>), lower case, e.g. "fr"
    sitename: str | None
    description: str | None  # the page's own summary (meta description, og:description)
    categories: tuple[str, ...]
    tags: tuple[str, ...]


def extract_article(html: str | bytes, url: str) -> Article | None:
    """The main text and metadata of one page; None when it has no main text.

    ``url`` is the page's address: relative links in its metadata resolve against it and htmldate reads
    dates from it. ``html`` is the page's text, or its bytes (see ``_decode``).
    """
    tree = trafilatura.load_html(_decode(html) if isinstance(html, bytes) else html)
    if tree is None:
        return None
    _drop_empty_inline(tree)
    document = trafilatura.bare_extraction(
        tree,
        url=url,
        # Precision over recall: a missed paragraph costs less than newsletter forms, "Contents" boxes
        # and share buttons trained into the model (balanced mode kept all three on the real test pages).
        favor_precision=True,
        # Reader comments are not the publisher's text and often not French prose.
        include_comments=False,
        # Tables come out as run-together cells: poll figures and vote counts without their labels.
        include_tables=False,
        # A fresh cache per page drops a block the page itself repeats, and keeps the result a function of
        # the page alone. trafilatura's shared cache would make a page's text depend on the pages extracted
        # before it in the process: a page extracted a fourth time lost its paragraphs (6,724 characters,
        # then 296). Boilerplate repeated across a site's pages is the build's to measure and dedup.
        deduplicate=LRUCache(),
        with_metadata=True,
        date_extraction_params=_DATE_PARAMS,
    )
    if document is None:
        return None
    title, author, sitename, description = (
        value or None for value in clean_whitespace([document.title or "", document.author or "",
                                                     document.sitename or "", document.description or ""])
    )
    short_title = _without_site_name(title, sitename)
    text = _paragraphs(document.text or "", {title, short_title})
    if not text:
        return None
    published_at = parse_timestamp(document.date)
    return Article(
        text=text,
        title=short_title,
        author=_BYLINE.sub("", author) if author else None,
        published_at=published_at.astimezone(UTC) if published_at else None,
        language=_declared_language(tree),
        sitename=sitename,
        description=description,
        categories=_terms(document.categories),
        tags=_terms(document.tags),
    )


def is_wikipedia(url: str) -> bool:
    """Whether ``url`` is on Wikipedia, Wikimedia or Wikidata (any language, mobile or not)."""
    host = urlsplit(url if "//" in url else "//" + url).hostname or ""
    host = host.rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in _WIKIMEDIA_DOMAINS)


def _decode(body: bytes) -> str:
    """Text of a page's bytes. Valid UTF-8 wins over a declaration, which is often a stale template's.

    Otherwise w3lib, the decoder behind Scrapy's ``response.text``: the byte-order mark, then ``<meta
    charset>`` or the XML declaration (ISO-8859-1 read as windows-1252, as browsers do, so "’" and "œ"
    survive), then windows-1252, the encoding of undeclared French pages. Not a statistical guess:
    charset_normalizer read a 2 KB windows-1252 French page as Baltic ("sķnateurs").
    """
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return html_to_unicode(None, body, default_encoding="cp1252")[1]


def _drop_empty_inline(tree: lxml.html.HtmlElement) -> None:
    """Remove empty inline elements, keeping the text that follows them (see ``_INLINE_TAGS``)."""
    for element in list(tree.iter(*_INLINE_TAGS)):
        if len(element) == 0 and not (element.text or "").strip():
            element.drop_tag()


def _declared_language(tree: lxml.html.HtmlElement) -> str | None:
    """The primary subtag of ``<html lang>``. trafilatura only names a language when it filters on one,
    and the build's own language step, not this page's markup, decides what is French."""
    declared = (tree.getroottree().getroot().get("lang") or "").strip().lower()
    return declared.replace("_", "-").split("-")[0] or None


def _paragraphs(text: str, titles: set[str | None]) -> str:
    """trafilatura's lines (one per paragraph, heading, list item or line break) as the build's paragraphs,
    without a first one that repeats the title (with or without the site's name): the title is a field."""
    paragraphs = clean_whitespace([line for line in text.split("\n") if line.strip()])
    if paragraphs and paragraphs[0].casefold() in {title.casefold() for title in titles if title}:
        paragraphs = paragraphs[1:]
    return "\n\n".join(paragraph for paragraph in paragraphs if paragraph)


def _without_site_name(title: str | None, sitename: str | None) -> str | None:
    """"A Paris-8, un peu de tension - Bondy Blog" -> "A Paris-8, un peu de tension": og:title and <title>
    often end with the name of the site, which would otherwise end every title it publishes."""
    match = _TITLE_SUFFIX.match(title or "")
    if match and sitename and _name_key(match["site"]) == _name_key(sitename):
        return match["title"]
    return title


def _name_key(name: str) -> str:
    """"Gala.fr" and "Gala", "Info'Com-CGT" and "InfoCom CGT" name the same site."""
    return re.sub(r"\W", "", re.sub(r"\.[a-z]{2,6}$", "", name.casefold()))


def _terms(values: list[str] | None) -> tuple[str, ...]:
    """Categories or tags, one per item: a page's ``keywords`` meta arrives as one comma-separated item."""
    terms = (term.strip() for value in values or () for term in value.split(","))
    return tuple(dict.fromkeys(term for term in terms if term))
