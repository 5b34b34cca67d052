"""Wikimedia Enterprise HTML dumps: one article per NDJSON line, in a ``.tar.gz`` of NDJSON files or not.

A dump of French Wikipedia is tens of gigabytes, so it is read as a stream: the archive with tarfile's
streaming mode (``r|gz``, never seeking, never unpacked to disk), each member line by line; memory holds one
article at a time, whatever the size of the dump. Each line is one article object (the Enterprise article
model: ``name``, ``identifier``, ``url``, ``date_modified``, ``version.identifier``, ``in_language``,
``categories``, ``article_body.html``); its facts come from those fields, its text from the Parsoid HTML
through :func:`overton.spiders.wikipedia_html.extract`.

A line that is not such an object is refused with its file and line, and the rest is read. An archive that
ends early (a download cut short) or is corrupt is refused at the point where it breaks; the articles before
that point are kept.
"""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overton.spiders.wikipedia_html import WikiArticle, extract

_ARCHIVES = (".tar.gz", ".tgz")
_CATEGORY_PREFIXES = ("catégorie:", "category:")
_SNIFF = 32 * 1024**2  # the first line is read up to here to tell a dump: one article's JSON, with margin


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVES)


def normalise_name(name: str) -> str:
    """A page or category name as MediaWiki compares them: underscores are spaces, the first letter is
    case-insensitive (``mairie_de_Paris`` is ``Mairie de Paris``); a category's namespace is dropped."""
    name = " ".join(name.replace("_", " ").split())
    if name.casefold().startswith(_CATEGORY_PREFIXES):
        name = name.partition(":")[2].strip()
    return name[:1].upper() + name[1:]


@dataclass(frozen=True)
class Selection:
    """Which articles of a dump to import: those whose title is listed, those in one of the categories,
    or (both None) all. A dump lists each article's own categories only, not the category tree, so an
    article of a subcategory is selected only if the subcategory is itself listed."""

    titles: frozenset[str] | None = None
    categories: frozenset[str] | None = None

    @classmethod
    def of(cls, titles: Iterable[str] | None = None, categories: Iterable[str] | None = None) -> Selection:
        def names(values: Iterable[str] | None) -> frozenset[str] | None:
            return None if values is None else frozenset(normalise_name(v) for v in values if v.strip())

        return cls(names(titles), names(categories))

    def wants(self, title: str, categories: list[str]) -> bool:
        if self.titles is not None and normalise_name(title) not in self.titles:
            return False
        return self.categories is None or any(normalise_name(c) in self.categories for c in categories)


EVERY_ARTICLE = Selection()


def _lines(path: Path) -> Iterator[tuple[str, bytes]]:
    """(where, line) of every line of the dump; raises what a broken archive raises, where it breaks."""
    if not is_archive(path):
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                yield f"{path}:{number}", line
        return
    with tarfile.open(path, mode="r|gz") as archive:
        for member in archive:
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            for number, line in enumerate(handle, 1):
                yield f"{path}:{member.name}:{number}", line


def looks_like_dump(path: Path) -> bool:
    """Whether the first line of the file (of the archive's first file) is an Enterprise article. An archive
    that cannot be read is taken for a dump: its reader then says where and why it breaks."""
    try:
        if not is_archive(path):
            with open(path, "rb") as handle:
                return b'"article_body"' in handle.readline(_SNIFF)
        with tarfile.open(path, mode="r|gz") as archive:
            for member in archive:
                if member.isfile() and (handle := archive.extractfile(member)) is not None:
                    return b'"article_body"' in handle.readline(_SNIFF)
    except (tarfile.TarError, EOFError, zlib.error, OSError):
        return True
    return False


def _get(record: dict[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _article(record: Any, tables: bool, selection: Selection) -> WikiArticle | str | None:
    """The article of one line, the reason it is refused, or None when the selection leaves it out."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    name, pageid, html = record.get("name"), record.get("identifier"), _get(record, "article_body", "html")
    if not isinstance(name, str) or not name:
        return "no 'name': not a Wikimedia Enterprise article"
    if not isinstance(pageid, int) or isinstance(pageid, bool):
        return "no integer 'identifier' (the page id): not a Wikimedia Enterprise article"
    if not isinstance(html, str):
        return "no 'article_body.html': an HTML dump is needed (the wikitext-only dumps have no HTML)"
    categories = [str(c["name"]) for c in record.get("categories") or [] if isinstance(c, dict) and c.get("name")]
    if not selection.wants(name, categories):
        return None
    article = extract(html, tables=tables)
    revid = _get(record, "version", "identifier")
    article.title = name
    article.pageid = pageid
    article.revid = revid if isinstance(revid, int) else article.revid
    article.url = record.get("url") or article.url
    article.modified = record.get("date_modified") or article.modified
    article.categories = [normalise_name(c) for c in categories] or article.categories
    article.lang = _get(record, "in_language", "identifier") or article.lang
    return article


def read_dump(path: Path, tables: bool = False, selection: Selection = EVERY_ARTICLE) -> Iterator[
        tuple[str, WikiArticle | str]]:
    """(where, article) for each selected article, (where, why) for each line or archive refused."""
    where = None
    lines = _lines(path)
    while True:
        try:
            where, line = next(lines)
        except StopIteration:
            return
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            after = f" after {where.removeprefix(f'{path}:')}" if where else ""
            yield str(path), f"archive ends early or is corrupt{after}, the rest is not readable: {exc}"
            return
        if not line.strip():
            continue
        try:
            record = json.loads(line.rstrip(b"\r\n"))  # a line cut short is "unterminated", not "control character"
        except UnicodeDecodeError as exc:
            yield where, f"invalid UTF-8 at byte {exc.start}"
            continue
        except json.JSONDecodeError as exc:
            yield where, f"malformed JSON: {exc.msg} (column {exc.colno})"
            continue
        found = _article(record, tables, selection)
        if found is not None:
            yield where, found

