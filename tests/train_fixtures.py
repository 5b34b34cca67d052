"""What the training tests build for themselves: a dataset version of the bundled sample."""

from __future__ import annotations

from pathlib import Path

from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.demo import SAMPLE, sample_dir
from overton.pipelines.build import build
from overton.spiders.ingest import ingest


def sample_workspace(root: Path) -> Workspace:
    """A workspace with the sample corpus built into v0001 (56 documents)."""
    workspace = Workspace.init(root)
    for filename, source, profile, licence in SAMPLE:
        ingest(workspace, [sample_dir() / filename], source, default_license=licence, profile=profile)
    build(workspace, jobs=1, progress=False)
    return workspace


def documents(version: Version) -> list[dict]:
    return [row for batch in version.iter_batches("data", columns=["id", "source", "text", "published_at"])
            for row in batch.to_pylist()]
