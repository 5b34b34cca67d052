"""A release: a dataset version laid out for the people and tools that will read it, in a staging folder.

A version is what the build trusts (every document, every signal, rejects, a manifest); a release is what a
reader gets: the documents whose text may be published in ``data/<source>/``, the others as metadata only in
``metadata/<source>/`` (the licence gate), an ``attribution`` column, the data card (``README.md`` with the
YAML header the Hub reads), its plots, the release page (``index.html``) and ``manifest.json``, written last,
listing every file with its size and sha256. The same version with the same settings stages the same bytes,
so a release shares every unchanged shard with the previous one and a destination receives only what changed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from overton.corpus.atomic import commit, sha256_file, temporary_name, write_json
from overton.corpus.card import Config, Publication, render_card, write_card_files
from overton.corpus.dataset import MANIFEST, Version
from overton.corpus.errors import UserError
from overton.corpus.licences import attribution, licence, redistributable
from overton.corpus.page import write_page
from overton.corpus.plots import write_plots
from overton.corpus.samples import collect_samples
from overton.corpus.schema import load_meta
from overton.corpus.shards import row_group_rows
from overton.corpus.stats import changes, version_stats

VISIBILITIES = ("public", "private")
Redact = Callable[[str], str]


@dataclass(frozen=True)
class Gate:
    """Which texts go out. A private destination receives every text; a public one only those licensed for
    redistribution, unless the publisher overrides that with a ``reason`` the card then states."""

    visibility: str
    reason: str | None = None

    def __post_init__(self):
        if self.visibility not in VISIBILITIES:
            raise UserError(f"visibility {self.visibility!r}: say --public or --private")
        if self.reason is not None and not self.reason.strip():
            raise UserError("--include-restricted-text needs a reason, written into the data card")

    @property
    def all_text(self) -> bool:
        return self.visibility == "private" or self.reason is not None

    def text_mask(self, batch: pa.RecordBatch) -> pa.Array:
        if self.all_text:
            return pa.array([True] * batch.num_rows, pa.bool_())
        return redistributable(batch)

    def shows_text(self, row: dict[str, Any]) -> bool:
        flag = row["redistributable"]
        return self.all_text or (licence(row["license"]).open if flag is None else flag)


def _with_attribution(batch: pa.RecordBatch) -> pa.RecordBatch:
    rows = zip(*(batch.column(name).to_pylist() for name in ("title", "url", "license", "meta")), strict=True)
    credit = [attribution(title, url, licence, load_meta(meta).get("attribution"))
              for title, url, licence, meta in rows]
    return batch.append_column(pa.field("attribution", pa.string()), pa.array(credit, pa.string()))


class _LazyWriter:
    """One output Parquet file, opened at its first rows: a shard whose rows all go the other way leaves none."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = temporary_name(self.path)
            self._writer = pq.ParquetWriter(self._tmp, batch.schema, compression="zstd",
                                            compression_level=3, write_statistics=True, store_schema=True)
        self._writer.write_table(pa.Table.from_batches([batch]), row_group_size=batch.num_rows)
        self.rows += batch.num_rows

    def close(self) -> bool:
        if self._writer is None:
            return False
        self._writer.close()
        commit(self._tmp, self.path)
        return True


def _split_shard(version: Version, entry: dict[str, Any], gate: Gate, folder: Path,
                 withheld: dict[str, int]) -> list[tuple[str, int]]:
    """Write one version shard as its release shards: (path, rows) of each file written."""
    version.ensure(entry)  # the sha256: a flipped byte must not be published
    relative = Path(entry["path"]).relative_to("data")
    with_text = _LazyWriter(folder / "data" / relative)
    without = _LazyWriter(folder / "metadata" / relative)
    for batch in version.batches(entry):
        batch = _with_attribution(batch)
        mask = gate.text_mask(batch)
        with_text.write(batch.filter(mask))
        rest = batch.filter(pc.invert(mask))
        without.write(rest.drop_columns(["text"]))
        if rest.num_rows:
            source = entry.get("source") or relative.parts[0]
            withheld[source] = withheld.get(source, 0) + rest.num_rows
    written = []
    for writer, top in ((with_text, "data"), (without, "metadata")):
        if writer.close():
            written.append(((Path(top) / relative).as_posix(), writer.rows))
    return written


