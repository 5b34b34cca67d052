"""Wikipedia article HTML -> the article's clean text, and the overton document made from it.

Two flavours of HTML hold one article: MediaWiki's parser output (what ``action=parse&prop=text`` returns, a
``<div class="mw-parser-output">``, also inside a page saved from a browser) and Parsoid HTML (what the REST
API and the Wikimedia Enterprise dumps return: a whole document with ``mw:pageId``, ``dc:modified``, category
links and ``<section>`` elements). Both are read by one walk over the content in document order.

What is kept is what a reader reads as the article: paragraphs, quotations, lists (one item per line),
section headings (each a paragraph of its own), mathematics as the text of its MathML (``x⋅y=x1y1``, the TeX
source left out), and tables only when asked (``tables=True``: the ``wikitable`` ones and those without a
class, one row per line, cells joined by `` | ``; other classes are layout).
What is dropped is the page's apparatus: reference markers and the references, infoboxes, navigation boxes,
banners (maintenance, disambiguation, "Article détaillé"), edit links, images and their captions, galleries,
coordinates, and the appendix sections (notes, references, bibliography, see also, external links), which are
lists of titles and links rather than prose. These choices follow OpenLLM-France's wikiplaintext, the
reference the extractor is measured against (``bench/wikipedia.py``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from lxml import etree

from overton.corpus.schema import dump_meta, make_id, parse_timestamp, text_sha256

LICENSE = "CC-BY-SA-4.0"
KIND = "article"
DEFAULT_LANG = "fr"

#: Elements whose text is one paragraph (lists and tables have their own layout).
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_PARAGRAPHS = frozenset({"p", "blockquote", "pre"})
_LISTS = frozenset({"ul", "ol", "dl"})
#: Elements walked into for the blocks they hold; any other element outside a block is not article text.
_CONTAINERS = frozenset({"div", "section", "body", "html", "main", "article", "center", "span"})
#: Never text: scripts and styles, media, and what Parsoid leaves for machines.
_DROPPED_TAGS = frozenset({"script", "style", "link", "meta", "img", "figure", "audio", "video", "noscript",
                           "annotation", "annotation-xml", "input", "button"})
#: Class names (or their prefixes) of the apparatus around the article's text.
_DROPPED_CLASS = re.compile(
    r"(?:^|\s)(?:bandeau-|infobox|navbox|metadata|homonymie|hatnote|ambox|noprint|mw-editsection|reference"
    r"|mw-references|mw-cite-backlink|need_ref_tag|thumb|gallery|mw-gallery|toc|mw-empty-elt|geo-|coordinates"
    r"|printfooter|catlinks|mwe-math-fallback|autres-projets|js-interprojets|mw-kartographer|sister-"
    r"|indicateur-langue)")
#: Appendix sections: from such a heading to the next heading of the same or a higher level, nothing is kept.
APPENDIX_SECTIONS = frozenset({
    "notes", "notes et références", "références", "notes et sources", "sources", "source", "références et notes",
    "voir aussi", "pour approfondir", "liens externes", "lien externe", "bibliographie", "annexes",
    "articles connexes", "article connexe",
})
#: Blocks inside a block (a list or a table in a cell, a paragraph in an item): their text is set apart by a space.
_BLOCKS_INSIDE = frozenset({"p", "div", "li", "dt", "dd", "ul", "ol", "dl", "table", "tr", "td", "th", "caption"})
_MATH_TOKENS = frozenset({"mi", "mn", "mo", "mtext", "ms"})
#: Links to edit the page or the data a table is drawn from ("[modifier]" in a caption), and what they leave.
_EDIT_LINK = re.compile(r"[?&]action=edit|[?&]veaction=edit|/Module:Donn|:EditPage/")
_EMPTY_BRACKETS = re.compile(r"\s*\[[\s\u200a]*\]")
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0\u202f]*[ \t\r\n\f\v][ \t\r\n\f\v\u00a0\u202f]*")
_BREAK = "\u2028"  # what <br> leaves in the text being gathered, until it is a line break or a space
_PARSER_CACHE = re.compile(r"Saved in parser cache with key (\w+?)wiki:pcache:idhash:(\d+)-\S*\s+and\s+timestamp"
                           r"\s+\d+\s+and\s+revision\s+id\s+(\d+)")
_CONFIG_NUMBER = re.compile(r'"wg(ArticleId|RevisionId)":(\d+)')
_CONFIG_LIST = re.compile(r'"wgCategories":(\[[^\]]*\])')
_CONFIG_TITLE = re.compile(r'"wgTitle":("(?:[^"\\]|\\.)*")')


@dataclass
class WikiArticle:
    title: str | None  # from the HTML where it has one (Parsoid <title>, mw:PageProp/displaytitle...), else None
    text: str  # clean text: paragraphs separated by a blank line, headings as their own paragraph
    pageid: int | None
    revid: int | None
    url: str | None
    categories: list[str] = field(default_factory=list)  # names without the "Catégorie:" prefix, where given
    modified: str | None = None  # ISO date of the revision where the HTML gives it (Parsoid dc:modified)
    lang: str | None = None  # the wiki's language (its URL, its parser cache key), else the content's lang attribute


def _tag(element: Any) -> str:
    """Lower-case local name; '' for comments and processing instructions."""
    tag = element.tag
    return tag.rpartition("}")[2].lower() if isinstance(tag, str) else ""


def _dropped(element: Any) -> bool:
    tag = _tag(element)
    if not tag or tag in _DROPPED_TAGS:
        return True
    classes = element.get("class")
    if classes and _DROPPED_CLASS.search(classes):
        return True
    # an edit link; a red link (an article not yet written) points to the editor too, but is text
    href = (element.get("href") or "") if tag == "a" else ""
    return bool(_EDIT_LINK.search(href)) and "redlink=1" not in href


def _inline(element: Any, parts: list[str]) -> None:
    """Append the text of ``element`` (not its tail) as read, leaving out the apparatus inside it."""
    if element.text:
        parts.append(element.text)
    for child in element:
        if not _dropped(child):
            if _tag(child) == "br":
                parts.append(_BREAK)
            elif _tag(child) == "math":
                parts.append(_math(child))
            elif _tag(child) in _BLOCKS_INSIDE:
                parts.append(" ")
                _inline(child, parts)
                parts.append(" ")
            else:
                _inline(child, parts)
        if child.tail:
            parts.append(child.tail)


def _math(element: Any) -> str:
    """A formula as the characters it shows, written on one line: tokens end to end (the whitespace between
    MathML elements is indentation, not space), a fraction as ``(a)/(b)``, a root as ``√(x)``, the limits under
    or over an operator after it (``lim h→0``); the TeX annotation is left out."""
    tag = _tag(element)
    if tag in _MATH_TOKENS:
        return "".join(element.itertext())
    if tag in ("annotation", "annotation-xml") or not tag:
        return ""
    parts = [_math(child) for child in element]
    if tag == "mfrac" and len(parts) == 2:
        return "/".join(part if len(part) == 1 or part.isalnum() else f"({part})" for part in parts)
    if tag in ("msqrt", "mroot"):
        return f"√({parts[0]})" if tag == "mroot" else f"√({''.join(parts)})"
    if tag in ("munder", "mover", "munderover"):
        return " ".join(part for part in parts if part) + " "
    if tag == "mspace":
        return " "
    return "".join(parts)


def _clean(text: str) -> str:
    """Runs of spaces and line breaks become one space; a no-break space alone stays (French typography puts one
    before ``:``), one next to an ordinary space (what a dropped marker leaves: "Getting", no-break space,
    "(en)", space, "qui") goes."""
    return _SPACES.sub(" ", text).strip()


def _text(element: Any) -> str:
    parts: list[str] = []
    _inline(element, parts)
    return _clean("".join(parts).replace(_BREAK, " "))


def _lines(element: Any) -> list[str]:
    """A paragraph's lines: ``<br>`` breaks a line (verse, addresses), other whitespace does not."""
    parts: list[str] = []
    _inline(element, parts)
    return [line for line in (_clean(piece) for piece in "".join(parts).split(_BREAK)) if line]


