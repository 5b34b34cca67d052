"""Text normalisation: leftover HTML, Unicode NFC, control characters, whitespace, "Source :" line.

Exact deduplication hashes the normalised text, so two copies of a speech that differ only by
line endings, tabs, invisible characters or HTML markup count as one. The rules themselves are in
:mod:`overton.corpus.text`, which the collectors share.
"""

from __future__ import annotations

import pyarrow as pa

from overton.corpus.schema import dump_meta, load_meta, text_sha256
from overton.corpus.text import clean_whitespace, html_mask, html_to_text, split_source_line
from overton.pipelines.step import Step, set_column


class Normalize(Step):
    """Rewrite ``text`` into its normal form and recompute ``content_sha256`` from it."""

    name = "normalize"

    def __init__(self, strip_html: bool = True, source_line_to_meta: bool = True):
        super().__init__()
        self.strip_html = strip_html
        self.source_line_to_meta = source_line_to_meta

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        column = batch.column("text")
        texts = column.to_pylist()
        chars_before = sum(map(len, texts))
        if self.strip_html:
            for i, is_html in enumerate(html_mask(column)):
                if is_html:
                    texts[i] = html_to_text(texts[i])
                    self.stats["html_stripped"] += 1
        texts = clean_whitespace(texts)
        metas = batch.column("meta").to_pylist()
        if self.source_line_to_meta:
            for i, text in enumerate(texts):
                texts[i], source_line = split_source_line(text)
                if source_line is not None:
                    metas[i] = dump_meta({**load_meta(metas[i]), "source_line": source_line})
                    self.stats["source_lines_moved"] += 1
        self.stats["chars_removed"] += chars_before - sum(map(len, texts))
        batch = set_column(batch, "text", pa.array(texts, pa.string()))
        batch = set_column(batch, "meta", pa.array(metas, pa.string()))
        return set_column(batch, "content_sha256", pa.array(map(text_sha256, texts), pa.string()))
