"""``overton card`` and ``overton publish``: a version's data card in place, or its release sent to a destination.

``card`` describes the version folder as it is (every text, the workspace's own copy). ``publish`` stages the
release the licence gate allows in ``state/publish/`` (deterministic, so a rerun stages the same bytes), then
hands it to :mod:`overton.corpus.destinations`, which sends only what the destination does not already hold.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from overton.corpus.card import Config, Publication
from overton.corpus.dataset import Version, version_name, version_number
from overton.corpus.destinations import HUB_PREFIX, TransferReport, hub_repo, hub_visibility, publish_folder
from overton.corpus.errors import UserError
from overton.corpus.release import Gate, Redact, card_of, stage
from overton.corpus.workspace import Workspace


@dataclass(frozen=True)
class Published:
    staging: Path
    manifest: dict
    transfer: TransferReport


def card_tokenizer(workspace: Workspace, settings) -> str | None:
    """The tokenizer token counts use: ``[card] tokenizer``, else ``[train] tokenizer`` when it is a local folder
    (a hub name would need the network, which a card must not). Relative paths are from the workspace."""
    if settings.card.tokenizer:
        path = workspace.root / settings.card.tokenizer
        if not (path / "tokenizer.json").is_file() and not (path.is_file() and path.suffix == ".json"):
            raise UserError(f"setting 'card.tokenizer': {path} holds no tokenizer.json")
        return str(path)
    if not settings.train.tokenizer:
        return None
    path = workspace.root / settings.train.tokenizer
    return str(path) if (path / "tokenizer.json").is_file() else None


def previous_version(workspace: Workspace, version: Version) -> Version | None:
    """The version this one was built on, when the workspace still has it."""
    parent = version.manifest.get("parent")
    if not parent or not version.local:
        return None
    folder = version.path.parent / parent
    return Version.open(folder) if folder.is_dir() else None


def _local_version(workspace: Workspace, target: str | Path) -> Version:
    version = Version.open(target)
    if not version.local:
        raise UserError(f"{version.url}: a card or a release is made from a version in this workspace, not a copy "
                        "elsewhere")
    problems = [f"{entry['path']}: {problem}" for entry in version.manifest["files"]
                if (problem := version.check(entry, checksum=False))]
    if problems:
        raise UserError(f"{version.url} is damaged ({problems[0]}); `overton verify {version.url}` lists every file")
    return version


def write_card(workspace: Workspace, target: str | Path, redact: Redact | None = None) -> list[Path]:
    """Write the card, plots and page of a version into its folder. The card names the folder relative to the
    current one when it is below it (as a reader in the workspace types it), else by its absolute path."""
    version = _local_version(workspace, target)
    relative = os.path.relpath(version.path)
    location = version.url if relative.startswith("..") else relative
    settings = workspace.config()
    shards = [entry["path"] for entry in version.files("data")]
    by_source: dict[str, int] = {}
    for entry in version.files("data"):
        by_source[entry["source"]] = by_source.get(entry["source"], 0) + entry["rows"]
    configs = [Config("all", "data/*/*.parquet", sum(by_source.values()), default=True),
               *(Config(source, f"data/{source}/*.parquet", rows) for source, rows in sorted(by_source.items()))]
    written = card_of(version, version.path, Publication(location, "version", private=True), configs, withheld={},
                      previous=previous_version(workspace, version), tokenizer=card_tokenizer(workspace, settings),
                      settings=settings, shards=shards, redact=redact)
    return [version.path / name for name in written]


def _staging(workspace: Workspace, version: Version, dest: str, gate: Gate) -> Path:
    """One staging folder per version, destination and gate, so a rerun finds (and rewrites) its own."""
    key = hashlib.sha256(repr((dest, gate.visibility, gate.reason)).encode()).hexdigest()[:12]
    return workspace.state / "publish" / f"{version.manifest['name']}-{version.name}-{key}"


def release_location(dest: str, version: Version) -> str:
    """How readers name the release in ``load_dataset``: the Hub repository, or the release's folder."""
    return hub_repo(dest) if dest.startswith(HUB_PREFIX) else f"{dest.rstrip('/')}/{version.name}"


def publish(workspace: Workspace, target: str | Path, dest: str, *, visibility: str | None, reason: str | None,
            redact: Redact | None = None, say: Callable[[str], None] = print, progress: bool = True) -> Published:
    version = _local_version(workspace, target)
    settings = workspace.config()
    if dest.startswith(HUB_PREFIX):
        hub_visibility(visibility)  # before any work: the publisher must say who may read the repository
    gate = Gate(visibility or "public", reason)
    staging = _staging(workspace, version, dest, gate)
    manifest = stage(version, staging, gate, location=release_location(dest, version),
                     previous=previous_version(workspace, version), tokenizer=card_tokenizer(workspace, settings),
                     settings=settings, redact=redact)
    withheld = manifest["release"]["withheld"]
    if withheld:
        say(f"licence gate: {sum(withheld.values()):,} documents published without their text (metadata_only): "
            + ", ".join(f"{source} {count:,}" for source, count in sorted(withheld.items())))
    transfer = publish_folder(staging, dest, visibility=visibility, say=say, progress=progress)
    return Published(staging, manifest, transfer)


def resolve_version(workspace: Workspace, path: str | None) -> str | Path:
    """A version argument: a path or URL as given, a version name (``v0002``) of the workspace's dataset, or
    the latest version when none is given."""
    dataset = workspace.dataset_dir(workspace.config().dataset.name)
    if not path:
        return dataset
    try:
        return dataset / version_name(version_number(path))
    except ValueError:
        return path if "://" in path else Path(path)