def _list_lines(element: Any, lines: list[str]) -> None:
    """One line per item, the item's own text first, then the items of the lists nested in it."""
    for item in element:
        if _tag(item) not in ("li", "dt", "dd") or _dropped(item):
            continue
        nested = [child for child in item if _tag(child) in _LISTS and not _dropped(child)]
        parts: list[str] = []
        if item.text:
            parts.append(item.text)
        for child in item:
            if child not in nested and not _dropped(child):
                _inline(child, parts)
            if child.tail:
                parts.append(child.tail)
        if text := _clean("".join(parts).replace(_BREAK, " ")):
            lines.append(text)
        for child in nested:
            _list_lines(child, lines)


def _table_lines(table: Any) -> list[str]:
    """The caption, then one line per row of this table (a table in a cell is part of the cell's text), its
    non-empty cells joined by `` | ``."""
    caption = table.find("caption")
    lines = [_EMPTY_BRACKETS.sub("", _text(caption))] if caption is not None else []
    for row in table.iter("tr"):
        if next(row.iterancestors("table")) is table:
            cells = [_text(cell) for cell in row if _tag(cell) in ("td", "th") and not _dropped(cell)]
            lines.append(" | ".join(cell for cell in cells if cell))
    return [line for line in lines if line]


class _Walk:
    """The article's blocks in document order, appendix sections skipped, and the headings of sections left
    with no text (a section that was a table, a gallery) left out."""

    def __init__(self, tables: bool):
        self.tables = tables
        self.blocks: list[str] = []
        self.levels: list[int] = []  # each block's heading level, 0 for text
        self.skip_level = 0  # inside an appendix section opened by a heading of this level (0: not)

    def walk(self, element: Any) -> None:
        for child in element:
            if _dropped(child):
                continue
            tag = _tag(child)
            if tag in _HEADINGS:
                self.heading(int(tag[1]), _text(child))
            elif self.skip_level:
                if tag in _CONTAINERS:
                    self.walk(child)
            elif tag in _PARAGRAPHS:
                self.add("\n".join(_lines(child)))
            elif tag in _LISTS:
                lines: list[str] = []
                _list_lines(child, lines)
                self.add("\n".join(lines))
            elif tag == "table":
                if self.tables and not (child.get("class") and "wikitable" not in child.get("class")):
                    self.add("\n".join(_table_lines(child)))
            elif tag in _CONTAINERS:
                self.walk(child)

    def heading(self, level: int, text: str) -> None:
        if self.skip_level and level > self.skip_level:
            return
        self.skip_level = 0
        self.close(level)
        if text.rstrip(" :\u00a0").casefold() in APPENDIX_SECTIONS:
            self.skip_level = level
        elif text:
            self.blocks.append(text)
            self.levels.append(level)

    def close(self, level: int) -> None:
        """Drop the trailing headings of sections that end here (level or deeper) without any text."""
        while self.levels and self.levels[-1] >= level:
            self.blocks.pop()
            self.levels.pop()

    def add(self, block: str) -> None:
        if block:
            self.blocks.append(block)
            self.levels.append(0)


