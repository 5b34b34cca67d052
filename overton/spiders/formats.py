"""Readers for the files users bring: JSON Lines, JSON, the GPTJ-Overton dump, CSV, Parquet, text, lines, TEI,
Wikipedia article HTML, Wikimedia Enterprise HTML dumps and saved Quora question pages.

Each reader yields :class:`Record` (a dict of fields and where it came from), :class:`Article` (a
Wikipedia article, made into its document by :func:`~overton.spiders.wikipedia_html.article_document`),
:class:`Refusal` (what could not be read, where and why) or :class:`Empty` (a line that holds no document)
and never stops at the first bad line. Inputs are read as streams (ijson, lxml's iterparse, line by line,
tarfile's streaming mode), so a 1 GB dump costs the memory of one record, not of the file.

Formats that make one document per file or per line (text, tei, lines) take the document's key from
the file's ``key``: its path relative to the common folder of the inputs, without extension.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import ijson
import pyarrow as pa
import pyarrow.parquet as pq

from overton.spiders import quora_html, tei
from overton.spiders.wikipedia_dump import EVERY_ARTICLE, Selection, is_archive, looks_like_dump, read_dump
from overton.spiders.wikipedia_html import WikiArticle, extract

FORMATS = ("jsonl", "json", "gptj", "csv", "parquet", "text", "lines", "tei", "wikipedia-html", "wikipedia-dump",
           "quora-html")
SPLITS = ("line", "block")
#: The profile of the formats that hold one kind of text, a source's own export: what an ingest of them is
#: judged by unless ``--profile`` says otherwise (every other format: the default profile).
PROFILES = {"gptj": "speech", "wikipedia-html": "encyclopedia", "wikipedia-dump": "encyclopedia", "quora-html": "qa"}
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet", ".txt": "text", ".md": "text", ".xml": "tei",
}
_SNIFF = 8192
#: What only MediaWiki writes near the top of an article's HTML: the parser output's class, Parsoid's page id
#: and a saved page's generator tag.
_MEDIAWIKI_MARKERS = re.compile(rb'mw-parser-output|property="mw:pageId"|content="MediaWiki ')
_HTML_SNIFF = 65536
_BOM = b"\xef\xbb\xbf"
_XML_POSITION = re.compile(r", line \d+, column (\d+)$")  # libxml2's own, the line is reported separately


@dataclass
class Record:
    where: str  # "file:line", "file#record" or "file"
    fields: dict[str, Any]


@dataclass
class Refusal:
    where: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


@dataclass
class Empty:
    """A line (``--split line``) with nothing on it: not a document, but counted."""

    where: str


@dataclass
class Article:
    """A Wikipedia article (``wikipedia-html``, ``wikipedia-dump``), whose document is made by
    :func:`~overton.spiders.wikipedia_html.article_document`: the same as the collector's for the same article."""

    where: str
    article: WikiArticle


def detect_format(path: Path) -> str | None:
    """Format from the extension, then from the content where one extension covers two formats.

    A ``.json`` file whose first object has a ``speechs`` key is the GPTJ-Overton dump (the key is
    looked for in the stream, never by loading the file); any other ``.json`` is ``json``. An ``.xml``
    file is TEI unless its root element is readable and is something else. An ``.html`` file is a Wikipedia
    article only when MediaWiki's own markers are near its top (any other page: pass ``--format``); a
    ``.tar.gz``, ``.ndjson`` or ``.jsonl`` whose first line is a Wikimedia Enterprise article is that dump.
    """
    if is_archive(path):
        return "wikipedia-dump" if looks_like_dump(path) else None
    if path.suffix.lower() in (".html", ".htm"):
        with open(path, "rb") as handle:
            return "wikipedia-html" if _MEDIAWIKI_MARKERS.search(handle.read(_HTML_SNIFF)) else None
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt == "jsonl" and looks_like_dump(path):
        return "wikipedia-dump"
    if fmt == "json" and _json_start(path) == b"{" and _is_gptj_dump(path):
        return "gptj"
    if fmt == "tei" and tei.root_name(path) not in (None, *tei.ROOTS):
        return None
    return fmt


def _open_json(path: Path) -> IO[bytes]:
    """The file, past a UTF-8 byte order mark (which the JSON parser refuses)."""
    handle = open(path, "rb")  # noqa: SIM115 - the caller closes it
    if handle.read(len(_BOM)) != _BOM:
        handle.seek(0)
    return handle


def _json_start(path: Path) -> bytes:
    with _open_json(path) as handle:
        return handle.read(_SNIFF).lstrip(b" \t\r\n")[:1]


def _is_gptj_dump(path: Path) -> bool:
    with _open_json(path) as handle:
        try:
            for prefix, event, value in ijson.parse(handle):
                if prefix == "" and event == "map_key" and value == "speechs":
                    return True
                if prefix == "" and event == "end_map":
                    return False
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError):
            return False  # the json reader says where the file breaks
    return False


