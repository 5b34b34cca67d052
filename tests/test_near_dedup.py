"""MinHash near-dedup: datasketch-exact signatures, candidates verified by their true Jaccard, known clusters
found, incremental against old versions."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from datasketch import MinHash

from overton.corpus.config import Config, NearDedupConfig
from overton.corpus.workspace import Workspace
from overton.pipelines import dedup_near
from overton.pipelines.build import build, near_dedup_step, parameters
from overton.pipelines.dedup_near import Candidates, NearDedup, in_memory
from overton.pipelines.minhash import MinHasher, MinHashParams, _split, estimated_jaccard, fold_words, permutations
from overton.pipelines.stages import near_buckets, near_clusters
from overton.spiders.ingest import ingest
from tests.conftest import french_text, write_jsonl
from tests.test_build import _build_command, _clone, _kill_when, _tree

_RNG = random.Random(11)
VOCABULARY = ["".join(_RNG.choice("abcdefghijklmnopqrstuvwxyzéèàç") for _ in range(_RNG.randint(2, 10)))
              for _ in range(30000)]


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCABULARY) for _ in range(n)]


def test_folding_ignores_case_diacritics_and_punctuation():
    words, lengths = fold_words(["L'État, c'est NOUS !", "l etat c est nous", "", "..."])
    assert words.to_pylist() == ["l", "etat", "c", "est", "nous"] * 2
    assert lengths.tolist() == [5, 5, 0, 0]


def test_folding_on_bytes_is_the_definition():
    """Words are cut on the UTF-8 bytes and only the distinct ones folded; the definition folds each whole text
    (NFD, lower case, non-spacing marks removed) and splits it with RE2. Same words on accents precomposed or
    not, lone marks, Greek, Hangul, ligatures, astral characters, and Tamil's AU (a letter and a spacing mark,
    which the byte path leaves to the definition)."""
    def definition(texts: list[str]) -> list[list[str]]:
        folded = pc.replace_substring_regex(
            pc.utf8_lower(pa.array([unicodedata.normalize("NFD", t) for t in texts], pa.string())), r"\p{Mn}+", "")
        return [[w for w in words if w] for words in pc.split_pattern_regex(folded, r"[^\p{L}\p{N}]+").to_pylist()]

    rng = random.Random(5)
    alphabet = [*"abcXYZ09 ,'’-\n\t«", "É", "é", "e\u0301", "\u0301", "\u0345", "ΑΣ", "ς", "İ", "ß", "œ", "ﬁ", "Ω", "Å",
                "½", "²", "한", "\u0915\u093c", "\U0001d15e", "\U0001f600", "\u00a0", "\u2009"]
    tamil_au = "\u0b94"
    batches = [["L'État, c'est NOUS !", "", "...", "\u0301", "a\u0301b", " \u0301 "]]
    for with_tamil in (False, True) * 3:
        letters = alphabet + [tamil_au] * with_tamil
        batches.append(["".join(rng.choice(letters) for _ in range(rng.randint(0, 30))) for _ in range(300)])
    for texts in batches:
        words, lengths = fold_words(texts)
        expected = definition(texts)
        assert words.to_pylist() == [w for ws in expected for w in ws]
        assert lengths.tolist() == [len(ws) for ws in expected]
        assert (_split(pa.array(texts, pa.large_string())) is None) == (tamil_au in "".join(texts))


def test_signatures_are_datasketch_minhash():
    hasher = MinHasher(MinHashParams())
    texts = [" ".join(_words(random.Random(i), n)) for i, n in enumerate([1, 3, 4, 5, 6, 50, 3000])]
    shingles, owner = hasher.shingles(texts)
    signatures = hasher.signatures(texts)
    for i in range(len(texts)):
        reference = MinHash(num_perm=hasher.params.num_perm, seed=1, hashfunc=lambda x: x, scheme="affine32")
        reference.update_batch(shingles[owner == i].tolist())
        assert np.array_equal(reference.hashvalues, signatures[i])
    # n-grams: a text of n >= 5 words has n - 4 shingles, a shorter one exactly one
    assert np.bincount(owner).tolist() == [1, 1, 1, 1, 2, 46, 2996]
    for seed, num_perm in ((1, 100), (7, 112), (2**31 + 5, 16)):  # drawn as datasketch draws them, any seed
        drawn = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        assert np.array_equal(np.array(permutations(num_perm, seed)), drawn)


def test_a_documents_shingles_do_not_depend_on_its_batch():
    """Each n-gram is summed over the whole batch's words, and a document of fewer than n words gets one shingle of
    them: none of its neighbours' words may get into either."""
    rng = random.Random(11)
    texts = [" ".join(_words(rng, rng.choice([0, 1, 2, 3, 4, 5, 6, 9]))) for _ in range(150)]
    for ngram in (1, 2, 3, 5):
        hasher = MinHasher(MinHashParams(ngram=ngram))
        together, owner = hasher.shingles(texts)
        for i, text in enumerate(texts):
            alone, _ = hasher.shingles([text])
            assert together[owner == i].tolist() == alone.tolist()