def _content_root(root: Any) -> Any:
    """The element that holds the article: the first ``mw-parser-output`` (it is near the top in every flavour)."""
    for element in root.iter("div", "body", "main", "section"):
        if "mw-parser-output" in (element.get("class") or "").split():
            return element
    body = root.find("body")
    return body if body is not None else root


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _category(href: str) -> str:
    """``./Catégorie:Langue_à_ordre_libre#Esperanto`` -> ``Langue à ordre libre``."""
    name = unquote(href.partition("#")[0]).rpartition("/")[2]
    return name.partition(":")[2].replace("_", " ") if ":" in name else name.replace("_", " ")


def _plain(markup: str | None) -> str | None:
    """A title as text: Parsoid writes a display title's markup into ``<title>`` (``111<sup>e</sup> congrès``)."""
    if not markup or "<" not in markup:
        return markup or None
    return _text(_parse(f"<span>{markup}</span>").find("body/span")) or None


def _parse(html: str) -> Any:
    """The document's tree. Comments (what is needed of them is read from the text) and ids are not kept: a
    quarter faster (measured on the 33 real articles). One parser per call: an lxml parser is not to be shared
    between threads."""
    parser = etree.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, collect_ids=False)
    root = etree.fromstring(html.encode("utf-8"), parser) if html.strip() else None
    return root if root is not None else etree.Element("html")


