"""The Jinja2 templates of the data card and the release page, kept in ``data_cards/templates``.

``overton/corpus/card_templates`` is a link to that folder, so a source checkout reads the files people edit and
an installed package carries copies of them (package data follows the link when the wheel is built).
HTML templates (``*.html.j2``) escape every value: document text is untrusted and a ``<script>`` in it must
show as text. Markdown templates do not: the card is text, and Markdown escaping is the template's own care.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import jinja2


def _integer(value) -> str:
    return "n/a" if value is None else f"{value:,}"


def _two_decimals(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _years(span) -> str:
    return "undated" if not span else (str(span[0]) if span[0] == span[1] else f"{span[0]}–{span[1]}")


@cache
def environment() -> jinja2.Environment:
    folder = resources.files("overton.corpus") / "card_templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(n=_integer, f2=_two_decimals, years=_years)
    return env