def test_signatures_of_an_arrow_column_are_those_of_its_texts():
    """The build hands over its text columns as they are (sliced, in chunks, either string type): the bytes
    read are the texts', not those around a slice."""
    rng = random.Random(5)
    texts = [" ".join(_words(rng, rng.randint(0, 40))) for _ in range(60)] + ["L'État, c'est nous", "a\u0301b"]
    hasher = MinHasher(MinHashParams())
    expected = hasher.signatures(texts)
    padded = pa.array(["avant"] + texts + ["après"], pa.string())
    for column in (padded.slice(1, len(texts)), padded.cast(pa.large_string()).slice(1, len(texts)),
                   pa.chunked_array([padded.slice(1, 20), padded.slice(21, len(texts) - 20)]),
                   pa.chunked_array([pa.array(texts)])):
        assert np.array_equal(hasher.signatures(column), expected)
    assert hasher.signatures(pa.chunked_array([], pa.string())).shape == (0, 100)


def _clusters(seed: int, count: int) -> tuple[list[str], list[str], dict[str, int], dict[str, datetime]]:
    """``count`` clusters of 1 to 5 overlapping windows of one random text (Jaccard about 0.9)."""
    rng = random.Random(seed)
    ids, texts, truth, published = [], [], {}, {}
    for cluster in range(count):
        base = _words(rng, 1300)
        for member in range(rng.randint(1, 5)):
            doc_id = f"c{cluster:04d}-{rng.randint(0, 10**6):07d}"
            offset = member * 20
            ids.append(doc_id)
            texts.append(" ".join(base[offset:offset + 1000]))
            truth[doc_id] = cluster
            published[doc_id] = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 900))
    return ids, texts, truth, published


def _true_jaccard(hasher: MinHasher, a: str, b: str) -> float:
    shingles, owner = hasher.shingles([a, b])
    sa, sb = set(shingles[owner == 0].tolist()), set(shingles[owner == 1].tolist())
    return len(sa & sb) / len(sa | sb)


def test_known_clusters_are_found_and_one_kept_by_the_rule():
    ids, texts, truth, published = _clusters(seed=5, count=300)
    step = NearDedup(MinHashParams(), threshold=0.8)
    signatures = step.hasher.signatures(texts)
    step.index(Candidates(ids, ["web"] * len(ids), [published[i] for i in ids], texts=in_memory(texts)), signatures)
    members: dict[int, list[str]] = {}
    for doc_id in ids:
        members.setdefault(truth[doc_id], []).append(doc_id)
    removed = 0
    for cluster, docs in members.items():
        expected = min(docs, key=lambda d: (published[d], d))  # earliest published_at, then smallest id
        kept = [d for d in docs if step.is_kept(d)]
        assert kept == [expected], f"cluster {cluster}"
        removed += len(docs) - 1
        for doc in docs:
            assert step._decisions.get(doc, (doc, 1, 1.0))[:2] == (expected, len(docs))
    assert removed == sum(not step.is_kept(d) for d in ids) > 250
    assert step.stats["clusters"] == sum(len(d) > 1 for d in members.values())
    # the Jaccard recorded for a removed document is its true Jaccard with the kept one
    checked = 0
    for doc in ids[:200]:
        kept, _, recorded = step._decisions.get(doc, (doc, 1, 1.0))
        if kept != doc:
            truth = _true_jaccard(step.hasher, texts[ids.index(doc)], texts[ids.index(kept)])
            assert recorded == pytest.approx(truth, abs=1e-12)
            checked += 1
    assert checked > 20


