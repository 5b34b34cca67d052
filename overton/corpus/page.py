"""The release page, ``index.html``: the data card rendered, the plots, sample documents and links to every shard.

One static file that reads the same from a folder (file://), a web server, a bucket or a Hub repository: inline
CSS, no script, nothing fetched from elsewhere, every link relative to the page. The template
(``page.html.j2`` in ``data_cards/templates``) escapes every value, because document text, titles and URLs are
untrusted; the card's Markdown is rendered with raw HTML off for the same reason, and a document's URL is a
link only when it is http(s).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markupsafe import Markup

from overton.corpus.atomic import write_bytes
from overton.corpus.templates import environment

PAGE = "index.html"
_FRONT_MATTER = re.compile(r"\A---\r?\n.*?\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def render_markdown(card_markdown: str) -> tuple[str, str | None]:
    """(the card's body as HTML, its first level-1 heading) with the YAML front matter left out."""
    markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = markdown.parse(_FRONT_MATTER.sub("", card_markdown, count=1))
    title = next((tokens[i + 1].content for i, token in enumerate(tokens)
                  if token.type == "heading_open" and token.tag == "h1"), None)
    return markdown.renderer.render(tokens, markdown.options, {}), title


def _web_link(url: str | None) -> str | None:
    return url if url and urlsplit(url).scheme in ("http", "https") else None


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    """A sample document as the template shows it: a safe link, the evidence as (key, text) pairs."""
    detail = doc.get("detail") or {}
    evidence = [(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
                for key, value in sorted(detail.items())]
    return {**doc, "link": _web_link(doc.get("url")), "evidence": evidence, "step": doc.get("step")}


def write_page(folder: Path, card_markdown: str, plots: Sequence[Any], samples: dict[str, Any],
               shards: Sequence[str]) -> Path:
    """Write ``folder/index.html`` atomically and return its path.

    ``plots``: items with ``file`` (relative path), ``title`` and ``alt``; those the card already shows are not
    repeated. ``samples``: :func:`overton.corpus.samples.collect_samples`'s dict. ``shards``: the data files'
    paths relative to ``folder``, listed grouped by their folder.
    """
    card, title = render_markdown(card_markdown)
    shown = set(re.findall(r'<img src="([^"]*)"', card))
    by_folder = groupby(sorted(shards), key=lambda path: str(PurePosixPath(path).parent))
    html = environment().get_template("page.html.j2").render(
        title=title or "Dataset release",
        card=Markup(card),
        plots=[plot for plot in plots if plot.file not in shown],
        samples={
            "excerpt_chars": samples["excerpt_chars"],
            "kept": {source: [_view(d) for d in docs] for source, docs in samples["kept"].items()},
            "rejected": {reason: [_view(d) for d in docs] for reason, docs in samples["rejected"].items()},
            "clusters": [{**c, "kept": _view(c["kept"]), "removed": [_view(d) for d in c["removed"]]}
                         for c in samples["clusters"]],
        },
        shards=[(parent, list(paths)) for parent, paths in by_folder],
    )
    path = folder / PAGE
    write_bytes(path, html.encode("utf-8"))
    return path

