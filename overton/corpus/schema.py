"""The one document schema shared by every source, declared once.

Collectors write it to ``raw/``, the build reads it and writes it (plus build columns) to dataset
versions, and the trainer reads it back. Ids are stable and namespaced: ``<source>:<key>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

SPEAKER_TYPE = pa.struct([("name", pa.string()), ("role", pa.string())])
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("title", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("published_at", TIMESTAMP_TYPE),
        pa.field("fetched_at", TIMESTAMP_TYPE),
        pa.field("speakers", pa.list_(SPEAKER_TYPE)),
        pa.field("kind", pa.string()),
        pa.field("keywords", pa.list_(pa.string())),
        pa.field("thematics", pa.list_(pa.string())),
        pa.field("license", pa.string()),
        pa.field("redistributable", pa.bool_()),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("meta", pa.string()),  # JSON object with source-specific extras
    ]
)

#: Columns the build adds to every document before its steps run: the profile whose rules judge it.
BUILD_FIELDS = [pa.field("profile", pa.string())]

#: Columns added to every rejected document: why, by which step, and the evidence (JSON).
#: The signal columns each build step adds are declared by the step (``overton.pipelines``).
REJECT_FIELDS = [
    pa.field("reject_reason", pa.string()),
    pa.field("reject_step", pa.string()),
    pa.field("reject_detail", pa.string()),
]

_SOURCE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def check_source_name(source: str) -> str:
    """Source names become folder names and id prefixes, so keep them to a safe alphabet."""
    if not _SOURCE_RE.match(source):
        raise ValueError(
            f"invalid source name {source!r}: use lower-case letters, digits, '.', '_' or '-'"
        )
    return source


def make_id(source: str, key: str) -> str:
    """The stable document id, e.g. ``vie-publique:243000039``."""
    return f"{source}:{key}"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_timestamp(value: Any) -> datetime | None:
    """Dates arrive as ISO strings, dates, datetimes or epoch seconds; store UTC microseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a date: {value!r}")


def dump_meta(meta: Mapping[str, Any] | None) -> str | None:
    """Meta is stored as canonical JSON so identical documents give identical bytes."""
    if not meta:
        return None
    return json.dumps(meta, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def load_meta(value: str | None) -> dict[str, Any]:
    return json.loads(value) if value else {}


def documents_to_batch(rows: Iterable[Mapping[str, Any]], schema: pa.Schema = DOCUMENT_SCHEMA) -> pa.RecordBatch:
    """Turn row dicts (already in schema form) into one record batch of ``schema``."""
    rows = list(rows)
    columns = {field.name: [row.get(field.name) for row in rows] for field in schema}
    return pa.RecordBatch.from_pydict(columns, schema=schema)