def test_verifying_a_few_documents_at_a_time_decides_the_same(monkeypatch):
    ids, texts, _, published = _clusters(seed=6, count=60)

    def decide() -> NearDedup:
        step = NearDedup(MinHashParams(), threshold=0.8)
        step.index(Candidates(ids, ["web"] * len(ids), [published[i] for i in ids], texts=in_memory(texts)),
                   step.hasher.signatures(texts))
        return step

    whole = decide()
    monkeypatch.setattr(dedup_near, "DOCS_PER_GROUP", 7)
    grouped = decide()
    assert grouped._decisions == whole._decisions and len(whole._decisions) > 100
    assert grouped.stats["texts_read"] > whole.stats["texts_read"]  # a group is read again for each partner group
    assert grouped.stats["shingles_held"] * 5 < whole.stats["shingles_held"]


def test_unrelated_documents_are_never_paired():
    rng = random.Random(2)
    texts = [" ".join(_words(rng, rng.randint(30, 800))) for _ in range(2000)]
    texts += ["La séance est ouverte.", "La séance est levée."] * 3  # short, different, and exact copies
    ids = [f"d{i:05d}" for i in range(len(texts))]
    step = NearDedup(MinHashParams(), threshold=0.8)
    step.index(Candidates(ids, ["web"] * len(ids), [None] * len(ids), texts=in_memory(texts)),
               step.hasher.signatures(texts))
    removed = [d for d in ids if not step.is_kept(d)]
    assert removed == ["d02002", "d02003", "d02004", "d02005"]  # only the copies of the two short lines


@pytest.mark.parametrize(("priority", "kept"), [([], "b:9"), (["b", "a"], "b:9"), (["a"], "a:3")])
def test_source_priority_comes_before_date_and_id(priority: list[str], kept: str):
    text = " ".join(_words(random.Random(4), 400))
    ids = ["a:3", "b:9", "a:2"]
    dates = [datetime(2021, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC), None]
    step = NearDedup(MinHashParams(), 0.8, source_priority=priority)
    step.index(Candidates(ids, ["a", "b", "a"], dates, texts=in_memory([text] * 3)), step.hasher.signatures([text] * 3))
    # unlisted sources rank after listed ones; an unknown date comes after every known one
    assert [d for d in ids if step.is_kept(d)] == [kept]


def _set_mode(workspace: Workspace, mode: str) -> None:
    text = workspace.settings_path.read_text()
    workspace.settings_path.write_text(re.sub(r'\nmode = "(verified|fineweb)"', f'\nmode = "{mode}"', text))


