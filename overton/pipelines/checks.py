"""Per-document admission checks: too large, damaged encoding, empty."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from overton.pipelines.step import Step


class TooLarge(Step):
    """Reject documents over ``max_bytes`` of UTF-8 before any costly step touches them."""

    name = "too_large"

    def __init__(self, max_bytes: int):
        super().__init__()
        self.max_bytes = max_bytes

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        sizes = pc.binary_length(batch.column("text")).to_pylist()
        return self.reject(
            batch,
            [("too_large", {"bytes": size, "max_bytes": self.max_bytes}) if size > self.max_bytes else None
             for size in sizes],
        )


class Admission(Step):
    """After normalisation: reject empty texts and texts damaged by a wrong decoding upstream.

    Text that was not valid UTF-8 when a collector decoded it carries U+FFFD replacement
    characters; more than ``max_replacement_chars`` of them rejects the document as ``invalid_utf8``.
    """

    name = "admission"

    def __init__(self, max_replacement_chars: int):
        super().__init__()
        self.max_replacement_chars = max_replacement_chars

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        rejections = []
        for text in batch.column("text").to_pylist():
            if not text:
                rejections.append(("empty", {}))
                continue
            damaged = text.count("\ufffd")
            if damaged > self.max_replacement_chars:
                rejections.append(
                    ("invalid_utf8", {"replacement_chars": damaged, "first_at": text.index("\ufffd")})
                )
            else:
                rejections.append(None)
        return self.reject(batch, rejections)
