"""``overton.toml``: every setting, its type and its default, validated on load.

The models below are the single source of truth; :data:`TEMPLATE` is the commented file that
``overton init`` writes and a test checks that it parses to exactly these defaults. Unknown keys and
ill-typed values are refused with one line naming the key and the expected type.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from overton.corpus.errors import UserError
from overton.corpus.shards import MB, ShardSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DatasetConfig(_Section):
    name: str = Field("overton", pattern=r"^[a-z0-9][a-z0-9._-]*$")


class ShardConfig(_Section):
    target_mb: int = Field(256, gt=0)
    row_group_mb: int = Field(32, gt=0)
    compression: str = Field("zstd", pattern=r"^(zstd|snappy|gzip|lz4|brotli|none)$")
    compression_level: int = 3

    def settings(self) -> ShardSettings:
        return ShardSettings(
            target_bytes=self.target_mb * MB,
            row_group_bytes=self.row_group_mb * MB,
            compression=self.compression,
            compression_level=self.compression_level,
        )


class NormalizeConfig(_Section):
    strip_html: bool = True
    source_line_to_meta: bool = True


class NearDedupConfig(_Section):
    enabled: bool = True
    bands: int = Field(14, gt=0)
    rows: int = Field(8, gt=0)
    ngram: int = Field(5, gt=0)
    threshold: float = Field(0.8, ge=0, le=1)
    seed: int = 1
    source_priority: list[str] = []


class BuildConfig(_Section):
    jobs: int = Field(0, ge=0)
    max_doc_bytes: int = Field(8_000_000, gt=0)
    max_replacement_chars: int = Field(0, ge=0)


class IngestConfig(_Section):
    part_mb: int = Field(128, gt=0)
    row_group_mb: int = Field(8, gt=0)


class Config(_Section):
    dataset: DatasetConfig = DatasetConfig()
    shards: ShardConfig = ShardConfig()
    normalize: NormalizeConfig = NormalizeConfig()
    build: BuildConfig = BuildConfig()
    near_dedup: NearDedupConfig = NearDedupConfig()
    ingest: IngestConfig = IngestConfig()


TEMPLATE = """\
# overton workspace settings. Every key is shown with its default; delete a line to keep the default.

[dataset]
# Name of the dataset this workspace builds: versions go to datasets/<name>/v0001, v0002, ...
name = "overton"

[shards]
# Target size of one Parquet file of a dataset version, in MB (compressed, on disk).
target_mb = 256
# Size of one row group before compression, in MB: the most a streaming reader holds in memory.
row_group_mb = 32
# Parquet compression codec (zstd, snappy, gzip, lz4, brotli, none) and its level.
compression = "zstd"
compression_level = 3

[normalize]
# Turn leftover HTML (<p>, <br>, entities) into plain text with paragraph breaks.
strip_html = true
# Move a trailing "Source : ..." line (vie-publique speeches) out of the text into meta.source_line.
source_line_to_meta = true

[build]
# Worker processes for `overton build` (0 = one per CPU core); `--jobs` overrides it.
jobs = 0
# Documents whose UTF-8 text is larger than this many bytes are rejected as too_large.
max_doc_bytes = 8000000
# Documents with more U+FFFD replacement characters (text that was not valid UTF-8 upstream)
# than this are rejected as invalid_utf8.
max_replacement_chars = 0

[near_dedup]
# MinHash LSH near-duplicate removal over the whole dataset, earlier versions included.
enabled = true
# bands x rows permutations; 14 x 8 finds about 92 % of pairs at Jaccard 0.8 in one try.
bands = 14
rows = 8
# Shingles are word n-grams of the text folded to lower case without diacritics and punctuation.
ngram = 5
# Candidate pairs are verified: estimated Jaccard at least this.
threshold = 0.8
seed = 1
# Which copy of a cluster is kept: earlier versions first, then sources in this order (unlisted
# sources after, alike), then the earliest published_at, then the smallest id.
source_priority = []

[ingest]
# Size of one raw Parquet file written by `overton ingest`, in MB.
part_mb = 128
# Row group size of raw files, in MB: one build task reads one row group.
row_group_mb = 8
"""


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown setting '{key}'"
    expected = {
        "int_type": "an integer",
        "string_type": "a string",
        "bool_type": "true or false",
        "float_type": "a number",
        "model_type": "a table",
        "dict_type": "a table",
    }.get(kind)
    got = error.get("input")
    if expected:
        return f"setting '{key}' must be {expected}, got {got!r}"
    return f"setting '{key}': {error['msg']} (got {got!r})"


def parse_config(text: str, origin: str = "overton.toml") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{origin}: {_describe(exc.errors()[0])}") from None


def load_config(path: Path) -> Config:
    if not path.is_file():
        raise UserError(f"{path}: no such settings file (create a workspace with `overton init DIR`)")
    return parse_config(path.read_text(encoding="utf-8"), origin=str(path))
