"""``overton ingest``: the user's own files -> ``raw/<source>/<run-id>/`` in the corpus schema.

Ingested documents then flow through the same build as crawled ones. Every record is either
imported or refused with the file, line and reason; the rest of the file is still imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from overton.corpus.config import DEFAULT_PROFILE
from overton.corpus.errors import UserError
from overton.corpus.schema import check_source_name, dump_meta, make_id, parse_timestamp, text_sha256
from overton.corpus.workspace import Workspace
from overton.spiders.formats import FORMATS, PROFILES, SPLITS, Article, Empty, Refusal, detect_format, read
from overton.spiders.quora_html import Pseudonyms
from overton.spiders.raw import RawRunWriter
from overton.spiders.wikipedia_dump import Selection
from overton.spiders.wikipedia_html import DEFAULT_LANG, article_document

#: Where each schema field is looked for in an input record, first match wins (``--field`` overrides).
ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "title": ("title",),
    "url": ("url",),
    "text": ("text",),
    "published_at": ("published_at", "date", "datetime"),
    "speakers": ("speakers",),
    "kind": ("kind",),
    "keywords": ("keywords",),
    "thematics": ("thematics",),
    "license": ("license",),
    "redistributable": ("redistributable",),
    "meta": ("meta",),
}
_SPEAKER_NAME = ("name", "nom")
_SPEAKER_ROLE = ("role", "function", "qualite")
MAX_REPORTED = 1000
MAX_ID_CHARS = 512


@dataclass
class IngestReport:
    source: str
    profile: str
    run_id: str | None = None
    imported: int = 0
    files: int = 0
    refused: list[str] = field(default_factory=list)
    refused_count: int = 0
    duplicates: int = 0  # refused because an earlier record of this ingest had the same id
    empty: int = 0  # blank lines of --format lines: no document, not refused either

    def refuse(self, refusal: Refusal) -> None:
        self.refused_count += 1
        if len(self.refused) < MAX_REPORTED:
            self.refused.append(str(refusal))


def file_keys(paths: list[Path]) -> list[str]:
    """Each file's key in the ids of the formats that make one document per file or per line (text, tei,
    lines): its path relative to the deepest folder that holds every input, without its extension, with
    ``/`` separators. Files of one folder keep their bare names (``speech``); ``a/speech.txt`` and
    ``b/speech.txt`` become ``a/speech`` and ``b/speech`` instead of colliding."""
    absolute = [Path(os.path.abspath(path)) for path in paths]
    common = os.path.commonpath([path.parent for path in absolute])
    return [path.relative_to(common).with_suffix("").as_posix() for path in absolute]


class SeenIds:
    """The ids this ingest has imported and where each was first seen, to refuse a later record with one.

    Kept in a private temporary SQLite file, which SQLite unlinks as soon as it opens it (nothing is left
    behind, even by a killed run): memory stays flat however many documents, for 5 to 15 microseconds per id.
    """

    def __init__(self, files: list[str]):
        self._files = files
        self._db = sqlite3.connect("")
        self._db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY, file INTEGER, position TEXT) WITHOUT ROWID")

    def add(self, doc_id: str, file: int, where: str) -> str | None:
        """Remember ``doc_id``, seen at ``where`` in input ``file``; if it was seen before, return where."""
        digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=16).digest()
        position = where.removeprefix(self._files[file])  # ":12", "#3" or "": the file is named by its number
        if self._db.execute("INSERT INTO seen VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                            (digest, file, position)).rowcount:
            return None
        first_file, first_position = self._db.execute(
            "SELECT file, position FROM seen WHERE digest = ?", (digest,)).fetchone()
        return self._files[first_file] + first_position

    def close(self) -> None:
        self._db.close()


def parse_field_map(pairs: Iterable[str]) -> dict[str, str]:
    """``["keywords=topics", ...]`` -> ``{"keywords": "topics"}``, refusing unknown schema fields."""
    mapping = {}
    for pair in pairs:
        dest, sep, src = pair.partition("=")
        if not sep or not src or dest not in ALIASES:
            raise UserError(f"--field {pair!r}: expected FIELD=COLUMN with FIELD one of {', '.join(ALIASES)}")
        mapping[dest] = src
    return mapping


def _as_list(value: Any, what: str) -> list[Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list):
        return value
    raise ValueError(f"'{what}' must be a list or a comma-separated string")


def _first(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) not in (None, "")), None)


def _speakers(value: Any) -> list[dict[str, str | None]] | None:
    items = _as_list(value, "speakers")
    if items is None:
        return None
    speakers = []
    for item in items:
        if isinstance(item, str):
            speakers.append({"name": item, "role": None})
        elif isinstance(item, dict) and _first(item, _SPEAKER_NAME):
            role = _first(item, _SPEAKER_ROLE)
            speakers.append({"name": str(_first(item, _SPEAKER_NAME)), "role": str(role) if role else None})
        else:
            raise ValueError("each speaker must be a name or an object with a 'name'")
    return speakers


def _strings(value: Any, what: str) -> list[str] | None:
    items = _as_list(value, what)
    return None if items is None else [str(item) for item in items]


def to_document(fields: Mapping[str, Any], source: str, fetched_at: datetime,
                field_map: Mapping[str, str], default_license: str | None) -> dict[str, Any]:
    """Map one input record to a schema row; raise ValueError with the reason when it cannot be."""
    used: set[str] = set()

    def get(name: str) -> Any:
        keys = (field_map[name],) if name in field_map else ALIASES[name]
        for key in keys:
            if fields.get(key) not in (None, ""):
                used.add(key)
                return fields[key]
        used.update(k for k in keys if k in fields)
        return None

    column = field_map.get("text", "text")
    if column not in fields:
        raise ValueError(f"record has no '{column}' field")
    used.add(column)
    text = fields[column]
    if text is None:
        raise ValueError(f"'{column}' is null: a document needs its text")
    if not isinstance(text, str):
        raise ValueError(f"'text' must be a string, got {type(text).__name__}")
    raw_id = get("id")
    key = str(raw_id) if raw_id is not None else text_sha256(text)[:16]
    doc_id = key if key.startswith(f"{source}:") else make_id(source, key)
    if len(doc_id) > MAX_ID_CHARS:
        raise ValueError(f"id longer than {MAX_ID_CHARS} characters")
    try:
        published_at = parse_timestamp(get("published_at"))
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"bad published_at: {exc}") from None
    redistributable = get("redistributable")
    if redistributable is not None and not isinstance(redistributable, bool):
        raise ValueError("'redistributable' must be true or false")
    optional = {name: get(name) for name in ("url", "title", "kind", "license")}
    speakers = _speakers(get("speakers"))
    keywords = _strings(get("keywords"), "keywords")
    thematics = _strings(get("thematics"), "thematics")
    meta = get("meta")  # last: every field read above is in `used`, only the extras are left for meta
    meta = dict(meta) if isinstance(meta, dict) else ({"meta": meta} if meta is not None else {})
    meta.update({k: v for k, v in fields.items() if k not in used and v not in (None, "")})
    return {
        "id": doc_id,
        "source": source,
        "url": _opt_str(optional["url"]),
        "title": _opt_str(optional["title"]),
        "text": text,
        "published_at": published_at,
        "fetched_at": fetched_at,
        "speakers": speakers,
        "kind": _opt_str(optional["kind"]),
        "keywords": keywords,
        "thematics": thematics,
        "license": _opt_str(optional["license"]) or default_license,
        "redistributable": redistributable,
        "content_sha256": text_sha256(text),
        "meta": dump_meta(meta),
    }


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def ingest(
    workspace: Workspace,
    paths: list[Path],
    source: str,
    fmt: str | None = None,
    encoding: str = "utf-8",
    field_map: Mapping[str, str] | None = None,
    default_license: str | None = None,
    on_refusal: Callable[[Refusal], None] | None = None,
    profile: str | None = None,
    split: str = "line",
    titles: list[str] | None = None,
    categories: list[str] | None = None,
) -> IngestReport:
    """Import ``paths`` as one raw run of ``source``, to be judged by ``profile`` (None: the profile of their
    format when all have one that holds one kind of text, else the default); nothing is written if nothing is
    importable. ``titles`` and ``categories`` select the articles of a Wikipedia dump."""
    config = workspace.config()
    profiles = config.profiles
    if profile is None:
        formats = {fmt or detect_format(path) for path in paths if path.is_file()}
        profile = PROFILES.get(formats.pop(), DEFAULT_PROFILE) if len(formats) == 1 else DEFAULT_PROFILE
    if profile not in profiles:
        raise UserError(f"no profile named {profile!r} (profiles: {', '.join(sorted(profiles))}; define your own "
                        "in [profiles.NAME] of overton.toml)")
    try:
        check_source_name(source)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if encoding.lower().replace("-", "").replace("_", "") != "utf8" and fmt not in ("text", "lines"):
        raise UserError("--encoding applies to plain text files only: pass --format text or --format lines")
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if (titles is not None or categories is not None) and fmt != "wikipedia-dump":
        raise UserError("--titles and --categories apply to --format wikipedia-dump only")
    if split != "line" and fmt != "lines":
        raise UserError("--split applies to --format lines only")
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path}: no such file")
    field_map = dict(field_map or {})
    selection = Selection.of(titles, categories)
    pseudonyms = Pseudonyms(workspace.state)  # its secret is made when a Quora page first needs it
    report = IngestReport(source=source, profile=profile)
    fetched_at = datetime.now(UTC)
    writer = RawRunWriter(workspace, source, "ingest", profile)

    def refuse(refusal: Refusal) -> None:
        report.refuse(refusal)
        if on_refusal:
            on_refusal(refusal)

    try:
        with contextlib.closing(SeenIds([str(path) for path in paths])) as seen:
            for number, (path, key) in enumerate(zip(paths, file_keys(paths), strict=True)):
                report.files += 1
                file_format = fmt or detect_format(path)
                if file_format is None:
                    refuse(Refusal(str(path), "unknown file type: pass --format"))
                    continue
                for item in read(path, file_format, key, encoding, split, config.crawl.wikipedia.tables, selection,
                                 source, pseudonyms):
                    if isinstance(item, Empty):
                        report.empty += 1
                        continue
                    if isinstance(item, Refusal):
                        refuse(item)
                        continue
                    try:
                        if isinstance(item, Article):
                            lang = item.article.lang or DEFAULT_LANG
                            row = article_document(item.article, source, lang, fetched_at)
                        else:
                            row = to_document(item.fields, source, fetched_at, field_map, default_license)
                    except ValueError as exc:
                        refuse(Refusal(item.where, str(exc)))
                        continue
                    # An id made from the text is shared only by the same text: an exact duplicate, which the
                    # build keeps once and records in rejected/ with the copy it kept. Any other id is checked.
                    text_id = row["id"] == make_id(source, row["content_sha256"][:16])
                    if not text_id and (first := seen.add(row["id"], number, item.where)) is not None:
                        report.duplicates += 1
                        refuse(Refusal(item.where, f"duplicate id {row['id']}, first seen at {first}"))
                        continue
                    writer.add(row)
                    report.imported += 1
        if report.imported == 0:
            writer.abort()
            shutil.rmtree(writer.path)
            return report
        writer.commit({"job": "ingest", "files": [str(p) for p in paths], "refused": report.refused_count,
                       "duplicates": report.duplicates, "empty": report.empty, "fetched_at": fetched_at.isoformat()})
        report.run_id = writer.run_id
        return report
    except BaseException:
        writer.abort()
        raise

