"""``overton demo``: the bundled sample goes through ingest and build with known results."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from overton.corpus.dataset import Version
from overton.demo import sample_dir


def _speech_id(text: str) -> str:
    return "speeches:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One run of the installed console script, shared by the tests below."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    overton = Path(sys.executable).parent / "overton"
    done = subprocess.run([str(overton), "demo", "--workspace", str(root)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done, root


def test_demo_builds_the_sample_with_every_planted_case_found(demo):
    done, root = demo
    assert re.search(r"^\s+total\s+71\s+56\s+15$", done.stdout, re.MULTILINE)
    assert ("rejected by reason: empty 2, exact_duplicate 4, near_duplicate 3, not_french 5, quality_alpha_ratio 1"
            in done.stdout)
    assert "language: 5 documents not in French, 0 foreign paragraphs removed; quality: 1 documents" in done.stdout
    assert "personal data: 2 e-mail addresses and 2 phone numbers redacted in 2 documents" in done.stdout

    version = Version.open(root / "datasets" / "overton")
    assert version.verify() == []
    counts = version.manifest["counts"]["sources"]
    assert {s: (c["input"], c["kept"], c["rejected"]) for s, c in counts.items()} == {
        "encyclopedia": (18, 14, 4), "questions": (29, 24, 5), "speeches": (24, 18, 6)}
    assert version.manifest["steps"]["normalize"]["html_stripped"] == 5
    assert version.manifest["steps"]["normalize"]["source_lines_moved"] == 6

    speeches = json.loads((sample_dir() / "speeches.json").read_text(encoding="utf-8"))["speechs"]
    ids = [_speech_id(s["text"]) for s in speeches]

    def earlier(a: int, b: int) -> str:
        return ids[min((a, b), key=lambda i: (speeches[i]["datetime"], ids[i]))]

    def later(a: int, b: int) -> str:
        return ids[max((a, b), key=lambda i: (speeches[i]["datetime"], ids[i]))]
    rejected = {row["id"]: (row["reject_reason"], json.loads(row["reject_detail"]))
                for batch in version.iter_batches("rejected") for row in batch.to_pylist()}
    assert rejected == {
        # the smallest id wins, as strings: "2935610" < "301577"
        "encyclopedia:301577": ("exact_duplicate", {"duplicate_of": "encyclopedia:2935610"}),
        "questions:qa-1023": ("exact_duplicate", {"duplicate_of": "questions:qa-1003"}),
        max(ids[2], ids[18]): ("exact_duplicate", {"duplicate_of": min(ids[2], ids[18])}),
        max(ids[6], ids[21]): ("exact_duplicate", {"duplicate_of": min(ids[6], ids[21])}),
        # near duplicates (a few sentences changed): the earliest published copy is kept; jaccard is the true one
        "encyclopedia:48390": ("near_duplicate", {"duplicate_of": "encyclopedia:1873402", "jaccard": 0.8549}),
        later(5, 19): ("near_duplicate", {"duplicate_of": earlier(5, 19), "jaccard": 0.8397}),
        later(11, 22): ("near_duplicate", {"duplicate_of": earlier(11, 22), "jaccard": 0.8112}),
        ids[20]: ("empty", {}),
        ids[23]: ("empty", {}),
        # English articles and answer; junk without a language; junk repeating one line of few letters
        "encyclopedia:1100482": ("not_french", {"language": "en", "score": 0.0}),
        "encyclopedia:1100917": ("not_french", {"language": "en", "score": 0.0}),
        "questions:qa-1020": ("not_french", {"language": "en", "score": 0.0}),
        "questions:qa-1018": ("not_french", {"language": "und", "score": 0.0}),
        "questions:qa-1025": ("not_french", {"language": "und", "score": 0.0}),
        "questions:qa-1029": ("quality_alpha_ratio", {"threshold": 0.812, "value": 0.8}),
    }
    kept = {row["id"]: row for batch in version.iter_batches("data") for row in batch.to_pylist()}
    for position in (3, 9, 15):  # leftover HTML cleaned
        text = kept[ids[position]]["text"]
        assert "<" not in text and "&eacute;" not in text and "é" in text
    for position in (1, 4, 7, 10, 13, 16):  # the "Source :" line moved to meta
        row = kept[ids[position]]
        assert json.loads(row["meta"])["source_line"].startswith("https://")
        assert "Source :" not in row["text"]
    assert kept[ids[0]]["speakers"][0]["role"] and kept[ids[0]]["published_at"].year == 2015
    for answer, address in (("qa-1012", "sandrine.morel@example.fr"), ("qa-1026", "thomas.garnier@example.org")):
        row = kept[f"questions:{answer}"]
        assert address not in row["text"] and "<EMAIL>" in row["text"] and "<PHONE>" in row["text"]
        assert (row["pii_emails"], row["pii_phones"]) == (1, 1)
    assert all(row["language"] == "fr" for row in kept.values())


def test_demo_ends_with_a_tiny_training_run_and_a_generated_line(demo):
    done, root = demo
    losses = [float(x) for x in re.findall(r"^step \d+/60: loss ([\d.]+)", done.stdout, re.MULTILINE)]
    evals = [float(x) for x in re.findall(r"^step \d+: eval loss ([\d.]+)", done.stdout, re.MULTILINE)]
    assert len(losses) == 4 and len(evals) == 2  # steps 1, 20, 40, 60
    assert losses[-1] < losses[0] - 0.5 and evals[1] < evals[0]  # it learns, and generalises to held-out text
    assert "done: 60 steps; model exported to" in done.stdout
    [line] = re.findall(r"^generated: (.*)$", done.stdout, re.MULTILINE)
    assert line.startswith("Mesdames et Messieurs,") and len(line) > len("Mesdames et Messieurs,") + 20
    train = root / "train"
    assert (train / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (train / "checkpoints").iterdir()) == ["step-000030", "step-000060"]


def test_demo_ends_with_the_card_of_the_sample_and_where_its_page_is(demo):
    from huggingface_hub import DatasetCard

    done, root = demo
    version = root / "datasets" / "overton" / "v0001"
    lines = done.stdout.strip().splitlines()
    assert lines[-3] == (f"data card:          {version / 'README.md'} (7 files: the card, 4 plots, the page)")
    assert lines[-2] == f"release page:       {version / 'index.html'} (open it in a browser)"
    card = DatasetCard.load(version / "README.md")
    assert [c["config_name"] for c in card.data.to_dict()["configs"]] == ["all", "encyclopedia", "questions",
                                                                          "speeches"]
    assert "| **total** | **56** |" in card.text
    assert "torch.distributed is disabled" not in done.stderr  # a process alone saves alone without a warning


def test_the_card_in_data_cards_is_the_card_of_the_sample_as_built_now(demo):
    """data_cards/sample is the living example: `make sample-card` writes it the way this test does."""
    _, root = demo
    overton = Path(sys.executable).parent / "overton"
    subprocess.run([str(overton), "card"], cwd=root, check=True, capture_output=True, timeout=300)
    version, example = root / "datasets" / "overton" / "v0001", Path(__file__).parents[1] / "data_cards" / "sample"
    for name in ("README.md", "LICENSE.md", "index.html", "plots/documents_per_year.png",
                 "plots/document_length.png", "plots/top_speakers.png", "plots/rejects_by_reason.png"):
        assert (version / name).read_bytes() == (example / name).read_bytes(), f"{name}: run `make sample-card`"
