"""TEI XML: one document per file, its speaker turns kept as speakers and as transcript paragraphs.

A sitting report encoded in TEI (``<sp who=...><speaker>M. X</speaker><p>...</p></sp>``) becomes the text
a reader of the printed report sees: each turn opens with the speaker's name ("M. le président. La séance
est ouverte."), every block (``<p>``, ``<head>``, ``<stage>``, ...) is a paragraph, and the speakers (name,
and role where the TEI gives it) are kept as the document's ``speakers``. Title and date come from
``<teiHeader>``.

The file is read as a stream (each turn is freed once rendered) by a parser that never touches the
network, never loads an external DTD and never resolves an external entity, so a file cannot make the
importer read another file or call a server (XXE); internal entities are expanded within libxml2's
amplification limit, so a "billion laughs" file is refused, not expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from overton.corpus.schema import parse_timestamp

XMLSyntaxError = etree.XMLSyntaxError
ROOTS = frozenset({"TEI", "TEI.2"})  # P5 (namespaced or not) and P4
_TURNS = frozenset({"sp", "u"})  # a speech in a transcript; an utterance in a spoken-language corpus
_BLOCKS = frozenset({"p", "ab", "head", "stage", "l", "item", "seg"})
#: Not part of what was said: editorial notes, running heads, figure descriptions, the turn's own label.
_DROPPED = frozenset({"note", "fw", "figDesc", "speaker"})
#: Stage directions and what happened in the room, written in parentheses as the French reports print them.
_STAGE = frozenset({"stage", "incident", "kinesic", "vocal"})
#: In ``<choice>``, the corrected, regularised or expanded reading wins over ``sic``, ``orig``, ``abbr``.
_PREFERRED = frozenset({"corr", "reg", "expan"})
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
_MONTHS = {"janvier": 1, "février": 2, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7,
           "août": 8, "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11, "décembre": 12, "decembre": 12}
_FRENCH_DATE = re.compile(r"\b(\d{1,2})(?:er)?\s+(" + "|".join(_MONTHS) + r")\s+(\d{4})\b", re.IGNORECASE)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


class NotTei(ValueError):
    """The file is well-formed XML up to its root, and the root is not a TEI document."""


@dataclass
class TeiDocument:
    title: str | None = None
    published_at: date | datetime | None = None
    date_text: str | None = None  # the header's date when it could not be read as a day
    speakers: dict[str, str | None] = field(default_factory=dict)  # name -> role, in order of first turn
    paragraphs: list[str] = field(default_factory=list)


def _name(element: Any) -> str:
    """Local name of an element ({namespace}p -> p); '' for entities and other non-elements."""
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _events(path: Path, events: tuple[str, ...]) -> Any:
    return etree.iterparse(str(path), events=events, resolve_entities="internal", no_network=True,
                           load_dtd=False, remove_comments=True, remove_pis=True)


def root_name(path: Path) -> str | None:
    """The root element's local name, or None when the file is not readable as XML up to its root."""
    try:
        for _, element in _events(path, ("start",)):
            return _name(element)
    except XMLSyntaxError:
        return None
    return None


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _render(element: Any, parts: list[str], dropped: frozenset[str]) -> None:
    """Append the text of ``element`` (not its tail) as a reader sees it; children named in ``dropped`` are left out."""
    name = _name(element)
    if name == "lb":
        parts.append(" ")
        return
    if name == "choice":
        readings = [child for child in element if _name(child)]
        chosen = next((child for child in readings if _name(child) in _PREFERRED), readings[0] if readings else None)
        if chosen is not None:
            _render(chosen, parts, dropped)
        return
    inner = [element.text or ""]
    for child in element:
        if _name(child) and _name(child) not in dropped:
            _render(child, inner, dropped)
        inner.append(child.tail or "")
    if name not in _STAGE:
        parts.extend(inner)
    elif text := _collapse("".join(inner)):
        parts.append(f" {text if text.startswith('(') else f'({text})'} ")


def _text(element: Any, dropped: frozenset[str] = _DROPPED) -> str:
    parts: list[str] = []
    _render(element, parts, dropped)
    return _collapse("".join(parts))


def _paragraphs(turn: Any) -> list[str]:
    """A turn's paragraphs: each block is one, and so is text between blocks (an ``<u>`` without ``<seg>``)."""
    paragraphs: list[str] = []
    loose: list[str] = []

    def flush() -> None:
        if text := _collapse("".join(loose)):
            paragraphs.append(text)
        loose.clear()

    def walk(node: Any) -> None:
        loose.append(node.text or "")
        for child in node:
            name = _name(child)
            if name in _BLOCKS:
                flush()
                if text := _text(child):
                    paragraphs.append(text)
            elif any(_name(d) in _BLOCKS for d in child.iterdescendants()):
                walk(child)  # a wrapper of blocks: <lg>, <list>, or a project's own element around the <p>s
            elif name and name not in _DROPPED:
                _render(child, loose, _DROPPED)
            loose.append(child.tail or "")

    walk(turn)
    flush()
    return paragraphs


def _open_turn(label: str, text: str) -> str:
    """The speaker's name in front of the turn's first paragraph, as a printed report has it.

    Some encoders cut the label out of the sentence that held it and left its end in the text
    (". La séance est ouverte.", "et M. Y. Très bien !", "de la commission des lois. Je..."): such a
    text continues the name instead of getting a second full stop.
    """
    if text[0] in ",;:" or (text[0] == "." and not text.startswith("..")):
        return label + text
    if text[0].islower():
        return f"{label} {text}"
    return f"{label}. {text}"


