"""DILA's open-data catalogue of public speeches (``vp_discours.json``), read as a stream.

DILA publishes the metadata of every vie-publique.fr speech as one JSON array (about 230 MB, 153,000
records): id, title, page URL, date, speakers, kind, thematics, keywords... but not the text, which the
collector fetches from each record's page. This module turns records into document fields and tells
which records changed since the last run, without any network:

- ``iter_records`` parses the array item by item (ijson), so memory stays that of one record.
- ``record_hash`` is the change detector of incremental runs. ``mise_a_jour`` is not used: it is not a
  reliable change date, so the hash covers the fields the mapping reads instead.
- The metadata is Licence Ouverte 2.0, but DILA states that it does not manage the rights on the speech
  texts: every document is marked not redistributable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

import ijson

from overton.corpus.schema import dump_meta, make_id, parse_timestamp

SOURCE = "vie-publique"
LICENSE = "metadata: Licence Ouverte 2.0 (DILA); text: rights not managed by DILA"

#: Every field ``record_to_document_fields`` reads, and so every field the hash covers: a change to any of
#: them changes the document. A whitelist, so a field DILA adds some day does not make all 153,000 records
#: "changed" at once (and refetched); ``mise_a_jour`` is left out on purpose (see the module docstring).
HASHED_FIELDS = (
    "id", "titre", "url", "prononciation", "intervenants", "type_document", "domaine", "thematiques",
    "descripteurs", "circonstance", "type_emetteur", "auteur_moral", "type_media", "media", "resume",
    "mise_en_ligne",
)
#: Record fields carried as they are into ``meta``.
_META_FIELDS = ("circonstance", "domaine", "type_emetteur", "auteur_moral", "type_media", "media", "resume",
                "mise_en_ligne")
#: Query parameters that only say where a click came from: AT Internet (xtor, at_*), Google Analytics
#: (utm_*), Matomo (pk_*, mtm_*), ad click ids. They would make one page look like several.
_TRACKING_PARAMS = frozenset({"xtor", "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga"})
_TRACKING_PREFIXES = ("utm_", "at_", "pk_", "mtm_")


def iter_records(stream: BinaryIO) -> Iterator[dict[str, Any]]:
    """The catalogue's records one at a time, from a binary stream holding the JSON array.

    ``use_float`` makes ijson give ``int`` and ``float`` instead of ``Decimal``, which ``json.dumps``
    (hashing, ``meta``) could not serialise.
    """
    yield from ijson.items(stream, "item", use_float=True)


def record_key(record: Mapping[str, Any]) -> str:
    """The DILA id, as text (it is a JSON string in the catalogue, a number would do as well)."""
    key = record.get("id")
    if key is None or str(key).strip() == "":
        raise ValueError("catalogue record without an id")
    return str(key).strip()


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``HASHED_FIELDS`` (a missing field counts as null)."""
    fields = {name: record.get(name) for name in HASHED_FIELDS}
    canonical = json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def clean_url(url: str) -> str:
    """The URL without tracking parameters nor fragment; everything else kept byte for byte."""
    parts = urlsplit(url.strip())
    kept = [pair for pair in parts.query.split("&") if pair and not _is_tracking(pair.partition("=")[0])]
    return urlunsplit(parts._replace(query="&".join(kept), fragment=""))


def record_to_document_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The document columns a catalogue record fills; ``text``, ``content_sha256`` and ``fetched_at``
    come later, from the fetched page."""
    key = record_key(record)
    meta: dict[str, Any] = {"dila_id": key}
    meta.update((name, record[name]) for name in _META_FIELDS if record.get(name) not in (None, "", [], {}))
    try:
        published_at = parse_timestamp(_text(record.get("prononciation")))
    except ValueError:
        published_at = None
        meta["prononciation"] = record.get("prononciation")  # kept for a human to read
    url = _text(record.get("url"))
    return {
        "id": make_id(SOURCE, key),
        "source": SOURCE,
        "url": clean_url(url) if url else None,
        "title": _text(record.get("titre")),
        "published_at": published_at,
        "speakers": _speakers(record.get("intervenants")),
        "kind": _text(record.get("type_document")) or _text(record.get("domaine")),
        "keywords": _strings(record.get("descripteurs")),
        "thematics": _strings(record.get("thematiques")),
        "license": LICENSE,
        "redistributable": False,
        "meta": dump_meta(meta),
    }


def _is_tracking(name: str) -> bool:
    name = name.lower()
    return name in _TRACKING_PARAMS or name.startswith(_TRACKING_PREFIXES)


def _text(value: Any) -> str | None:
    """A stripped string, or None for null, blank or a non-scalar value."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _as_list(value: Any) -> list[Any]:
    """Lists may arrive as one bare item (a string, an object) or null."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _strings(value: Any) -> list[str]:
    """Distinct non-blank strings, in order."""
    return list(dict.fromkeys(text for item in _as_list(value) if (text := _text(item))))


def _speakers(value: Any) -> list[dict[str, str | None]]:
    """``intervenants`` as ``{"name", "role"}``: the short ``qualite``, else ``qualite_long``."""
    speakers = []
    for item in _as_list(value):
        if isinstance(item, Mapping):
            name, role = _text(item.get("nom")), _text(item.get("qualite")) or _text(item.get("qualite_long"))
        else:
            name, role = _text(item), None
        if name:
            speakers.append({"name": name, "role": role})
    return speakers
