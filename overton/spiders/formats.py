"""Readers for the files users bring: JSON Lines, JSON arrays, the GPTJ-Overton dump, CSV, Parquet, text.

Each reader yields :class:`Record` (a dict of fields and where it came from) or :class:`Refusal`
(what could not be read, where and why) and never stops at the first bad line. JSON inputs are
parsed as streams (ijson), so a 1 GB dump costs the memory of one record, not of the file.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("jsonl", "json", "gptj", "csv", "parquet", "text")
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet", ".txt": "text", ".md": "text",
}
_SNIFF = 8192


@dataclass
class Record:
    where: str  # "file:line" or "file#record"
    fields: dict[str, Any]


@dataclass
class Refusal:
    where: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.why}"


def detect_format(path: Path) -> str | None:
    """Format from the extension; a ``.json`` file holding an object is the GPTJ-Overton dump."""
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt == "json":
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF).lstrip(b"\xef\xbb\xbf \t\r\n")
        return "gptj" if head.startswith(b"{") else "json"
    return fmt


def _binary_refusal(path: Path) -> Refusal | None:
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF)
    if not head:
        return Refusal(str(path), "empty file, nothing to import")
    if b"\x00" in head:
        return Refusal(str(path), "binary file (contains NUL bytes), not text")
    return None


def _utf8_error(data: bytes) -> str | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    return None


def read_jsonl(path: Path) -> Iterator[Record | Refusal]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            if (error := _utf8_error(line)) is not None:
                yield Refusal(where, error)
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Refusal(where, f"malformed JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(value, dict):
                yield Refusal(where, f"expected a JSON object, got {type(value).__name__}")
                continue
            yield Record(where, value)


def _stream_json(path: Path, prefix: str, multiple: bool, expected: str) -> Iterator[Record | Refusal]:
    number = 0
    with open(path, "rb") as handle:
        try:
            for value in ijson.items(handle, prefix, use_float=True, multiple_values=multiple):
                number += 1
                where = f"{path}#{number}"
                if isinstance(value, dict):
                    yield Record(where, value)
                else:
                    yield Refusal(where, f"expected a JSON object, got {type(value).__name__}")
            if number == 0:
                yield Refusal(str(path), f"no records found: expected {expected}")
        except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            yield Refusal(f"{path}#{number + 1}", f"malformed JSON, rest of file not readable: {reason}")


def read_json(path: Path) -> Iterator[Record | Refusal]:
    """A JSON array of objects, or several arrays written one after another (Scrapy ``-o`` appends)."""
    return _stream_json(path, "item", multiple=True, expected="a JSON array of objects")


def read_gptj(path: Path) -> Iterator[Record | Refusal]:
    """The GPTJ-Overton dump: ``{"speechs": [{title, speakers, ..., text}, ...]}``."""
    return _stream_json(path, "speechs.item", multiple=False,
                        expected='{"speechs": [...]} (GPTJ-Overton dump); one object per line is --format jsonl')


def read_csv(path: Path) -> Iterator[Record | Refusal]:
    csv.field_size_limit(sys.maxsize)
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, dialect=dialect)
        try:
            header = next(reader)
        except StopIteration:
            return
        header[0] = header[0].lstrip("\ufeff")
        line = reader.line_num + 1
        try:
            for row in reader:
                where = f"{path}:{line}"
                line = reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue
                if row == header:
                    yield Refusal(where, "repeated header row")
                    continue
                if len(row) != len(header):
                    yield Refusal(where, f"expected {len(header)} columns, got {len(row)}")
                    continue
                if any(_has_surrogates(cell) for cell in row):
                    yield Refusal(where, "invalid UTF-8 in this row")
                    continue
                yield Record(where, dict(zip(header, row, strict=True)))
        except csv.Error as exc:
            yield Refusal(f"{path}:{line}", f"malformed CSV, rest of file not readable: {exc}")


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_parquet(path: Path) -> Iterator[Record | Refusal]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        yield Refusal(str(path), f"not a readable Parquet file: {exc}")
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            number += 1
            yield Record(f"{path}#{number}", row)


def read_text(path: Path, encoding: str = "utf-8") -> Iterator[Record | Refusal]:
    """One document per file; its key is the file name without extension."""
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        yield Refusal(str(path), f"invalid {encoding} at byte {exc.start} (pass --encoding if the file is not UTF-8)")
        return
    yield Record(str(path), {"id": path.stem, "text": text})


def read(path: Path, fmt: str, encoding: str = "utf-8") -> Iterator[Record | Refusal]:
    if fmt != "parquet" and (refusal := _binary_refusal(path)) is not None:
        yield refusal
        return
    if fmt == "text":
        yield from read_text(path, encoding)
        return
    reader = {"jsonl": read_jsonl, "json": read_json, "gptj": read_gptj, "csv": read_csv,
              "parquet": read_parquet}[fmt]
    yield from reader(path)