def _speaker(element: Any) -> tuple[str, str | None] | None:
    """(name, role) from ``<speaker>``: its ``<roleName>`` if any, else "Name, role" split at the first comma."""
    roles = [_text(r) for r in element.iter() if _name(r) == "roleName"]
    if any(roles):
        names = [_text(p) for p in element.iter() if _name(p) == "persName"]
        name = names[0] if names else _text(element, _DROPPED | {"roleName"})
        name, role = name.strip(" .,:;"), ", ".join(r.strip(" .,:;") for r in roles if r)
    else:
        name, _, role = _text(element).partition(",")
        name, role = name.strip(" .:;"), role.strip(" .:;")
    return (name, role or None) if name else None


def _parse_date(text: str) -> date | None:
    """A day written in French ("mardi 29 janvier 2013", "1er février 2013") or as ISO 8601."""
    try:
        if match := _ISO_DATE.search(text):
            return date(int(match[1]), int(match[2]), int(match[3]))
        if match := _FRENCH_DATE.search(text):
            return date(int(match[3]), _MONTHS[match[2].lower()], int(match[1]))
    except ValueError:
        return None
    return None


class _Reader:
    """Reads one file: the header's facts, then each outermost turn or block of ``<body>`` as it ends."""

    def __init__(self) -> None:
        self.doc = TeiDocument()
        self.persons: dict[str, tuple[str | None, str | None]] = {}  # xml:id -> (persName, roleName)

    def read(self, path: Path) -> TeiDocument:
        in_body = depth = 0  # open <body> elements; open turns and blocks in them (only the outermost is rendered)
        root = True
        for event, element in _events(path, ("start", "end")):
            name = _name(element)
            if event == "start":
                if root and name not in ROOTS:
                    raise NotTei(f"root element is <{name}>, not <TEI>: pass a TEI file, or another --format")
                root = False
                in_body += name == "body"
                depth += bool(in_body) and (name in _TURNS or name in _BLOCKS)
                continue
            if name == "teiHeader":
                self._header(element)
            elif in_body and (name in _TURNS or name in _BLOCKS):
                depth -= 1
                if depth:
                    continue
                if name in _TURNS:
                    self._turn(element)
                else:
                    self._block(element)
            else:
                in_body -= name == "body"
                continue
            element.clear(keep_tail=True)  # the stream's memory: what was rendered is freed
            while element.getprevious() is not None:
                del element.getparent()[0]
        return self.doc

    def _block(self, element: Any) -> None:
        if text := _text(element):
            self.doc.paragraphs.append(text)

    def _turn(self, element: Any) -> None:
        label, speakers = self._speakers(element)
        for name, role in speakers:
            if self.doc.speakers.get(name) is None:
                self.doc.speakers[name] = role
        paragraphs = _paragraphs(element)
        if paragraphs and label:
            paragraphs[0] = _open_turn(label, paragraphs[0])
        self.doc.paragraphs.extend(paragraphs)

    def _speakers(self, turn: Any) -> tuple[str | None, list[tuple[str, str | None]]]:
        """The turn's label ("Name, role") and speakers, from ``<speaker>``, else from ``who`` (each id a
        ``<person>`` of the header, or the id itself: ``#Marc_Leroy`` is "Marc Leroy"; several joined by "et")."""
        ids = [token.lstrip("#") for token in (turn.get("who") or "").split()]
        speaker = next((child for child in turn if _name(child) == "speaker"), None)
        if speaker is not None and (found := _speaker(speaker)):
            name, role = found
            if role is None and ids and ids[0] in self.persons:
                role = self.persons[ids[0]][1]
            return (f"{name}, {role}" if role else name), [(name, role)]
        people = []
        for person_id in ids:
            name, role = self.persons.get(person_id, (None, None))
            people.append((name or person_id.replace("_", " ").strip(), role))
        people = [(name, role) for name, role in people if name]
        return " et ".join(f"{name}, {role}" if role else name for name, role in people) or None, people

    def _header(self, header: Any) -> None:
        titles = header.xpath("*[local-name()='fileDesc']/*[local-name()='titleStmt']/*[local-name()='title']")
        main = [t for t in titles if t.get("type") in (None, "main")] or titles
        if main:
            self.doc.title = _text(main[0]) or None
        dates = header.xpath(".//*[local-name()='profileDesc']/*[local-name()='creation']//*[local-name()='date']"
                             " | .//*[local-name()='sourceDesc']//*[local-name()='date']")
        dates.sort(key=lambda d: "sourceDesc" in {_name(a) for a in d.iterancestors()})  # the creation date first
        if dates:
            when, text = dates[0].get("when"), _text(dates[0])
            try:
                self.doc.published_at = parse_timestamp(when) if when else _parse_date(text)
            except (ValueError, OverflowError):  # a year or a month alone is a valid @when, but not a day
                self.doc.published_at = None
            if self.doc.published_at is None:
                self.doc.date_text = when or text or None
        for person in header.xpath(".//*[local-name()='person'][@xml:id]"):
            name = next((_text(p) for p in person.iter() if _name(p) == "persName"), None)
            role = next((_text(r) for r in person.iter() if _name(r) == "roleName"), None)
            self.persons[person.get(_XML_ID)] = (name or None, role or None)


def parse(path: Path) -> TeiDocument:
    """Read one TEI file; raises :class:`NotTei` or :class:`XMLSyntaxError` (with its line)."""
    return _Reader().read(path)
