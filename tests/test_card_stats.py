"""The data card's numbers and plots, measured on versions built for real with planted facts."""

from __future__ import annotations

import bisect
import json
import math
import random
import shutil
import struct
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from overton.corpus import stats as stats_module
from overton.corpus.dataset import Version
from overton.corpus.errors import Refused, UserError
from overton.corpus.plots import write_plots
from overton.corpus.stats import changes, version_stats
from overton.corpus.workspace import Workspace
from overton.pipelines.build import build
from overton.spiders.ingest import ingest
from overton.train.tiny import train_tokenizer
from tests.conftest import french_text, write_jsonl

ENGLISH = ("The government must support the regions in the years to come, and the parliament will vote on the budget "
           "before the end of the year, with the social partners and the elected members of each town.")


def _ingest(workspace: Workspace, source: str, records: list[dict], name: str, profile: str) -> None:
    report = ingest(workspace, [write_jsonl(workspace.root.parent / f"{source}-{name}", records)], source,
                    profile=profile)
    assert report.refused_count == 0


def _speaker(name: str, role: str | None = None) -> dict:
    return {"name": name, "role": role} if role else {"name": name}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """v0001: two sources with known years, speakers, parties, licences, an exact and a near duplicate and an
    English speech; v0002: two more speeches; a tokenizer trained on the same kind of text."""
    root = tmp_path_factory.mktemp("card")
    workspace = Workspace.init(root / "ws")
    rng = random.Random(3)
    text = [french_text(rng, n) for n in (120, 90, 300, 60, 75, 200, 150, 110, 95)]
    near = text[5].rsplit(" ", 1)[0] + " durable."  # w1 but its last word
    etalab = {"license": "etalab-2.0", "redistributable": True}
    _ingest(workspace, "speeches", [
        {"id": "s1", "text": text[0], "date": "2015-03-01", "speakers": [_speaker("Marie Curie", "ministre")],
         "kind": "discours", "party": "PS", **etalab},
        {"id": "s2", "text": text[1], "date": "2015-12-31T23:30:00-02:00",  # 2016 in UTC
         "speakers": [_speaker("Marie Curie", "ministre"), _speaker("Jean Moulin", "député")], "kind": "discours",
         "party": "PS", **etalab},
        {"id": "s3", "text": text[2], "date": "2019-06-01",
         "speakers": [_speaker("Jean Moulin", "député"), _speaker("Jean Moulin", "député")], "kind": "interview",
         "party": "LR", **etalab},
        {"id": "s4", "text": text[3]},  # undated, no speaker, no licence
        {"id": "s6", "text": ENGLISH, "date": "2018-01-01", **etalab},
        {"id": "s7", "text": text[4], "date": "2021-01-01", "speakers": [_speaker("Marie Curie", "ministre")],
         "license": "LicenseRef-press", "redistributable": False},
        {"id": "s9", "text": text[0], "date": "2015-03-01", **etalab},  # s1 again
    ], "a.jsonl", "speech")
    cc = {"license": "CC-BY-SA-4.0", "redistributable": True}
    _ingest(workspace, "web", [
        {"id": "w1", "text": text[5], "date": "2020-02-02", **cc},
        {"id": "w2", "text": near, "date": "2020-02-03", **cc},
        {"id": "w3", "text": text[6], "date": "2020-05-05", **cc},
    ], "a.jsonl", "web")
    first = build(workspace, jobs=1, progress=False).version
    _ingest(workspace, "speeches", [
        {"id": "s10", "text": text[7], "date": "2022-01-01", **etalab},
        {"id": "s11", "text": text[8], "date": "2022-02-01", **etalab},
    ], "b.jsonl", "speech")
    second = build(workspace, jobs=1, progress=False).version
    tokenizer = train_tokenizer(root / "tokenizer", text, vocab_size=300)
    return {"root": root, "first": first, "second": second, "tokenizer": tokenizer}


def _kept(version: Version) -> list[dict]:
    return [row for batch in version.iter_batches("data", columns=["source", "text"]) for row in batch.to_pylist()]