@pytest.mark.parametrize("first_mode", ["verified", "fineweb"])
def test_incremental_build_dedups_against_published_versions(workspace: Workspace, first_mode: str):
    """The new copies of published documents are verified by their true Jaccard, read from the parent's shards;
    a parent indexed with other MinHash settings (fineweb's 14 x 8) has its signatures computed again."""
    rng = random.Random(8)
    old = [{"id": f"old{i:02d}", "text": french_text(rng, 600), "published_at": "2022-01-01"}
           for i in range(30)]
    write_jsonl(workspace.root.parent / "old.jsonl", old)
    ingest(workspace, [workspace.root.parent / "old.jsonl"], "speeches")
    _set_mode(workspace, first_mode)
    v1 = build(workspace, jobs=1, progress=False).version
    assert v1.manifest["steps"]["near_dedup"]["signatures_computed"] == 30
    _set_mode(workspace, "verified")

    def variant(text: str) -> str:  # a republished speech: a few words changed at the end
        words = text.split()
        return " ".join(words[:-15] + french_text(rng, 15).split())

    new = [{"id": "aaa-republished", "text": variant(old[3]["text"]), "published_at": "2020-01-01"},
           {"id": "new-original", "text": french_text(rng, 600)},
           {"id": "new-copy", "text": variant(old[17]["text"])}]
    write_jsonl(workspace.root.parent / "new.jsonl", new)
    ingest(workspace, [workspace.root.parent / "new.jsonl"], "speeches")
    v2 = build(workspace, jobs=1, progress=False).version

    stats = v2.manifest["steps"]["near_dedup"]
    assert stats["signatures_computed"] == 3  # only the new documents were hashed
    assert stats["signatures_loaded"] == 30  # the published ones came from state/
    assert stats.get("signatures_recomputed", 0) == (30 if first_mode == "fineweb" else 0)
    assert stats["texts_read_published"] == 2  # the two originals, for exact verification
    rejected = {row["id"]: json.loads(row["reject_detail"]) for batch in v2.iter_batches("rejected")
                for row in batch.to_pylist()}
    # published documents win, even against an earlier date or a smaller id
    assert {k: v["duplicate_of"] for k, v in rejected.items()} == {
        "speeches:aaa-republished": "speeches:old03", "speeches:new-copy": "speeches:old17"}
    texts = {row["id"]: row["text"] for kind in ("data", "rejected")
             for batch in v2.iter_batches(kind, columns=["id", "text"]) for row in batch.to_pylist()}
    hasher = MinHasher(MinHashParams())
    for doc, detail in rejected.items():
        assert detail["jaccard"] == round(_true_jaccard(hasher, texts[doc], texts[detail["duplicate_of"]]), 4)
        assert 0.8 <= detail["jaccard"] < 1
    kept = {row["id"]: row for batch in v2.iter_batches("data") for row in batch.to_pylist()}
    assert len(kept) == 31 and kept["speeches:new-original"]["dup_cluster_size"] == 1
    for entry in v1.manifest["files"]:  # unchanged shards are not rewritten
        assert os.path.samefile(v1.file_path(entry), v2.file_path(entry))
    index = workspace.state / "near_dedup" / "overton"
    assert sorted(p.name for p in index.iterdir()) == ["v0001.parquet", "v0002.parquet"]


def _edited_pair(want, params: MinHashParams | None = None, edits: tuple[int, int] = (10, 16)) -> list[str]:
    """An original and a variant (random word substitutions) for which ``want(true, estimate)`` holds and which
    share an LSH band of ``params`` (default: the default's)."""
    hasher = MinHasher(params or MinHashParams())
    rng = random.Random(21)
    original = _words(rng, 600)
    for _ in range(4000):
        variant = list(original)
        for position in rng.sample(range(len(variant)), rng.randint(*edits)):
            variant[position] = rng.choice(VOCABULARY)
        texts = [" ".join(original), " ".join(variant)]
        signatures = hasher.signatures(texts)
        keys = hasher.band_keys(signatures)
        if want(_true_jaccard(hasher, *texts), float(estimated_jaccard(*signatures))) and (keys[0] == keys[1]).any():
            return texts
    pytest.fail("no such variant")


def _merged(settings: NearDedupConfig, texts: list[str]) -> tuple[NearDedup, bool]:
    step = near_dedup_step(parameters(Config(near_dedup=settings)))
    step.index(Candidates(["a", "b"], ["web"] * 2, [None] * 2, texts=in_memory(texts)), step.hasher.signatures(texts))
    return step, not step.is_kept("b")


def test_a_pair_just_above_the_threshold_is_merged_though_its_estimate_is_below():
    texts = _edited_pair(lambda true, estimate: 0.8 <= true < 0.815 and estimate < 0.78)
    step, merged = _merged(NearDedupConfig(), texts)
    assert (step.hasher.params.bands, step.hasher.params.rows, step.verify) == (20, 5, True)
    assert merged and step._decisions["b"] == ("a", 2, pytest.approx(_true_jaccard(step.hasher, *texts)))
    assert step.stats["texts_read"] == 2


