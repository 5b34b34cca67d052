"""Text in its normal form: leftover HTML to paragraphs, Unicode NFC, clean white space, the "Source :" line.

Shared by the build's normalisation step and the collectors, so a speech fetched from a page and the
same speech ingested from a file are cut into paragraphs the same way and hash the same.
"""

from __future__ import annotations

import re
import unicodedata

import lxml.html
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# RE2 patterns (pyarrow.compute), applied to a whole batch at once.
_HTML_HINT = (
    r"(?i)</?(?:p|br|div|span|a|em|strong|b|i|u|ul|ol|li|h[1-6]|blockquote|table|tr|td|th|sup|sub|font)\b[^>]*>"
    r"|&(?:[a-zA-Z]{2,8}|#\d{2,6}|#x[0-9a-fA-F]{2,5});"
)
_HSPACE = r"\t\x{1680}\x{2000}-\x{200a}\x{205f}\x{3000}"  # horizontal spaces but " " and the no-break ones
_KEEP_SPACE = r" \x{a0}\x{202f}"  # spaces French typography relies on (no-break before ; : ! ?)
_WHITESPACE_RULES = (
    # every line break becomes "\n"
    (r"\r\n?|[\x0b\x0c\x{85}\x{2028}\x{2029}]", "\n"),
    # control characters (C0 and C1 but tab and newline), invisible format characters, soft hyphen
    (r"[\x00-\x08\x0e-\x1f\x7f-\x{9f}\x{ad}\x{200b}\x{2060}\x{feff}]", ""),
    # runs of horizontal space become one space (only runs that change are matched: much faster)
    (rf"[{_HSPACE}][ {_HSPACE}]*| [ {_HSPACE}]+", " "),
    # no space at either end of a line
    (rf"[{_KEEP_SPACE}]+\n[{_KEEP_SPACE}]*|\n[{_KEEP_SPACE}]+", "\n"),
    # at most one blank line between paragraphs
    (r"\n{3,}", "\n\n"),
)
#: Any of the rules' matches: a text with none is left as it is by all of them (most are, once ingested).
_WHITESPACE_ANY = "|".join(f"(?:{pattern})" for pattern, _ in _WHITESPACE_RULES)
_TRIM = " \n\u00a0\u202f"
_BLOCKS = ("p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr", "table",
           "section", "article", "header", "footer")
_DROP = ("script", "style", "noscript", "template")
# Runs of white space that collapsing changes: a lone " " is left alone, not replaced by itself (most runs are
# one space between two words, and a match costs more than the scan).
_SPACE_RUN = re.compile(r"[\t\r\n\f\v][ \t\r\n\f\v]*| [ \t\r\n\f\v]+")

# The trailing provenance line of vie-publique speeches: "Source : ...", "Source https://...".
_SOURCE_LINE = re.compile(r"^(?i:sources?)[ \u00a0\u202f]*(?::[ \u00a0\u202f]*|[ \u00a0](?=https?://|www\.))(\S.*)$")
_SOURCE_LINE_MAX = 400


def html_mask(texts: pa.Array) -> list[bool]:
    """Which texts hold leftover markup (tags such as ``<p>``/``<br>``, or entities)."""
    return pc.match_substring_regex(texts, _HTML_HINT).to_pylist()


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


def clean_whitespace(texts: list[str]) -> list[str]:
    """NFC, no control or invisible characters, single spaces, at most one blank line between paragraphs.

    NFC runs in Python (it has a fast path for text already in NFC), the rest as vectorised RE2
    over the whole list: several times faster than ``re`` per document. One scan finds the texts some rule
    changes, and only those go through the rules one by one.
    """
    array = pa.array([unicodedata.normalize("NFC", text) for text in texts], pa.string())
    dirty = np.flatnonzero(pc.match_substring_regex(array, _WHITESPACE_ANY).to_numpy(zero_copy_only=False))
    cleaned = pc.utf8_trim(array, characters=_TRIM).to_pylist()
    if len(dirty):
        rewritten = array.take(pa.array(dirty))
        for pattern, replacement in _WHITESPACE_RULES:
            rewritten = pc.replace_substring_regex(rewritten, pattern=pattern, replacement=replacement)
        for row, text in zip(dirty.tolist(), pc.utf8_trim(rewritten, characters=_TRIM).to_pylist(), strict=True):
            cleaned[row] = text
    return cleaned


def split_source_line(text: str) -> tuple[str, str | None]:
    """Split off a final "Source : ..." line; returns (text without it, the source or None)."""
    head, _, last = text.rpartition("\n")
    if len(last) > _SOURCE_LINE_MAX:
        return text, None
    match = _SOURCE_LINE.match(last)
    if not match:
        return text, None
    return head.rstrip("\n "), match.group(1).strip()