def _metadata(root: Any, html: str) -> dict[str, Any]:
    """Page id, revision, title, URL, categories and date, from what each flavour of HTML carries."""
    meta: dict[str, Any] = {"categories": []}

    head = root.find("head")
    properties, links = {}, {}
    for element in head.iter("meta", "link") if head is not None else ():
        if element.tag == "meta" and element.get("property"):
            properties.setdefault(element.get("property"), element.get("content"))
        elif element.tag == "link" and element.get("rel"):
            links.setdefault(element.get("rel"), element.get("href"))
    if (pageid := properties.get("mw:pageId")) is not None:  # Parsoid
        meta["pageid"] = _int(pageid)
        about = root.get("about") or ""
        meta["revid"] = _int(about.rpartition("/revision/")[2]) if "/revision/" in about else None
        meta["title"] = _plain(head.findtext("title") or properties.get("mw:PageProp/displaytitle"))
        if url := links.get("dc:isVersionOf"):
            meta["url"] = f"https:{url}" if url.startswith("//") else url
        meta["modified"] = properties.get("dc:modified")
        meta["categories"] = [_category(link.get("href") or "") for link in root.iter("link")
                              if link.get("rel") == "mw:PageProp/Category"]
    elif numbers := dict(_CONFIG_NUMBER.findall(html)):  # a whole page, as a browser saves it
        meta["pageid"], meta["revid"] = _int(numbers.get("ArticleId")), _int(numbers.get("RevisionId"))
        if title := _CONFIG_TITLE.search(html):
            meta["title"] = json.loads(title[1])
        if categories := _CONFIG_LIST.search(html):
            meta["categories"] = [str(name) for name in json.loads(categories[1])]
        meta["url"] = links.get("canonical")
    elif cache := _PARSER_CACHE.search(html):  # action=parse output: the parser cache's own comment
        meta["wiki_lang"], meta["pageid"], meta["revid"] = cache[1], int(cache[2]), int(cache[3])
    return meta


def _wiki_lang(meta: dict[str, Any]) -> str | None:
    """The wiki's language (``fr`` of fr.wikipedia.org, of ``frwiki``): the page id is unique within it."""
    host = urlsplit(meta.get("url") or "").hostname or ""
    if host.endswith(".wikipedia.org"):
        return host.partition(".")[0]
    return meta.get("wiki_lang")


def extract(html: str, *, tables: bool = False) -> WikiArticle:
    """Either flavour: action=parse parser output (<div class="mw-parser-output">...) or Parsoid HTML."""
    root = _parse(html)
    content = _content_root(root)
    walk = _Walk(tables)
    walk.walk(content)
    walk.close(1)
    meta = _metadata(root, html)
    return WikiArticle(title=meta.get("title"), text="\n\n".join(walk.blocks), pageid=meta.get("pageid"),
                       revid=meta.get("revid"), url=meta.get("url"), categories=meta["categories"],
                       modified=meta.get("modified"), lang=_wiki_lang(meta) or content.get("lang") or root.get("lang"))


def attribution(url: str) -> str:
    """The attribution line CC BY-SA asks of whoever redistributes the text."""
    return f"Wikipédia, l'encyclopédie libre, {url}, CC BY-SA 4.0"


def article_document(article: WikiArticle, source: str, lang: str, fetched_at: datetime) -> dict[str, Any]:
    """The overton document of one article; raise ValueError when it has no page id (its id is made of it, so
    that an article crawled and the same article ingested from a file are one document)."""
    if article.pageid is None:
        raise ValueError("no page id in the HTML (Parsoid's mw:pageId, action=parse's parser cache comment or a "
                         "saved page's wgArticleId): a document's id is its page id")
    url = article.url or f"https://{lang}.wikipedia.org/?curid={article.pageid}"
    meta = {"pageid": article.pageid, "revid": article.revid, "categories": article.categories, "lang": lang,
            "attribution": attribution(url)}
    return {
        "id": make_id(source, f"{lang}:{article.pageid}"),
        "source": source,
        "url": url,
        "title": article.title,
        "text": article.text,
        "published_at": parse_timestamp(article.modified),
        "fetched_at": fetched_at,
        "speakers": None,
        "kind": KIND,
        "keywords": None,
        "thematics": None,
        "license": LICENSE,
        "redistributable": True,
        "content_sha256": text_sha256(article.text),
        "meta": dump_meta({k: v for k, v in meta.items() if v not in (None, [])}),
    }


def words(text: str) -> list[str]:
    """The word tokens the extraction is measured in: runs of letters and digits, casefolded, after NFKC
    (so the superscript ``ᵉ`` of ``XXᵉ`` and the ``e`` of ``XX<sup>e</sup>`` are one word)."""
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold())


def word_f1(text: str, reference: str) -> float:
    """Bag-of-words F1 of ``text`` against ``reference`` (each word counted as often as it occurs)."""
    found, expected = Counter(words(text)), Counter(words(reference))
    overlap = sum((found & expected).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(found.values()), overlap / sum(expected.values())
    return 2 * precision * recall / (precision + recall)