def configs_of(shards: list[tuple[str, int]]) -> list[Config]:
    """The Hub configs of a release's shards: ``all`` (the default) of every published text, one per source, and
    ``metadata_only`` for documents published without their text."""
    by_top: dict[str, dict[str, int]] = {}
    for path, rows in shards:
        top, source = Path(path).parts[:2]
        by_top.setdefault(top, {})
        by_top[top][source] = by_top[top].get(source, 0) + rows
    text, metadata = by_top.get("data", {}), by_top.get("metadata", {})
    configs = []
    if text:
        configs.append(Config("all", "data/*/*.parquet", sum(text.values()), default=True))
        configs += [Config(source, f"data/{source}/*.parquet", rows) for source, rows in sorted(text.items())]
    if metadata:
        configs.append(Config("metadata_only", "metadata/*/*.parquet", sum(metadata.values()), default=not text))
    return configs


def credit_lines(version: Version, limit: int = 10) -> dict[str, list[str]]:
    """Per source, the first ``limit`` attribution lines (for the card: the full list is a column)."""
    lines: dict[str, list[str]] = {}
    for entry in version.files("data"):
        source = entry.get("source") or Path(entry["path"]).parts[1]
        if len(lines.get(source, [])) >= limit:
            continue
        for batch in version.batches(entry, columns=["title", "url", "license", "meta"]):
            credited = [line for line in _with_attribution(batch).column("attribution").to_pylist() if line]
            lines.setdefault(source, []).extend(credited[: limit - len(lines.get(source, []))])
            if len(lines[source]) >= limit:
                break
    return lines


def restricted_counts(version: Version) -> dict[str, int]:
    """Per source, the documents whose text is not licensed for redistribution (their flag, else their licence)."""
    counts: dict[str, int] = {}
    for entry in version.files("data"):
        for batch in version.batches(entry, columns=["source", "license", "redistributable"]):
            closed = batch.filter(pc.invert(redistributable(batch))).column("source").to_pylist()
            for source in closed:
                counts[source] = counts.get(source, 0) + 1
    return counts


def card_of(version: Version, folder: Path, publication: Publication, configs: list[Config], *,
            withheld: dict[str, int], previous: Version | None, tokenizer: str | None, settings,
            shards: list[str], redact: Redact | None) -> list[str]:
    """Write the card, its plots and the page of ``version`` into ``folder``; the files written (relative).
    ``redact`` (text -> text) cleans the page's excerpts of rejected documents, which left the build before its
    personal-data step: the build's own redaction, passed in by the caller since corpus code imports no step."""
    stats = version_stats(version, tokenizer)
    plots = write_plots(stats, folder)
    card = render_card(stats, changes(version, previous), configs, plots, publication, withheld,
                       restricted_counts(version), credit_lines(version), version.manifest, settings)
    written = write_card_files(folder, card)
    shows_text = Gate("private" if publication.private else "public", publication.reason).shows_text
    page = write_page(folder, card.readme, plots, collect_samples(version, shows_text, redact=redact), shards)
    return [*written, *(plot.file for plot in plots), page.relative_to(folder).as_posix()]


def stage(version: Version, folder: Path, gate: Gate, *, location: str, previous: Version | None,
          tokenizer: str | None, settings, redact: Redact | None) -> dict[str, Any]:
    """Write the release of ``version`` into ``folder`` (emptied first), its manifest last; the manifest.

    The release is itself a dataset version: its ``manifest.json`` (the one format every overton reader
    checks) lists its Parquet files as ``data`` (published with text) and ``metadata`` (without), and the
    card, plots and page as ``card``, so ``overton verify``, ``overton inspect`` and ``overton train`` read a
    published release as they read a built version.
    """
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    withheld: dict[str, int] = {}
    shards: list[tuple[str, int]] = []
    for entry in version.files("data"):
        shards += _split_shard(version, entry, gate, folder, withheld)
    publication = Publication(location, "release", gate.visibility == "private", gate.reason)
    card_files = card_of(version, folder, publication, configs_of(shards), withheld=withheld, previous=previous,
                         tokenizer=tokenizer, settings=settings, shards=[path for path, _ in shards], redact=redact)
    files = []
    for path, rows in shards:
        top, source = Path(path).parts[:2]
        files.append({"path": path, "kind": top, "source": source, "rows": rows,
                      "row_groups": row_group_rows(folder / path)})
    files += [{"path": path, "kind": "card"} for path in sorted(card_files)]
    for entry in files:
        entry.update(bytes=(folder / entry["path"]).stat().st_size, sha256=sha256_file(folder / entry["path"]))
    manifest = {key: value for key, value in version.manifest.items() if key != "files"}
    manifest["files"] = files
    manifest["release"] = {"visibility": gate.visibility, "text_of_restricted_documents": "published" if gate.all_text
                           else "withheld", "reason": gate.reason, "withheld": withheld}
    write_json(folder / MANIFEST, manifest)
    return manifest