def _binary_refusal(path: Path) -> Refusal | None:
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF)
    if not head:
        return Refusal(str(path), "empty file, nothing to import")
    if b"\x00" in head:
        return Refusal(str(path), "binary file (contains NUL bytes), not text")
    return None


def _utf8_error(data: bytes) -> str | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    return None


def read_jsonl(path: Path) -> Iterator[Record | Refusal]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            if (error := _utf8_error(line)) is not None:
                yield Refusal(where, error)
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Refusal(where, f"malformed JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(value, dict):
                yield Refusal(where, f"expected a JSON object, got {type(value).__name__}")
                continue
            yield Record(where, value)


def _stream_json(path: Path, prefix: str, multiple: bool, expected: str) -> Iterator[Record | Refusal]:
    number = 0
    with _open_json(path) as handle:
        try:
            for value in ijson.items(handle, prefix, use_float=True, multiple_values=multiple):
                number += 1
                where = f"{path}#{number}"
                if isinstance(value, dict):
                    yield Record(where, value)
                else:
                    yield Refusal(where, f"expected a JSON object, got {type(value).__name__}")
            if number == 0:
                yield Refusal(str(path), f"no records found: expected {expected}")
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            yield Refusal(f"{path}#{number + 1}", f"malformed JSON, rest of file not readable: {reason}")


def read_json(path: Path) -> Iterator[Record | Refusal]:
    """A JSON array of objects, or several arrays written one after another (Scrapy ``-o`` appends); or one
    object, the whole file being one document (several objects one after another are one document each)."""
    if _json_start(path) == b"{":
        return _stream_json(path, "", multiple=True, expected="a JSON object")
    return _stream_json(path, "item", multiple=True, expected="a JSON array of objects, or one JSON object")


def read_gptj(path: Path) -> Iterator[Record | Refusal]:
    """The GPTJ-Overton dump: ``{"speechs": [{title, speakers, ..., text}, ...]}``."""
    return _stream_json(path, "speechs.item", multiple=False,
                        expected='{"speechs": [...]} (GPTJ-Overton dump); one object per line is --format jsonl, '
                                 "one object per file --format json")


def read_csv(path: Path) -> Iterator[Record | Refusal]:
    csv.field_size_limit(sys.maxsize)
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, dialect=dialect)
        try:
            header = next(reader)
        except StopIteration:
            return
        header[0] = header[0].lstrip("\ufeff")
        line = reader.line_num + 1
        try:
            for row in reader:
                where = f"{path}:{line}"
                line = reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue
                if row == header:
                    yield Refusal(where, "repeated header row")
                    continue
                if len(row) != len(header):
                    yield Refusal(where, f"expected {len(header)} columns, got {len(row)}")
                    continue
                if any(_has_surrogates(cell) for cell in row):
                    yield Refusal(where, "invalid UTF-8 in this row")
                    continue
                yield Record(where, dict(zip(header, row, strict=True)))
        except csv.Error as exc:
            yield Refusal(f"{path}:{line}", f"malformed CSV, rest of file not readable: {exc}")


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_parquet(path: Path) -> Iterator[Record | Refusal]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        yield Refusal(str(path), f"not a readable Parquet file: {exc}")
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            number += 1
            yield Record(f"{path}#{number}", row)