def test_statistics_of_a_built_version_are_the_planted_facts(built):
    version = built["first"]
    stats = version_stats(version)
    assert (stats["name"], stats["version"], stats["parent"], stats["tokenizer"]) == ("overton", "v0001", None, None)
    assert json.loads(json.dumps(stats)) == stats  # plain JSON: string keys, no numpy numbers

    rows = _kept(version)
    words = {s: [len(r["text"].split()) for r in rows if r["source"] == s] for s in ("speeches", "web")}
    characters = {s: sum(len(r["text"]) for r in rows if r["source"] == s) for s in ("speeches", "web")}
    assert stats["totals"] == {"documents": 7, "words": sum(map(sum, words.values())),
                               "characters": sum(characters.values()), "tokens": None, "tokens_per_word": None,
                               "rejected": 3}
    assert list(stats["sources"]) == ["speeches", "web"]
    speeches, web = stats["sources"]["speeches"], stats["sources"]["web"]
    assert (speeches["documents"], speeches["words"], speeches["characters"]) == (
        5, sum(words["speeches"]), characters["speeches"])
    assert (web["documents"], web["words"], web["characters"]) == (2, sum(words["web"]), characters["web"])
    assert speeches["years"] == [2015, 2021] and speeches["undated"] == 1
    assert speeches["by_year"] == {"2015": 1, "2016": 1, "2019": 1, "2021": 1}
    assert web["years"] == [2020, 2020] and web["by_year"] == {"2020": 2} and web["undated"] == 0
    assert speeches["profiles"] == {"speech": 5} and web["profiles"] == {"web": 2}
    assert speeches["licences"] == {"LicenseRef-press": 1, "etalab-2.0": 3, "unknown": 1}
    assert speeches["redistributable"] == {"yes": 3, "no": 1, "unknown": 1}
    assert web["licences"] == {"CC-BY-SA-4.0": 2} and web["redistributable"] == {"yes": 2, "no": 0, "unknown": 0}
    assert speeches["kinds"] == {"discours": 2, "interview": 1, "unknown": 2}
    ordered = sorted(words["speeches"])  # the smallest count reaching each share of the documents
    assert speeches["words_quantiles"] == {"p10": ordered[0], "p50": ordered[2], "p90": ordered[4],
                                           "max": ordered[4]}
    assert speeches["speakers"] == {"documents_with": 4, "distinct": 2,
                                    "top": [["Marie Curie", 3], ["Jean Moulin", 2]]}
    assert web["speakers"] == {"documents_with": 0, "distinct": 0, "top": []}

    histogram = stats["length_histogram"]
    edges = histogram["edges"]
    assert edges[:9] == [1, 2, 3, 6, 10, 18, 32, 56, 100] and edges[-1] == 10 ** math.ceil(math.log10(max(
        max(w) for w in words.values())))
    for source, counts in histogram["counts"].items():
        expected = [0] * (len(edges) - 1)
        for count in words[source]:
            expected[min(bisect.bisect_right(edges, count), len(edges) - 1) - 1] += 1
        assert counts == expected and sum(counts) == stats["sources"][source]["documents"]

    assert stats["speakers"] == {"documents_with": 4, "distinct": 2, "top": [["Marie Curie", 3], ["Jean Moulin", 2]],
                                 "roles": [["ministre", 3], ["député", 2]]}
    assert stats["rejected"] == {
        "total": 3, "by_reason": {"exact_duplicate": 1, "near_duplicate": 1, "not_french": 1},
        "by_step": {"dedup_content_sha256": 1, "language": 1, "near_dedup": 1},
        "by_source": {"speeches": {"exact_duplicate": 1, "not_french": 1}, "web": {"near_duplicate": 1}}}
    assert stats["clusters"] == {"clusters": 1, "documents_removed": 1, "size_histogram": {"2": 1},
                                 "largest": [["web:w1", 2]]}
    assert stats["imbalance"] == {"largest_source": ["speeches", round(5 / 7, 4)],
                                  "top_year": [2020, round(2 / 6, 4)], "top10_speakers_share": 1.0,
                                  "party": {"LR": 1, "PS": 2}}


def test_tokens_are_counted_with_the_given_tokenizer(built, monkeypatch):
    folder = built["tokenizer"]
    stats = version_stats(built["first"], folder / "tokenizer.json")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    rows = _kept(built["first"])
    for source in ("speeches", "web"):
        tokens = sum(len(tokenizer.encode(r["text"], add_special_tokens=False).ids)
                     for r in rows if r["source"] == source)
        entry = stats["sources"][source]
        assert entry["tokens"] == tokens > entry["words"]
        assert entry["tokens_per_word"] == round(tokens / entry["words"], 4)
    totals = stats["totals"]
    assert totals["tokens"] == sum(s["tokens"] for s in stats["sources"].values())
    assert totals["tokens_per_word"] == round(totals["tokens"] / totals["words"], 4)
    assert version_stats(built["first"], folder)["totals"] == totals  # the folder or its tokenizer.json
    # text is split and tokenized a slice of a row group at a time: slices of a document or two count the same
    monkeypatch.setattr(stats_module, "_SPLIT_BYTES", 500)
    monkeypatch.setattr(stats_module, "_ENCODE_BYTES", 800)
    assert version_stats(built["first"], folder / "tokenizer.json") == stats

    with pytest.raises(UserError, match="no such folder"):
        version_stats(built["first"], built["root"] / "nowhere")
    broken = built["root"] / "broken" / "tokenizer.json"
    broken.parent.mkdir()
    broken.write_text("{not json")
    with pytest.raises(UserError, match="not a tokenizer.json"):
        version_stats(built["first"], broken.parent)


