"""Text normalisation: leftover HTML, Unicode NFC, control characters, whitespace, "Source :" line.

Exact deduplication hashes the normalised text, so two copies of a speech that differ only by
line endings, tabs, invisible characters or HTML markup count as one.
"""

from __future__ import annotations

import re
import unicodedata

import lxml.html
import pyarrow as pa

from overton.corpus.schema import dump_meta, load_meta, text_sha256
from overton.pipelines.step import Step, set_column

_HTML_HINT = re.compile(
    r"</?(?:p|br|div|span|a|em|strong|b|i|u|ul|ol|li|h[1-6]|blockquote|table|tr|td|th|sup|sub|font)\b[^>]*>"
    r"|&(?:[a-zA-Z]{2,8}|#\d{2,6}|#x[0-9a-fA-F]{2,5});",
    re.IGNORECASE,
)
_BLOCKS = ("p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr", "table",
           "section", "article", "header", "footer")
_DROP = ("script", "style", "noscript", "template")
_SPACE_RUN = re.compile(r"[ \t\r\n\f\v]+")

# Control characters (C0 and C1 but tab and newline), invisible format characters, soft hyphen.
_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u200b\u2060\ufeff]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# Horizontal white space other than the no-break spaces French typography relies on.
_HSPACE = re.compile(r"[ \t\u1680\u2000-\u200a\u205f\u3000]+")
_EDGE_SPACE = re.compile(r"[ \u00a0\u202f]*\n[ \u00a0\u202f]*")
_PARAGRAPH_GAP = re.compile(r"\n{3,}")

# The trailing provenance line of vie-publique speeches: "Source : ...", "Source https://...".
_SOURCE_LINE = re.compile(r"^Sources?[ \u00a0\u202f]*(?::[ \u00a0\u202f]*|[ \u00a0](?=https?://|www\.))(\S.*)$")
_SOURCE_LINE_MAX = 400


def looks_like_html(text: str) -> bool:
    return _HTML_HINT.search(text) is not None


def html_to_text(text: str) -> str:
    """Markup to text: ``<br>`` is a line break, block elements are paragraphs, entities decoded.

    Literal new lines inside the markup are plain white space, as a browser shows them.
    """
    root = lxml.html.fragment_fromstring(text, create_parent="div")
    for element in root.iter(*_DROP):
        element.drop_tree()
    for element in root.iter():
        if isinstance(element.tag, str) or element.tag is lxml.html.HtmlComment:
            if element.text:
                element.text = _SPACE_RUN.sub(" ", element.text)
            if element.tail:
                element.tail = _SPACE_RUN.sub(" ", element.tail)
    for element in root.iter("br"):
        element.tail = "\n" + (element.tail or "")
    for element in root.iter(*_BLOCKS):
        element.text = "\n\n" + (element.text or "")
        element.tail = "\n\n" + (element.tail or "")
    return root.text_content()


def clean_whitespace(text: str) -> str:
    """NFC, no control or invisible characters, single spaces, at most one blank line between paragraphs."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _INVISIBLE.sub("", text)
    text = _HSPACE.sub(" ", text)
    text = _EDGE_SPACE.sub("\n", text)
    text = _PARAGRAPH_GAP.sub("\n\n", text)
    return text.strip(" \n\u00a0\u202f")


def split_source_line(text: str) -> tuple[str, str | None]:
    """Split off a final "Source : ..." line; returns (text without it, the source or None)."""
    head, _, last = text.rpartition("\n")
    if len(last) > _SOURCE_LINE_MAX:
        return text, None
    match = _SOURCE_LINE.match(last)
    if not match:
        return text, None
    return head.rstrip("\n "), match.group(1).strip()


class Normalize(Step):
    """Rewrite ``text`` into its normal form and recompute ``content_sha256`` from it."""

    name = "normalize"

    def __init__(self, strip_html: bool = True, source_line_to_meta: bool = True):
        super().__init__()
        self.strip_html = strip_html
        self.source_line_to_meta = source_line_to_meta

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        texts, metas, hashes = [], [], []
        for text, meta in zip(batch.column("text").to_pylist(), batch.column("meta").to_pylist(), strict=True):
            before = len(text)
            if self.strip_html and looks_like_html(text):
                text = html_to_text(text)
                self.stats["html_stripped"] += 1
            text = clean_whitespace(text)
            if self.source_line_to_meta:
                text, source_line = split_source_line(text)
                if source_line is not None:
                    meta = dump_meta({**load_meta(meta), "source_line": source_line})
                    self.stats["source_lines_moved"] += 1
            self.stats["chars_removed"] += before - len(text)
            texts.append(text)
            metas.append(meta)
            hashes.append(text_sha256(text))
        batch = set_column(batch, "text", pa.array(texts, pa.string()))
        batch = set_column(batch, "meta", pa.array(metas, pa.string()))
        return set_column(batch, "content_sha256", pa.array(hashes, pa.string()))