def _decode(data: bytes, encoding: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, why) when ``data`` is not in ``encoding``."""
    try:
        return data.decode(encoding), None
    except UnicodeDecodeError as exc:
        return None, f"invalid {encoding} at byte {exc.start} (pass --encoding if the file is not UTF-8)"


def read_text(path: Path, key: str, encoding: str = "utf-8") -> Iterator[Record | Refusal]:
    """One document per file."""
    text, why = _decode(path.read_bytes(), encoding)
    yield Record(str(path), {"id": key, "text": text}) if why is None else Refusal(str(path), why)


def read_lines(path: Path, key: str, encoding: str = "utf-8", split: str = "line") -> Iterator[
        Record | Refusal | Empty]:
    """One document per line, or per block of lines between blank lines (``split="block"``); its key is
    ``key:N``, N the number of its first line, so aligned corpora (line N of one file translates line N
    of another) keep their alignment in the ids. A blank line is no document (counted, per line, as
    :class:`Empty`)."""
    with open(path, "rb") as handle:
        lines = ((number, *_decode(raw.rstrip(b"\r\n"), encoding)) for number, raw in enumerate(handle, 1))
        if split == "line":
            for number, text, why in lines:
                where = f"{path}:{number}"
                if text is None:
                    yield Refusal(where, str(why))
                elif not text.strip():
                    yield Empty(where)
                else:
                    yield Record(where, {"id": f"{key}:{number}", "text": text})
            return
        for blank, group in itertools.groupby(lines, key=lambda line: line[1] is not None and not line[1].strip()):
            if blank:
                continue
            block = list(group)
            first, last = block[0][0], block[-1][0]
            if bad := next(((number, why) for number, text, why in block if text is None), None):
                yield Refusal(f"{path}:{bad[0]}", f"{bad[1]}; the block of lines {first}-{last} is not imported")
            else:
                text = "\n".join(str(line) for _, line, _ in block)
                yield Record(f"{path}:{first}", {"id": f"{key}:{first}", "text": text})


def read_tei(path: Path, key: str) -> Iterator[Record | Refusal]:
    """One document per TEI file (see :mod:`overton.spiders.tei`)."""
    try:
        doc = tei.parse(path)
    except tei.NotTei as exc:
        yield Refusal(str(path), str(exc))
        return
    except tei.XMLSyntaxError as exc:
        why = exc.msg or "not well-formed"
        if position := _XML_POSITION.search(why):
            why = f"{why[:position.start()]} (column {position[1]})"
        if why.startswith("Entity '"):
            why += ": external DTDs and entities are never loaded"
        yield Refusal(f"{path}:{exc.lineno}", f"malformed XML: {why}")
        return
    fields: dict[str, Any] = {
        "id": key, "title": doc.title, "published_at": doc.published_at,
        "speakers": [{"name": name, "role": role} for name, role in doc.speakers.items()],
        "text": "\n\n".join(doc.paragraphs),
    }
    if doc.date_text:
        fields["tei_date"] = doc.date_text  # kept in meta: the header's date, when it names no single day
    yield Record(str(path), fields)


def read_wikipedia_html(path: Path, tables: bool) -> Iterator[Article | Refusal]:
    """One article per file: parser output, Parsoid HTML or a whole page saved from a browser."""
    data = path.read_bytes()
    if (error := _utf8_error(data)) is not None:
        yield Refusal(str(path), error)
        return
    article = extract(data.decode("utf-8"), tables=tables)
    if not article.text:
        yield Refusal(str(path), "no article text in this HTML (a redirect, an empty page, or not a MediaWiki page)")
    else:
        yield Article(str(path), article)


def read_wikipedia_dump(path: Path, tables: bool, selection: Selection) -> Iterator[Article | Refusal]:
    """A Wikimedia Enterprise HTML dump (see :mod:`overton.spiders.wikipedia_dump`)."""
    for where, found in read_dump(path, tables, selection):
        if isinstance(found, str):
            yield Refusal(where, found)
        elif not found.text:
            yield Refusal(where, f"no article text in the HTML of {found.title!r}")
        else:
            yield Article(where, found)


def read_quora_html(path: Path, source: str, pseudonyms: quora_html.Pseudonyms) -> Iterator[Record | Refusal]:
    """A Quora question page saved by the user: its question, then each answer (:mod:`overton.spiders.quora_html`)."""
    try:
        page = quora_html.parse(path.read_bytes())
    except quora_html.NotQuestionPage as exc:
        yield Refusal(str(path), str(exc))
        return
    if not quora_html.is_quora(page.url):
        yield Refusal(str(path), f"not a Quora page: its address is {page.url}")
        return
    question, answers = quora_html.documents(page, source, pseudonyms)
    yield Record(f"{path}#question", question)
    for position, why in page.skipped:
        yield Refusal(f"{path}#answer-{position}", why)
    for answer in answers:
        yield Record(f"{path}#answer-{answer['meta']['position']}", answer)


def read(path: Path, fmt: str, key: str, encoding: str = "utf-8", split: str = "line", tables: bool = False,
         selection: Selection = EVERY_ARTICLE, source: str = "", pseudonyms: quora_html.Pseudonyms | None = None,
         ) -> Iterator[Record | Article | Refusal | Empty]:
    """Read ``path`` as ``fmt``; ``key`` names the file in the ids of one-document-per-file or -line formats;
    ``tables`` and ``selection`` are what to keep of Wikipedia articles and which articles of a dump; ``source``
    and ``pseudonyms`` make the ids and author pseudonyms of Quora pages."""
    binary = fmt == "parquet" or (fmt == "wikipedia-dump" and is_archive(path))
    if not binary and (refusal := _binary_refusal(path)) is not None:
        yield refusal
        return
    if fmt == "wikipedia-html":
        yield from read_wikipedia_html(path, tables)
    elif fmt == "wikipedia-dump":
        yield from read_wikipedia_dump(path, tables, selection)
    elif fmt == "quora-html":
        if pseudonyms is None:
            raise ValueError("reading quora-html needs the workspace's pseudonyms")
        yield from read_quora_html(path, source, pseudonyms)
    elif fmt == "text":
        yield from read_text(path, key, encoding)
    elif fmt == "lines":
        yield from read_lines(path, key, encoding, split)
    elif fmt == "tei":
        yield from read_tei(path, key)
    else:
        yield from {"jsonl": read_jsonl, "json": read_json, "gptj": read_gptj, "csv": read_csv,
                    "parquet": read_parquet}[fmt](path)
