"""MinHash near-dedup: datasketch-exact signatures, known clusters found, incremental against old versions."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from datasketch import MinHash

from overton.corpus.config import Config, NearDedupConfig
from overton.corpus.workspace import Workspace
from overton.pipelines.build import build, near_dedup_step, parameters
from overton.pipelines.dedup_near import Candidates, NearDedup
from overton.pipelines.minhash import MinHasher, MinHashParams, estimated_jaccard, fold_words
from overton.spiders.ingest import ingest
from tests.conftest import french_text, write_jsonl

_RNG = random.Random(11)
VOCABULARY = ["".join(_RNG.choice("abcdefghijklmnopqrstuvwxyzéèàç") for _ in range(_RNG.randint(2, 10)))
              for _ in range(30000)]


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCABULARY) for _ in range(n)]


def test_folding_ignores_case_diacritics_and_punctuation():
    words, lengths = fold_words(["L'État, c'est NOUS !", "l etat c est nous", "", "..."])
    assert words.to_pylist() == ["l", "etat", "c", "est", "nous"] * 2
    assert lengths.tolist() == [5, 5, 0, 0]


def test_signatures_are_datasketch_minhash():
    hasher = MinHasher(MinHashParams())
    texts = [" ".join(_words(random.Random(i), n)) for i, n in enumerate([1, 3, 4, 5, 6, 50, 3000])]
    shingles, owner = hasher.shingles(texts)
    signatures = hasher.signatures(texts)
    for i in range(len(texts)):
        reference = MinHash(num_perm=112, seed=1, hashfunc=lambda x: x, scheme="affine32")
        reference.update_batch(shingles[owner == i].tolist())
        assert np.array_equal(reference.hashvalues, signatures[i])
    # n-grams: a text of n >= 5 words has n - 4 shingles, a shorter one exactly one
    assert np.bincount(owner).tolist() == [1, 1, 1, 1, 2, 46, 2996]


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
    step.index(Candidates(ids, signatures, ["web"] * len(ids), [published[i] for i in ids]),
               Candidates.empty(112))
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
    # the estimate recorded for a removed document is close to the true Jaccard
    errors = []
    for doc in ids[:200]:
        kept, _, estimate = step._decisions.get(doc, (doc, 1, 1.0))
        if kept != doc:
            errors.append(abs(estimate - _true_jaccard(step.hasher, texts[ids.index(doc)], texts[ids.index(kept)])))
    assert errors and max(errors) < 0.15 and float(np.mean(errors)) < 0.05


def test_unrelated_documents_are_never_paired():
    rng = random.Random(2)
    texts = [" ".join(_words(rng, rng.randint(30, 800))) for _ in range(2000)]
    texts += ["La séance est ouverte.", "La séance est levée."] * 3  # short, different, and exact copies
    ids = [f"d{i:05d}" for i in range(len(texts))]
    step = NearDedup(MinHashParams(), threshold=0.8)
    step.index(Candidates(ids, step.hasher.signatures(texts), ["web"] * len(ids), [None] * len(ids)),
               Candidates.empty(112))
    removed = [d for d in ids if not step.is_kept(d)]
    assert removed == ["d02002", "d02003", "d02004", "d02005"]  # only the copies of the two short lines


@pytest.mark.parametrize(("priority", "kept"), [([], "b:9"), (["b", "a"], "b:9"), (["a"], "a:3")])
def test_source_priority_comes_before_date_and_id(priority: list[str], kept: str):
    text = " ".join(_words(random.Random(4), 400))
    ids = ["a:3", "b:9", "a:2"]
    dates = [datetime(2021, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC), None]
    step = NearDedup(MinHashParams(), 0.8, source_priority=priority)
    step.index(Candidates(ids, step.hasher.signatures([text] * 3), ["a", "b", "a"], dates), Candidates.empty(112))
    # unlisted sources rank after listed ones; an unknown date comes after every known one
    assert [d for d in ids if step.is_kept(d)] == [kept]


def test_incremental_build_dedups_against_published_versions(workspace: Workspace):
    rng = random.Random(8)
    old = [{"id": f"old{i:02d}", "text": french_text(rng, 600), "published_at": "2022-01-01"}
           for i in range(30)]
    write_jsonl(workspace.root.parent / "old.jsonl", old)
    ingest(workspace, [workspace.root.parent / "old.jsonl"], "speeches")
    v1 = build(workspace, jobs=1, progress=False).version
    assert v1.manifest["steps"]["near_dedup"]["signatures_computed"] == 30

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
    rejected = {row["id"]: json.loads(row["reject_detail"]) for batch in v2.iter_batches("rejected")
                for row in batch.to_pylist()}
    # published documents win, even against an earlier date or a smaller id
    assert {k: v["duplicate_of"] for k, v in rejected.items()} == {
        "speeches:aaa-republished": "speeches:old03", "speeches:new-copy": "speeches:old17"}
    assert all(0.8 <= v["jaccard"] < 1 for v in rejected.values())
    kept = {row["id"]: row for batch in v2.iter_batches("data") for row in batch.to_pylist()}
    assert len(kept) == 31 and kept["speeches:new-original"]["dup_cluster_size"] == 1
    for entry in v1.manifest["files"]:  # unchanged shards are not rewritten
        assert os.path.samefile(v1.file_path(entry), v2.file_path(entry))
    index = workspace.state / "near_dedup" / "overton"
    assert sorted(p.name for p in index.iterdir()) == ["v0001.parquet", "v0002.parquet"]


def test_the_build_verifies_candidates_with_a_margin_below_the_threshold():
    """A pair just under 0.8 by its 112-slot estimate is found by default, and not without the margin."""
    rng = random.Random(21)
    original = _words(rng, 500)
    hasher = MinHasher(MinHashParams())
    for edits in range(5, 60):
        variant = list(original)
        for position in rng.sample(range(len(variant)), edits):
            variant[position] = rng.choice(VOCABULARY)
        texts = [" ".join(original), " ".join(variant)]
        signatures = hasher.signatures(texts)
        estimate = float(estimated_jaccard(signatures[0], signatures[1]))
        if 0.765 <= estimate < 0.795:
            break
    else:
        pytest.fail("no variant with an estimate in [0.765, 0.795)")
    found = {}
    for margin in (0.04, 0.0):
        step = near_dedup_step(parameters(Config(near_dedup=NearDedupConfig(margin=margin))))
        assert step.threshold == pytest.approx(0.8 - margin)
        step.index(Candidates(["a", "b"], signatures, ["web"] * 2, [None] * 2), Candidates.empty(112))
        found[margin] = not step.is_kept("b")
    assert found == {0.04: True, 0.0: False}
