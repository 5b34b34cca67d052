"""Raw output of every collector: ``raw/<source>/<run-id>/part-NNNNN.parquet`` plus ``run.json``.

Parts are written atomically as they fill; ``run.json`` is written last and is what makes the run
visible to ``overton build``. A run that dies before it leaves a folder no build reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from overton.corpus.atomic import write_json
from overton.corpus.schema import DOCUMENT_SCHEMA, documents_to_batch
from overton.corpus.shards import MB, ShardSettings, ShardWriter
from overton.corpus.workspace import RUN_MARKER, Workspace

_BATCH_ROWS = 512


class RawRunWriter:
    """Writes one raw run; ``profile`` (the source profile whose rules will judge its documents) goes into
    ``run.json`` with the rest of the record."""

    def __init__(self, workspace: Workspace, source: str, job: str, profile: str):
        config = workspace.config().ingest
        self.source = source
        self.profile = profile
        self.run_id, self.path = workspace.new_raw_run(source, job)
        self.rows = 0
        self._pending: list[Mapping[str, Any]] = []
        self._pending_bytes = 0
        self._batch_bytes = min(config.row_group_mb * MB, 4 * MB)
        self._writer = ShardWriter(
            self.path,
            DOCUMENT_SCHEMA,
            ShardSettings(target_bytes=config.part_mb * MB, row_group_bytes=config.row_group_mb * MB),
        )

    def add(self, row: Mapping[str, Any]) -> None:
        self._pending.append(row)
        self._pending_bytes += len(row["text"])
        if len(self._pending) >= _BATCH_ROWS or self._pending_bytes >= self._batch_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write(documents_to_batch(self._pending))
            self.rows += len(self._pending)
            self._pending, self._pending_bytes = [], 0

    def commit(self, record: dict[str, Any]) -> list[str]:
        """Close the last part and write run.json; returns the part file names."""
        self._flush()
        shards = self._writer.close()
        parts = [{"path": s.path.name, "rows": s.rows} for s in shards]
        write_json(self.path / RUN_MARKER, {"source": self.source, "run_id": self.run_id, "rows": self.rows,
                                            "profile": self.profile, "parts": parts, **record})
        return [s.path.name for s in shards]

    def abort(self) -> None:
        self._writer.abort()
