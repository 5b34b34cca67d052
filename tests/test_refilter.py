"""``overton build --refilter``: new thresholds, same signals, a complete new version."""

from __future__ import annotations

import json
import random

import pytest

from overton.cli import main
from overton.corpus.dataset import Version, list_versions
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.demo import SAMPLE, sample_dir
from overton.pipelines.build import build
from overton.pipelines.refilter import refilter
from overton.spiders.ingest import ingest
from tests.conftest import french_text, write_jsonl


def _sample_workspace(workspace: Workspace) -> Version:
    for filename, source, profile, licence in SAMPLE:
        ingest(workspace, [sample_dir() / filename], source, default_license=licence, profile=profile)
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

    _set(workspace, "threshold = 0.8", "threshold = 0.85")  # candidates verified by their true Jaccard at 0.85
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


def test_refilter_replays_language_and_quality_and_redacts_what_it_lets_through(workspace: Workspace):
    rng = random.Random(3)
    answer = french_text(rng, 30) + " Écrivez-moi : jean.dupont@example.org."
    english = "The parliament will vote on the budget before the end of the year with the social partners."
    path = write_jsonl(workspace.root.parent / "web.jsonl", [
        {"id": "short", "text": answer}, {"id": "english", "text": english},
        {"id": "long", "text": french_text(rng, 80)}])
    ingest(workspace, [path], "web")
    first = build(workspace, jobs=1, progress=False).version
    assert _reasons(first) == {"web:short": "quality_min_words", "web:english": "not_french"}

    _set(workspace, "min_words = 50", "min_words = 20")
    _set(workspace, "\nmin_score = 0.5", "\nmin_score = 0.0")
    second = refilter(workspace, progress=False).version
    # the English text passes the language filter now, so the quality filter measures it for the first time
    [english_row] = [row for b in second.iter_batches("rejected") for row in b.to_pylist()]
    assert (english_row["id"], english_row["reject_reason"]) == ("web:english", "quality_min_words")
    assert json.loads(english_row["reject_detail"]) == {"threshold": 20, "value": 17}
    kept = {row["id"]: row for b in second.iter_batches("data") for row in b.to_pylist()}
    assert sorted(kept) == ["web:long", "web:short"]
    assert kept["web:short"]["text"].endswith("Écrivez-moi : <EMAIL>.")
    assert kept["web:short"]["pii_emails"] == 1 and kept["web:long"]["pii_emails"] == 0
    assert second.manifest["steps"]["pii"]["emails_redacted"] == 1

    _set(workspace, "\nwindows = 5", "\nwindows = 3")
    with pytest.raises(UserError, match=r"\(language\.windows\)"):
        refilter(workspace, progress=False)


def test_refilter_with_unchanged_settings_makes_no_version(workspace: Workspace, capsys):
    first = _sample_workspace(workspace)
    assert main(["build", "--refilter", "--quiet", "--workspace", str(workspace.root)]) == 0
    assert "nothing to refilter: the settings are those v0001 was decided with" in capsys.readouterr().out
    assert [p.name for p in (workspace.datasets / "overton").iterdir()] == [first.name]


def test_refusals_name_the_settings(workspace: Workspace, capsys):
    _sample_workspace(workspace)
    _set(workspace, "\nwindows = 5", "\nwindows = 3")
    _set(workspace, "[profiles.qa]\n# Questions and answers: the web rules, but a complete answer can be two "
                    "sentences.\npii = true", "[profiles.qa]\npii = false")
    assert main(["build", "--refilter", "--quiet", "--workspace", str(workspace.root)]) == 2
    err = capsys.readouterr().err
    assert "settings that change measured signals differ (language.windows, profiles.qa.pii)" in err


def test_documents_the_parent_kept_win_every_duplicate_tie(workspace: Workspace):
    """A looser threshold admits documents that duplicate kept ones: the kept ones stay, the others go.

    In a fresh build both would be new, and the smallest id (exact) or the earliest date (near) would win.
    """
    rng = random.Random(11)
    text = french_text(rng, 80)
    words = text.split()
    near = " ".join(words[:40] + ["désormais"] + words[40:])  # one word added: Jaccard of 5-grams about 0.9
    web = write_jsonl(workspace.root.parent / "web.jsonl", [{"id": "z", "text": text, "published_at": "2024-01-01"}])
    strict = write_jsonl(workspace.root.parent / "strict.jsonl", [
        {"id": "a-exact", "text": text, "published_at": "2020-01-01"},
        {"id": "a-near", "text": near, "published_at": "2020-01-01"},
        {"id": "a-other", "text": french_text(rng, 80)}])
    strict_profile = '\n[profiles.strict]\nbase = "web"\n[profiles.strict.quality]\nmin_words = 500\n'
    workspace.settings_path.write_text(workspace.settings_path.read_text() + strict_profile)
    ingest(workspace, [web], "web")
    ingest(workspace, [strict], "strict", profile="strict")
    first = build(workspace, jobs=1, progress=False).version
    assert _reasons(first) == {f"strict:{key}": "quality_min_words" for key in ("a-exact", "a-near", "a-other")}

    _set(workspace, "min_words = 500", "min_words = 20")
    second = refilter(workspace, progress=False).version
    reasons = {row["id"]: (row["reject_reason"], json.loads(row["reject_detail"])["duplicate_of"])
               for b in second.iter_batches("rejected") for row in b.to_pylist()}
    assert reasons == {"strict:a-exact": ("exact_duplicate", "web:z"), "strict:a-near": ("near_duplicate", "web:z")}
    kept = {row["id"] for b in second.iter_batches("data") for row in b.to_pylist()}
    assert kept == {"web:z", "strict:a-other"}


def test_a_damaged_version_is_not_refiltered(workspace: Workspace, capsys):
    first = _sample_workspace(workspace)
    _set(workspace, "threshold = 0.8", "threshold = 0.9")
    [entry] = first.files("data", "questions")
    path = first.file_path(entry)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["build", "--refilter", "--quiet", "--workspace", str(workspace.root)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: sha256 differs from manifest; the parent version is damaged" in err and err.count("\n") == 1
    assert list_versions(workspace.datasets / "overton") == ["v0001"]