def test_changes_count_documents_added_and_removed_by_id(built):
    first, second = built["first"], built["second"]
    stats = version_stats(second)
    assert (stats["version"], stats["parent"]) == ("v0002", "v0001")
    assert stats["sources"]["speeches"]["documents"] == 7 and stats["sources"]["speeches"]["by_year"]["2022"] == 2
    assert changes(second, first) == {"previous": "v0001", "sources": {"speeches": {"added": 2, "removed": 0},
                                                                       "web": {"added": 0, "removed": 0}}}
    assert changes(first, second) == {"previous": "v0002", "sources": {"speeches": {"added": 0, "removed": 2},
                                                                       "web": {"added": 0, "removed": 0}}}
    assert changes(first, None) == {"previous": None, "sources": {"speeches": {"added": 5, "removed": 0},
                                                                  "web": {"added": 2, "removed": 0}}}


def test_a_flipped_byte_in_a_shard_is_refused_not_counted(built, tmp_path):
    copy = tmp_path / "v0001"
    shutil.copytree(built["first"].path, copy)
    shard = copy / "data" / "web" / "part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(Refused, match="data/web/part-00000.parquet: sha256 differs"):
        version_stats(Version.open(copy))
    with pytest.raises(Refused, match="sha256 differs"):
        changes(Version.open(copy), None)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plots_are_valid_deterministic_pngs_with_alt_texts(built, tmp_path):
    stats = version_stats(built["first"])
    plots = write_plots(stats, tmp_path / "a")
    again = write_plots(stats, tmp_path / "b")
    assert plots == again
    assert [p.file for p in plots] == ["plots/documents_per_year.png", "plots/document_length.png",
                                       "plots/top_speakers.png", "plots/rejects_by_reason.png"]
    sizes = {}
    for plot in plots:
        data = (tmp_path / "a" / plot.file).read_bytes()
        assert data == (tmp_path / "b" / plot.file).read_bytes()
        sizes[plot.file] = _png_size(data)
    assert set(sizes.values()) == {(800, 450), (800, 600)}
    assert sorted(p.name for p in (tmp_path / "a" / "plots").iterdir()) == sorted(
        Path(p.file).name for p in plots)  # no temporary file left beside them
    alt = {Path(p.file).stem: p.alt for p in plots}
    assert alt["documents_per_year"] == "Documents per year: 2015 (1) to 2021 (1), most in 2020 (2); 1 undated."
    q = stats["sources"]["speeches"]["words_quantiles"]
    assert alt["document_length"].startswith(f"Document length in words: speeches median {q['p50']:,} words (p10 ")
    assert alt["top_speakers"] == ("Top speakers by documents: Marie Curie (3), Jean Moulin (2); 2 distinct "
                                   "speakers named in 4 documents.")
    assert alt["rejects_by_reason"] == ("Rejected documents by reason, 3 in all: exact_duplicate (1), "
                                        "near_duplicate (1), not_french (1).")


def test_plots_of_a_version_without_dates_speakers_or_rejects_say_so(tmp_path):
    workspace = Workspace.init(tmp_path / "ws")
    _ingest(workspace, "notes", [{"id": "n1", "text": french_text(random.Random(5), 80)}], "a.jsonl", "speech")
    stats = version_stats(build(workspace, jobs=1, progress=False).version)
    assert stats["sources"]["notes"]["years"] is None and stats["imbalance"]["top_year"] is None
    assert stats["imbalance"]["top10_speakers_share"] is None and stats["imbalance"]["party"] is None
    assert stats["clusters"] == {"clusters": 0, "documents_removed": 0, "size_histogram": {}, "largest": []}
    plots = write_plots(stats, tmp_path / "release")
    for plot in plots:
        _png_size((tmp_path / "release" / plot.file).read_bytes())
    assert [p.alt for p in plots][0] == "Documents per year: no document has a date (1 undated)."
    assert [p.alt for p in plots][2:] == ["Top speakers: no document names a speaker.", "Rejected documents: none."]
    assert write_plots(stats, tmp_path / "again") == plots
    assert all((tmp_path / "release" / p.file).read_bytes() == (tmp_path / "again" / p.file).read_bytes()
               for p in plots)
