"""The speech body of a vie-publique.fr page, as plain paragraphs, without fetching anything.

Why each part is here:

- **Two layouts.** Since the 2019 redesign (Drupal) the body is the ``field--name-field-texte-integral``
  field; pages of the older site keep it in a ``span.clearfix`` inside ``div.discour--desc``. Reading
  those elements, not the whole page, keeps the header, menus, "related speeches" teasers and footer out
  of the corpus.
- **``<br>`` texts.** Many bodies are one ``<p>`` cut by ``<br>`` (two for a new paragraph, one between
  an interviewer's name and the answer): every line break becomes a paragraph break.
- **Fallback.** A page whose structured body is missing or blank goes through trafilatura, so a layout
  change costs precision, not every speech; ``method`` records which path produced the text, so such
  pages can be counted and looked at.
- **« Source : ... ».** The trailing provenance line is not speech: it is split off into ``source_line``.
- **Bot challenge.** vie-publique.fr may answer with a JavaScript bot-mitigation page instead of the
  speech. It is recognised (``challenge=True``, no text) so the crawl can stop with a clear message; it is
  never worked around.

The HTML-to-text and "Source" rules are the build's own (``overton.corpus.text``), so a page
collected here and a speech ingested from a file are cut into paragraphs the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import lxml.html
import trafilatura

from overton.corpus.text import html_to_text, split_source_line

# Current layout first: an old-site span.clearfix only counts when the new field is absent.
_BODY_XPATHS = (
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' field--name-field-texte-integral ')]",
    "//div[contains(concat(' ', normalize-space(@class), ' '), ' discour--desc ')]"
    "//span[contains(concat(' ', normalize-space(@class), ' '), ' clearfix ')]",
)
# "bot_mitigation_cookie" names the challenge outright; the "JavaScript required" phrases only count on a
# page with almost no visible text, so a real page with a <noscript> banner does not stop a crawl.
_CHALLENGE_COOKIE = "bot_mitigation_cookie"
_JS_REQUIRED = re.compile(
    r"requires? (?:JS|JavaScript)|JavaScript (?:is )?required|enable JavaScript|activer (?:le )?JavaScript",
    re.IGNORECASE,
)
_CHALLENGE_MAX_VISIBLE_CHARS = 1000
_VISIBLE_TEXT = "//body//text()[not(ancestor::script or ancestor::style or ancestor::noscript)]"
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# A run of white space, or one white-space character that is not a no-break space French typography uses.
_SPACES = re.compile(r"\s{2,}|[^\S\u00a0\u202f]")


@dataclass(frozen=True)
class SpeechPage:
    text: str  # paragraphs separated by "\n\n"; "" when nothing was found
    source_line: str | None  # what followed « Source : », moved out of text
    method: str  # "structured", "trafilatura" or "none"
    title: str | None  # the page's first <h1>
    challenge: bool  # the page is a bot challenge, not a speech


def extract_speech(html: str, url: str | None = None) -> SpeechPage:
    """The speech on one page; ``url`` only helps trafilatura when the fallback runs."""
    root = _parse(html)
    if root is None:
        return SpeechPage("", None, "none", None, False)
    headings = root.xpath("//h1")
    title = (_paragraph(headings[0].text_content()) if headings else "") or None
    body = _structured_body(root)
    if body is None and _looks_like_challenge(root, html):
        return SpeechPage("", None, "none", title, True)
    method = "structured"
    if body is None:
        body, method = _trafilatura_body(html, url, title), "trafilatura"
    if not body:
        return SpeechPage("", None, "none", title, False)
    text, source_line = split_source_line(body)
    return SpeechPage(text, source_line, method, title, False)


def is_bot_challenge(html: str) -> bool:
    """Whether the page is a bot-mitigation challenge rather than a speech (or any content) page."""
    root = _parse(html)
    return root is not None and _structured_body(root) is None and _looks_like_challenge(root, html)


def _parse(html: str) -> lxml.html.HtmlElement | None:
    """The page's tree; None for an empty page. lxml refuses text that declares its own encoding."""
    html = _XML_DECLARATION.sub("", html, count=1)
    return lxml.html.document_fromstring(html) if html.strip() else None


def _structured_body(root: lxml.html.HtmlElement) -> str | None:
    """The text of the first layout's body element that holds any text; None when no layout matches."""
    for xpath in _BODY_XPATHS:
        for element in root.xpath(xpath):
            text = _paragraphs(html_to_text(lxml.html.tostring(element, encoding="unicode", with_tail=False)))
            if text:
                return text
    return None


def _looks_like_challenge(root: lxml.html.HtmlElement, html: str) -> bool:
    if _CHALLENGE_COOKIE in html:
        return True
    if not _JS_REQUIRED.search(html):
        return False
    visible = "".join(root.xpath(_VISIBLE_TEXT))
    return len(_paragraph(visible)) <= _CHALLENGE_MAX_VISIBLE_CHARS


def _trafilatura_body(html: str, url: str | None, title: str | None) -> str:
    # Precision over recall: a missed closing paragraph costs less than menu items, teasers or cookie
    # notices trained into the model. Speeches have no comment threads; their rare tables come out as
    # run-together cells; link targets and images are not speech.
    extracted = trafilatura.extract(
        html,
        url=url,
        favor_precision=True,
        include_comments=False,
        include_tables=False,
        include_images=False,
        include_links=False,
        include_formatting=False,
        with_metadata=False,
    )
    head, separator, rest = _paragraphs(extracted or "").partition("\n\n")
    return rest if head == title else head + separator + rest  # the title is a field, not speech


def _paragraphs(text: str) -> str:
    """One paragraph per non-blank line, white space collapsed, joined by blank lines."""
    return "\n\n".join(paragraph for line in text.split("\n") if (paragraph := _paragraph(line)))


def _paragraph(text: str) -> str:
    return _SPACES.sub(" ", text).strip()
