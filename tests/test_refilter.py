"""``overton build --refilter``: new thresholds, same signals, a complete new version."""

from __future__ import annotations

import json

from overton.cli import main
from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.demo import SAMPLE, sample_dir
from overton.pipelines.build import build
from overton.pipelines.refilter import refilter
from overton.spiders.ingest import ingest


def _sample_workspace(workspace: Workspace) -> Version:
    for filename, source, licence in SAMPLE:
        ingest(workspace, [sample_dir() / filename], source, default_license=licence)
    return build(workspace, jobs=1, progress=False).version


def _set(workspace: Workspace, old: str, new: str) -> None:
    text = workspace.settings_path.read_text()
    assert old in text
    workspace.settings_path.write_text(text.replace(old, new))


def _reasons(version: Version) -> dict[str, str]:
    return {row["id"]: row["reject_reason"] for b in version.iter_batches("rejected") for row in b.to_pylist()}


def test_refilter_replays_decisions_with_new_thresholds(workspace: Workspace, capsys):
    first = _sample_workspace(workspace)
    near = {k for k, v in _reasons(first).items() if v == "near_duplicate"}
    assert len(near) == 3
    details = {row["id"]: json.loads(row["reject_detail"]) for b in first.iter_batches("rejected")
               for row in b.to_pylist() if row["id"] in near}

    _set(workspace, "threshold = 0.8", "threshold = 0.85")
    assert main(["build", "--refilter", "--quiet", "--workspace", str(workspace.root)]) == 0
    assert "refiltered v0001 into overton v0002" in capsys.readouterr().out
    second = Version.open(workspace.datasets / "overton")
    assert second.name == "v0002" and second.manifest["refilter_of"] == "v0001"
    assert second.manifest["inputs"] == []
    still = {k for k, v in _reasons(second).items() if v == "near_duplicate"}
    assert still == {k for k in near if details[k]["jaccard"] >= 0.85} and len(still) == 1
    kept = {row["id"] for b in second.iter_batches("data") for row in b.to_pylist()}
    assert near - still <= kept
    # everything else is decided as before, and the counts still add up
    assert {k: v for k, v in _reasons(second).items() if v != "near_duplicate"} == {
        k: v for k, v in _reasons(first).items() if v != "near_duplicate"}
    counts = second.manifest["counts"]
    assert counts["input"] == first.manifest["counts"]["input"] == counts["kept"] + counts["rejected"]
    assert second.verify() == []

    # back to the first thresholds: the first decisions again
    _set(workspace, "threshold = 0.85", "threshold = 0.8")
    third = refilter(workspace, progress=False).version
    assert _reasons(third) == _reasons(first)
    assert third.manifest["counts"] == first.manifest["counts"]


def test_refilter_refuses_when_measured_signals_would_change(workspace: Workspace, capsys):
    _sample_workspace(workspace)
    _set(workspace, "strip_html = true", "strip_html = false")
    assert main(["build", "--refilter", "--quiet", "--workspace", str(workspace.root)]) == 2
    err = capsys.readouterr().err
    assert "cannot refilter v0001" in err and "normalize" in err and "rebuild from raw" in err


def test_refilter_needs_a_version(workspace: Workspace, capsys):
    assert main(["build", "--refilter", "--quiet", "--workspace", str(workspace.root)]) == 2
    assert "nothing to refilter" in capsys.readouterr().err
