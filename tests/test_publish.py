"""``overton card`` and ``overton publish``: a card the Hub's tools read, a licence gate, releases that
``datasets`` and ``pyarrow`` load as they are, and a release that is itself a dataset version."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from overton.cli import main
from overton.corpus.dataset import Version
from overton.corpus.licences import DILA_TEXTS
from overton.corpus.workspace import Workspace
from overton.pipelines.build import build
from overton.spiders.ingest import ingest
from tests.conftest import french_text, write_jsonl

REASON = "autorisation écrite de l'éditeur du 3 mars 2026"
SPEAKERS = ["Jeanne Morel", "Paul Lefort", "Jeanne Morel", "Anne Vidal", "Jeanne Morel", "Paul Lefort"]


def _ingest(workspace: Workspace, source: str, records: list[dict], name: str = "in.jsonl", **options) -> None:
    path = write_jsonl(workspace.root.parent / f"{source}-{name}", records)
    assert ingest(workspace, [path], source, **options).refused_count == 0


def _articles(rng, first: int, count: int) -> list[dict]:
    return [{"id": f"fr:{n}", "title": f"Article {n}", "url": f"https://fr.wikipedia.org/wiki/Article_{n}",
             "text": french_text(rng, 120), "license": "CC-BY-SA-4.0", "redistributable": True,
             "date": f"{2010 + n % 5}-01-15",
             "meta": {"attribution": f"Wikipédia, l'encyclopédie libre, https://fr.wikipedia.org/wiki/Article_{n}, "
                                     "CC BY-SA 4.0"}}
            for n in range(first, first + count)]


@pytest.fixture
def mixed(workspace: Workspace) -> Workspace:
    """A version of 8 articles under CC BY-SA (redistributable) and 6 speeches whose text is not licensed."""
    rng = random.Random(7)
    _ingest(workspace, "wiki", _articles(rng, 0, 8), profile="encyclopedia")
    speeches = [{"id": f"s{n}", "title": f"Discours {n}", "url": f"https://www.vie-publique.fr/discours/{n}",
                 "text": "<script>document.title='pwned'</script> " + french_text(rng, 150),
                 "license": DILA_TEXTS, "redistributable": False, "date": f"201{n % 3}-06-0{n + 1}",
                 "speakers": [{"name": name, "role": "ministre"}]} for n, name in enumerate(SPEAKERS)]
    _ingest(workspace, "speeches", speeches, profile="speech")
    build(workspace, progress=False)
    return workspace


def _version(workspace: Workspace) -> Version:
    return Version.open(workspace.dataset_dir("overton"))


def _card(folder: Path) -> DatasetCard:
    return DatasetCard.load(folder / "README.md")


def _table_row(card: str, first_cell: str) -> list[str]:
    row = next(line for line in card.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_card_of_a_version_is_read_by_the_hub_tools_and_its_numbers_are_the_data(mixed: Workspace, capsys):
    assert main(["card", "-w", str(mixed.root)]) == 0
    folder = _version(mixed).path
    assert "data card:" in capsys.readouterr().out
    card = _card(folder)
    data = card.data.to_dict()
    assert data["language"] == ["fr"] and data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"]
    # two licences, one not known to the Hub: "other", with the per-licence file the card links
    assert (data["license"], data["license_link"]) == ("other", "LICENSE.md")
    assert "Licence Ouverte 2.0 for the metadata" in (folder / "LICENSE.md").read_text(encoding="utf-8")
    configs = {c["config_name"]: c for c in data["configs"]}
    assert list(configs) == ["all", "speeches", "wiki"] and configs["all"]["default"] is True
    for name, rows in (("all", 14), ("speeches", 6), ("wiki", 8)):
        assert load_dataset(str(folder), name, split="train").num_rows == rows
    assert pads.dataset(folder / "data", format="parquet").count_rows() == 14
    wiki_words = sum(len(row["text"].split()) for batch in _version(mixed).iter_batches("data")
                     for row in batch.to_pylist() if row["source"] == "wiki")
    assert _table_row(card.text, "wiki")[1:3] == ["8", f"{wiki_words:,}"]
    assert _table_row(card.text, "speeches")[1] == "6"
    assert "Jeanne Morel (3)" in card.text  # the top speakers of the source
    for plot in ("documents_per_year", "document_length", "top_speakers", "rejects_by_reason"):
        assert f"(plots/{plot}.png)" in card.text
        assert (folder / "plots" / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "index.html").is_file()
    assert _version(mixed).verify() == []  # the card is beside the version, not in it


def test_public_release_publishes_only_the_texts_licensed_for_it(mixed: Workspace, tmp_path: Path, capsys):
    dest = tmp_path / "releases"
    assert main(["publish", "-w", str(mixed.root), "--to", str(dest), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "6 documents published without their text (metadata_only): speeches 6" in out
    release = dest / "v0001"
    assert sorted(p.name for p in (release / "data").iterdir()) == ["wiki"]
    metadata = pq.read_table(release / "metadata")
    assert "text" not in metadata.column_names and metadata.num_rows == 6
    assert set(metadata.column("title").to_pylist()) == {f"Discours {n}" for n in range(6)}
    wiki = load_dataset(str(release), "wiki", split="train")
    assert wiki.num_rows == 8 and "text" in wiki.features
    assert all(row["attribution"].startswith("Wikipédia, l'encyclopédie libre, https://") for row in wiki)
    only_metadata = load_dataset(str(release), "metadata_only", split="train")
    assert only_metadata.num_rows == 6 and "text" not in only_metadata.features
    card = _card(release)
    configs = card.data.to_dict()["configs"]
    assert [c["config_name"] for c in configs] == ["all", "wiki", "metadata_only"]
    for config, rows in zip(configs, (8, 8, 6), strict=True):  # every config, as the card's header declares it
        loaded = load_dataset(str(release), config["config_name"], split="train")
        assert loaded.num_rows == rows and ("text" in loaded.features) == (config["config_name"] != "metadata_only")
        assert {"id", "title", "url", "license", "attribution", "published_at"} <= set(loaded.features)
    assert pads.dataset(release / "data", format="parquet").count_rows() == 8
    assert "**Metadata only for 6 documents.**" in card.text
    assert _table_row(card.text, "speeches")[-1] == "none (metadata only)"
    speeches = [row["text"] for row in _version(mixed).iter_batches("data") for row in row.to_pylist()
                if row["source"] == "speeches"]
    published = b"".join(p.read_bytes() for p in release.rglob("*") if p.is_file())
    assert not any(text[60:120].encode() in published for text in speeches)  # no speech text anywhere: page too
    # the release is itself a dataset version: overton verifies it and reads its data
    assert main(["verify", str(release)]) == 0
    assert sum(entry["rows"] for entry in Version.open(release).files("data")) == 8


def test_restricted_text_goes_public_only_with_a_reason_the_card_states(mixed: Workspace, tmp_path: Path, capsys):
    dest = tmp_path / "releases"
    assert main(["publish", "-w", str(mixed.root), "--to", str(dest), "--include-restricted-text", " "]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not dest.exists()
    assert main(["publish", "-w", str(mixed.root), "--to", str(dest), "--include-restricted-text", REASON,
                 "--quiet"]) == 0
    release = dest / "v0001"
    assert load_dataset(str(release), "speeches", split="train").num_rows == 6
    assert not (release / "metadata").exists()
    card = _card(release).text
    assert f'by the publisher\'s decision: "{REASON}"' in card
    assert "It concerns 6 documents" in card


def test_private_release_holds_every_text_and_says_to_keep_it_private(mixed: Workspace, tmp_path: Path):
    dest = tmp_path / "private"
    assert main(["publish", "-w", str(mixed.root), "--to", str(dest), "--private", "--quiet"]) == 0
    release = dest / "v0001"
    assert load_dataset(str(release), "all", split="train").num_rows == 14
    assert "**Private release.** It holds every text, including 6 documents whose" in _card(release).text
    assert Version.open(release).manifest["release"]["visibility"] == "private"


def test_the_hub_is_never_published_to_without_a_stated_visibility(mixed: Workspace, capsys):
    assert main(["publish", "-w", str(mixed.root), "--to", "hf://datasets/someone/corpus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--public or --private" in err
    assert not (mixed.state / "publish").exists()


def test_next_release_shows_what_changed_and_sends_only_changed_files(mixed: Workspace, tmp_path: Path, capsys):
    dest = tmp_path / "releases"
    assert main(["publish", "-w", str(mixed.root), "--to", str(dest), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["publish", "-w", str(mixed.root), "--to", str(dest), "--quiet"]) == 0
    assert re.search(r": 0 files sent \(0 bytes\)", capsys.readouterr().out)  # the same bytes staged again

    _ingest(mixed, "wiki", _articles(random.Random(8), 100, 3), name="more.jsonl", profile="encyclopedia")
    build(mixed, progress=False)
    assert main(["publish", "-w", str(mixed.root), "--to", str(dest), "--quiet"]) == 0
    out = capsys.readouterr().out
    first, second = Version.open(dest / "v0001"), Version.open(dest / "v0002")
    unchanged = {e["path"] for e in first.manifest["files"]} & {e["path"] for e in second.manifest["files"]
                                                                if e in first.manifest["files"]}
    assert {"data/wiki/part-00000.parquet", "metadata/speeches/part-00000.parquet"} <= unchanged
    changed = len(second.manifest["files"]) - len(unchanged)
    assert re.search(rf": {changed} files sent .*, {len(unchanged)} reused", out)
    card = _card(dest / "v0002").text
    assert _table_row(card.split("## Changes since v0001")[1], "wiki")[1:3] == ["3", "0"]  # added, removed


def test_a_damaged_version_is_not_published(mixed: Workspace, tmp_path: Path, capsys):
    entry = _version(mixed).files("data")[0]
    shard = _version(mixed).file_path(entry)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    assert main(["publish", "-w", str(mixed.root), "--to", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256 differs" in err
    assert not (tmp_path / "out").exists()


def test_publish_to_the_hub_is_one_tagged_commit_of_the_gated_release(mixed: Workspace, hub, capsys):
    """Through a local stand-in of the Hub's HTTP API (tests/hubstandin.py) that huggingface_hub is pointed at."""
    assert main(["publish", "-w", str(mixed.root), "--to", "hf://datasets/elus/corpus", "--public", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert hub.token not in out
    files = hub.files("elus/corpus", "v0001")
    staged = Version.open(next((mixed.state / "publish").iterdir()))
    assert {path: len(data) for path, data in files.items() if path != ".gitattributes"} == {
        entry["path"]: entry["bytes"] for entry in [*staged.manifest["files"],
                                                    {"path": "manifest.json", "bytes": len(files["manifest.json"])}]}
    assert "metadata/speeches/part-00000.parquet" in files and "data/speeches/part-00000.parquet" not in files
    assert 'load_dataset("elus/corpus", "all", split="train")' in files["README.md"].decode()
    assert hub.repos["elus/corpus"].private is False


def test_a_version_that_kept_nothing_still_gets_a_card(workspace: Workspace):
    _ingest(workspace, "wiki", [{"id": "en", "text": "The committee will meet again next week to discuss the "
                                 "budget of the regions and the future of public transport in rural areas."}],
            profile="encyclopedia")
    build(workspace, progress=False)
    assert main(["card", "-w", str(workspace.root)]) == 0
    card = _card(_version(workspace).path)
    assert "No document was kept." in card.text and "| not_french | 1 |" in card.text
