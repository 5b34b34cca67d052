"""Human-readable summaries of versions and shards (``overton inspect``, ``overton build``, demo)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from overton.corpus.dataset import Version


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def counts_table(counts: dict[str, Any]) -> list[str]:
    width = max([len("source"), *(len(s) for s in counts["sources"])])
    lines = [f"  {'source':<{width}}  {'input':>8}  {'kept':>8}  {'rejected':>8}"]
    for source, entry in counts["sources"].items():
        lines.append(f"  {source:<{width}}  {entry['input']:>8}  {entry['kept']:>8}  {entry['rejected']:>8}")
    lines.append(f"  {'total':<{width}}  {counts['input']:>8}  {counts['kept']:>8}  {counts['rejected']:>8}")
    if counts["reasons"]:
        lines.append("  rejected by reason: " + ", ".join(f"{r} {n}" for r, n in counts["reasons"].items()))
    return lines


def _document_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        snippet = " ".join(row["text"].split())[:100]
        title = (row.get("title") or "")[:70]
        lines.append(f"  {row['id']}  [{len(row['text'])} chars]  {title}")
        lines.append(f"      {snippet}…")
    return lines


def describe_version(version: Version, documents: int = 3) -> list[str]:
    """Files, counts and the first documents. The caller has checked every file's size; a file read for its
    documents is hashed first (a flipped byte can read as another column or value, not as an error)."""
    manifest = version.manifest
    data, rejected = version.files("data"), version.files("rejected")
    lines = [
        f"{version.url}  ({manifest['name']} {manifest['version']}, parent: {manifest['parent'] or 'none'})",
        f"  files: {len(data)} data ({human_bytes(sum(f['bytes'] for f in data))}), "
        f"{len(rejected)} rejected ({human_bytes(sum(f['bytes'] for f in rejected))})",
        *counts_table(manifest["counts"]),
    ]
    rows: list[dict[str, Any]] = []
    hashed = 0
    for entry in data:
        if len(rows) >= documents:
            break
        version.ensure(entry)
        hashed += 1
        for batch in version.batches(entry, columns=["id", "title", "text"]):
            rows += batch.slice(0, documents - len(rows)).to_pylist()
            if len(rows) >= documents:
                break
    if rows:
        lines += ["  first documents:", *_document_lines(rows)]
    lines.append(f"  checked: the size of all {len(manifest['files'])} files, the sha256 of the {hashed} read "
                 "(`overton verify` hashes every file)")
    return lines


def describe_shard(path: Path, documents: int = 3, version: Version | None = None) -> list[str]:
    """Rows, columns, sources and the first documents of one Parquet file; ``version``: the dataset version whose
    manifest lists it, against which the caller has checked it."""
    parquet = pq.ParquetFile(path)
    metadata = parquet.metadata
    by_source: Counter[str] = Counter()
    if "source" in parquet.schema_arrow.names:
        for group in range(metadata.num_row_groups):
            by_source.update(parquet.read_row_group(group, columns=["source"]).column("source").to_pylist())
    lines = [
        f"{path}  ({metadata.num_rows} rows in {metadata.num_row_groups} row groups, "
        f"{human_bytes(path.stat().st_size)})",
        f"  sha256 matches {version.url}/manifest.json" if version else "  not a file of a dataset version: no "
        "checksum to compare",
        "  columns: " + ", ".join(parquet.schema_arrow.names),
        *(f"  {source}: {n}" for source, n in sorted(by_source.items())),
    ]
    if documents and metadata.num_row_groups and {"id", "text"} <= set(parquet.schema_arrow.names):
        columns = [c for c in ("id", "title", "text") if c in parquet.schema_arrow.names]
        rows = parquet.read_row_group(0, columns=columns).slice(0, documents).to_pylist()
        lines += ["  first documents:", *_document_lines(rows)]
    return lines