def test_a_pair_just_below_the_threshold_is_not_merged_though_its_estimate_is_above():
    texts = _edited_pair(lambda true, estimate: 0.785 <= true < 0.8 and estimate >= 0.82)
    step, merged = _merged(NearDedupConfig(), texts)
    assert not merged and step.stats["candidate_pairs"] == 1 and step.stats["verified_pairs"] == 0
    true = _true_jaccard(step.hasher, *texts)
    assert _merged(NearDedupConfig(threshold=round(true - 0.005, 3)), texts)[1]  # at a threshold under it, it is


def test_fineweb_mode_merges_every_candidate_on_its_estimate():
    fineweb = MinHashParams(14, 8)
    texts = _edited_pair(lambda true, estimate: true < 0.7, fineweb, edits=(22, 30))
    step, merged = _merged(NearDedupConfig(mode="fineweb"), texts)
    assert (step.hasher.params, step.verify) == (fineweb, False)
    estimate = float(estimated_jaccard(*step.hasher.signatures(texts)))
    assert merged and step._decisions["b"] == ("a", 2, pytest.approx(estimate))
    assert "texts_read" not in step.stats  # no text is read
    assert not _merged(NearDedupConfig(), texts)[1]  # verified, its true Jaccard is below 0.8


def test_a_killed_build_on_a_parent_reruns_to_the_bytes_of_an_uninterrupted_one(workspace: Workspace,
                                                                                tmp_path: Path):
    """Near copies of the parent's documents and of one another, verified from their texts: SIGKILL in the
    finalizer, rerun, and the version is byte-identical to an uninterrupted build's."""
    _near_copies(workspace, random.Random(12), published=120, fresh=40, runs=1)
    reference = _clone(workspace, tmp_path / "reference")
    expected = build(reference, jobs=2, progress=False).version
    stats = expected.manifest["steps"]["near_dedup"]
    assert stats["texts_read_published"] == 20 and stats["rejected_near_duplicate"] == 30

    version = workspace.datasets / "overton" / "v0002"
    killed = [name for name, ready in [("finalizing", version.exists), ("writing", (version / "rejected").exists)]
              if _kill_when(workspace, ready)]
    assert killed and not (version / "manifest.json").exists()
    done = subprocess.run(_build_command(workspace), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _tree(version) == _tree(expected.path)


def _near_copies(workspace: Workspace, rng: random.Random, published: int = 60, fresh: int = 30,
                 runs: int = 2) -> None:
    """A published version, then ``runs`` raw runs of near copies of its documents, of one another, and others."""
    old = [{"id": f"old{i:03d}", "text": french_text(rng, 400)} for i in range(published)]
    write_jsonl(workspace.root.parent / "old.jsonl", old)
    ingest(workspace, [workspace.root.parent / "old.jsonl"], "speeches")
    build(workspace, jobs=1, progress=False)

    def variant(text: str) -> str:
        words = text.split()
        return " ".join(words[:-12] + french_text(rng, 12).split())

    texts = [french_text(rng, 400) for _ in range(fresh)]
    new = ([{"id": f"copy{i:03d}", "text": variant(old[i]["text"])} for i in range(0, published, 6)]
           + [{"id": f"new{i:03d}", "text": text} for i, text in enumerate(texts)]
           + [{"id": f"twin{i:03d}", "text": variant(texts[i])} for i in range(0, fresh, 4)])
    for run in range(runs):
        name = f"new{run or ''}.jsonl"
        write_jsonl(workspace.root.parent / name, new[run::runs])
        ingest(workspace, [workspace.root.parent / name], "speeches")


@pytest.mark.parametrize("mode", ["verified", "fineweb"])
def test_merging_by_many_key_ranges_and_chunks_builds_the_same_version(workspace: Workspace, tmp_path: Path,
                                                                      monkeypatch, mode: str):
    """The merge stage cut into one key range per document task, each read in chunks of 16 keys, finds the
    same pairs as one range per band: the same version, statistics included (in fineweb mode, the estimates
    come from signatures read by reference, published ones from the band stage's runs)."""
    _set_mode(workspace, mode)
    _near_copies(workspace, random.Random(13))
    reference = _clone(workspace, tmp_path / "reference")
    expected = build(reference, jobs=1, progress=False)
    bands = 20 if mode == "verified" else 14
    assert expected.tasks["near_buckets"]["tasks"] == bands
    monkeypatch.setattr("overton.pipelines.stages.work.TASKS_PER_RANGE", 1)
    monkeypatch.setattr(near_buckets, "ENTRIES_PER_CHUNK", 16)
    cut = build(workspace, jobs=1, progress=False)
    assert cut.tasks["near_buckets"]["tasks"] == bands * cut.tasks["documents"]["tasks"] >= bands * 2
    assert _tree(cut.version.path) == _tree(expected.version.path)
    stats = cut.version.manifest["steps"]["near_dedup"]
    assert stats["signatures_loaded"] == 60 and stats["rejected_near_duplicate"] == 18
    if mode == "fineweb":
        texts = {row["id"]: row["text"] for kind in ("data", "rejected")
                 for batch in cut.version.iter_batches(kind, columns=["id", "text"]) for row in batch.to_pylist()}
        hasher = MinHasher(MinHashParams(14, 8))
        for batch in cut.version.iter_batches("rejected"):
            for row in batch.to_pylist():
                detail = json.loads(row["reject_detail"])
                pair = hasher.signatures([texts[row["id"]], texts[detail["duplicate_of"]]])
                assert detail["jaccard"] == round(float(estimated_jaccard(*pair)), 4)


def test_a_build_killed_in_the_merge_stage_resumes_there_to_the_same_bytes(workspace: Workspace, tmp_path: Path):
    _near_copies(workspace, random.Random(14))
    expected = build(_clone(workspace, tmp_path / "reference"), jobs=2, progress=False).version
    work = workspace.state / "build" / "overton" / "v0002"
    assert _kill_when(workspace, lambda: any((work / "buckets").glob("t-*.json")))
    assert not (work / "near" / "t-00000.json").exists()
    done = subprocess.run(_build_command(workspace), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    tasks = json.loads(sorted(workspace.runs.glob("*-build.json"))[-1].read_text())["tasks"]
    assert tasks["near_bands"]["done_before"] == tasks["near_bands"]["tasks"]
    assert tasks["near_buckets"]["done_before"] >= 1 and tasks["near_clusters"]["done_before"] == 0
    assert _tree(workspace.datasets / "overton" / "v0002") == _tree(expected.path)


def test_the_cluster_stage_reads_only_the_documents_of_candidate_pairs(workspace: Workspace, monkeypatch):
    rng = random.Random(15)
    fresh = [french_text(rng, 400) for _ in range(40)]
    twins = [" ".join(text.split()[:-12] + french_text(rng, 12).split()) for text in fresh[:5]]
    records = [{"id": f"d{i:03d}", "text": text} for i, text in enumerate(fresh + twins)]
    write_jsonl(workspace.root.parent / "docs.jsonl", records)
    ingest(workspace, [workspace.root.parent / "docs.jsonl"], "speeches")
    read = []

    def live_rows(context, index, rows, columns):
        read.append((tuple(columns), rows.tolist()))
        return live_rows_of(context, index, rows, columns)

    live_rows_of = near_clusters._live_rows
    monkeypatch.setattr(near_clusters, "_live_rows", live_rows)
    version = build(workspace, jobs=1, progress=False).version
    stats = version.manifest["steps"]["near_dedup"]
    assert stats["signatures_computed"] == 45 and stats["candidate_pairs"] == 5
    assert stats["documents_loaded"] == stats["texts_read"] == 10 and stats["rejected_near_duplicate"] == 5
    loaded: dict[tuple[str, ...], list[int]] = {}
    for columns, rows in read:
        loaded[columns] = sorted(loaded.get(columns, []) + rows)
    assert loaded == {("id", "source", "published_at"): [0, 1, 2, 3, 4, 40, 41, 42, 43, 44],
                      ("text",): [0, 1, 2, 3, 4, 40, 41, 42, 43, 44]}
