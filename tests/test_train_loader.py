"""The streaming loader: one seeded global order, disjoint parts per rank and worker, exact seeking."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from overton.corpus.dataset import Version
from overton.train.loader import Layout, PackedStream, Selection, Tokenizer, eval_batches, micro_batches
from overton.train.tiny import train_tokenizer
from tests.train_fixtures import documents, sample_workspace

SEQ = 64


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    workspace = sample_workspace(root / "ws")
    version = Version.open(workspace.datasets / "overton")
    tokenizer = train_tokenizer(root / "tokenizer", [d["text"] for d in documents(version)])
    return workspace, version, Tokenizer(str(tokenizer)), root / "cache"


def stream(corpus, **kwargs) -> PackedStream:
    workspace, version, tokenizer, cache = corpus
    options = {"seq_len": SEQ, "seed": 7, "cache": cache, **kwargs}
    return PackedStream(str(version.path), tokenizer, **options)


def test_the_stream_is_deterministic_and_reshuffled_per_epoch(corpus):
    a, b, other = stream(corpus), stream(corpus), stream(corpus, seed=8)
    per_epoch = a._epoch(0, 0).sequences
    assert per_epoch > 100
    assert all(np.array_equal(a.sequence(g), b.sequence(g)) for g in range(0, 2 * per_epoch, 7))
    assert not np.array_equal(a.sequence(0), other.sequence(0))
    assert not np.array_equal(a.sequence(0), a.sequence(per_epoch))  # epoch 1 starts elsewhere
    assert all(len(a.sequence(g)) == SEQ for g in range(0, per_epoch, 5))


def test_a_seek_tokenizes_only_the_documents_it_needs(corpus, monkeypatch):
    from overton.train.loader import _Unit

    monkeypatch.setattr(_Unit, "CHUNK", 2)  # the sample's row groups hold about 20 documents
    s = stream(corpus)
    epoch = s._epoch(0, 0)
    middle = epoch.sequences // 2
    expected = stream(corpus).sequence(middle)  # another stream, so nothing is shared
    assert np.array_equal(s.sequence(middle), expected)
    [unit] = s._units.values()
    assert len(unit.texts) > 3 * unit.CHUNK  # a row group of many documents...
    assert 1 <= len(unit.chunks) <= 2  # ...of which one or two chunks were tokenized


def test_one_epoch_decodes_back_to_every_document_once(corpus):
    _, version, tokenizer, _ = corpus
    s = stream(corpus)
    epoch = s._epoch(0, 0)
    eos = tokenizer.eos_id
    tokens = np.array([t for u in range(len(epoch.units))  # each row group's documents tokenized in one call
                       for ids in tokenizer.encode(epoch.unit(u).texts.to_pylist()) for t in (*ids, eos)])
    assert len(tokens) == epoch.cumulative[-1] and epoch.sequences == len(tokens) // SEQ
    packed = np.concatenate([s.sequence(g) for g in range(epoch.sequences)])
    assert np.array_equal(packed, tokens[: epoch.sequences * SEQ])  # sequences are the stream, cut
    texts = tokenizer.decode(tokens.tolist()).split("<|endoftext|>")
    assert texts[-1] == ""
    assert sorted(texts[:-1]) == sorted(d["text"] for d in documents(version))


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 2])
def test_ranks_and_workers_share_the_stream_without_duplicate_or_gap(corpus, world: int, workers: int):
    import torch
    from torch.utils.data import DataLoader

    from overton.train.data import SequenceDataset

    steps, accumulation = 5, 6 // world
    seen = {}
    for rank in range(world):
        layout = Layout(world=world, rank=rank, micro_batch=1, accumulation=accumulation)
        dataset = SequenceDataset(lambda: stream(corpus), layout, first_step=0)
        loader = iter(DataLoader(dataset, batch_size=None, num_workers=workers))
        for _ in range(steps * accumulation):
            first, batch = next(loader)
            assert int(first) not in seen
            seen[int(first)] = batch[0]
            assert int(first) in layout.rank_sequences(int(first) // layout.global_batch)
    assert sorted(seen) == list(range(steps * 6))
    reference = stream(corpus)
    assert all(torch.equal(seen[g], torch.from_numpy(reference.sequence(g).astype("int64"))) for g in seen)


def test_resuming_at_a_step_reads_only_what_it_needs_and_continues_exactly(corpus, monkeypatch):
    layout = Layout(world=1, rank=0, micro_batch=2, accumulation=2)
    uninterrupted = micro_batches(stream(corpus), layout, first_step=0)
    expected = [next(uninterrupted) for _ in range(40)]
    resumed_stream = stream(corpus)
    reads = []
    original = type(resumed_stream._epoch(0, 0)).unit

    def counting(self, u):
        if (id(self), u) not in self.stream._units:
            reads.append(u)
        return original(self, u)

    monkeypatch.setattr(type(resumed_stream._epoch(0, 0)), "unit", counting)
    resumed = micro_batches(resumed_stream, layout, first_step=6)
    first_g, first_batch = next(resumed)
    assert first_g == 24 and np.array_equal(first_batch, expected[12][1])
    assert len(reads) <= 2  # the row groups holding sequences 24 and 25, nothing before them
    for g, batch in expected[13:]:
        got_g, got = next(resumed)
        assert got_g == g and np.array_equal(got, batch)


def test_filters_weights_and_a_held_out_split(corpus):
    _, version, _, _ = corpus
    docs = documents(version)
    plain = stream(corpus)._epoch(0, 0)
    only_speeches = stream(corpus, selection=Selection(sources=("speeches",)))._epoch(0, 0)
    doubled = stream(corpus, selection=Selection(weights={"speeches": 2.0}))._epoch(0, 0)
    speech_tokens = int(only_speeches.cumulative[-1])
    assert 0 < speech_tokens < int(plain.cumulative[-1])
    assert int(doubled.cumulative[-1]) == int(plain.cumulative[-1]) + speech_tokens
    half = [stream(corpus, selection=Selection(weights={"speeches": 1.5}))._epoch(0, e).cumulative[-1]
            for e in range(4)]
    assert len(set(half)) > 1 and all(plain.cumulative[-1] < t < doubled.cumulative[-1] for t in half)

    selection = Selection(eval_fraction=0.2)
    train = stream(corpus, selection=selection)._epoch(0, 0)
    held = stream(corpus, selection=selection, evaluation=True)._epoch(0, 0)
    train_rows = {(f, g, r) for f, g, rows, _ in train.units for r in rows.tolist()}
    held_rows = {(f, g, r) for f, g, rows, _ in held.units for r in rows.tolist()}
    assert not train_rows & held_rows and len(held_rows) + len(train_rows) == len(docs)
    assert 0.1 * len(docs) < len(held_rows) < 0.3 * len(docs)

    recent = Selection(eval_since=date(2022, 1, 1))
    recent_docs = [d for d in docs if d["published_at"] and d["published_at"].date() >= date(2022, 1, 1)]
    held_recent = stream(corpus, selection=recent, evaluation=True)._epoch(0, 0)
    assert sum(len(rows) for _, _, rows, _ in held_recent.units) == len(recent_docs) > 0
    batches = list(eval_batches(stream(corpus, selection=selection, evaluation=True), world=2, rank=1,
                                micro_batch=2))
    assert batches and all(b.shape == (2, SEQ) for b in batches)


def test_follow_continues_with_the_documents_of_newer_versions(corpus, tmp_path: Path):
    from overton.pipelines.build import build
    from overton.spiders.ingest import ingest
    from tests.conftest import french_text, write_jsonl

    workspace, version, tokenizer, cache = corpus
    import random
    import shutil

    local = tmp_path / "ws"
    shutil.copytree(workspace.root, local)
    from overton.corpus.workspace import Workspace

    ws = Workspace.open(local)
    url = str(ws.datasets / "overton")
    follow = PackedStream(url, tokenizer, SEQ, 7, cache, epochs=1, follow=True, poll_seconds=0.01)
    first = follow._epoch(0, 0).sequences
    head = [follow.sequence(g) for g in range(first)]
    rng = random.Random(3)
    new = [{"id": f"n{i}", "text": french_text(rng, 300)} for i in range(4)]
    ingest(ws, [write_jsonl(tmp_path / "new.jsonl", new)], "web")
    build(ws, jobs=1, progress=False)
    after = follow.sequence(first)  # the next sequence comes from the new documents
    decoded = tokenizer.decode(after.tolist())
    pieces = [piece for piece in decoded.split("<|endoftext|>") if piece]
    assert pieces and all(any(piece in doc["text"] for doc in new) for piece in pieces)
    assert [s["version"] for s in follow.state_segments()] == ["v0001", "v0002"]
    assert len(follow.segments[1].paths) == 1  # only the new file, not the parent's
    again = PackedStream(url, tokenizer, SEQ, 7, cache, epochs=1, follow=True, segments=follow.state_segments())
    assert np.array_equal(again.sequence(first), after) and np.array_equal(again.sequence(3), head[3])


def test_a_dataset_behind_an_fsspec_url_gives_the_same_stream(corpus, tmp_path: Path):
    import fsspec

    _, version, _, _ = corpus
    memory = fsspec.filesystem("memory")
    for path in version.path.rglob("*"):
        if path.is_file():
            memory.pipe(f"/datasets/overton/{version.path.name}/{path.relative_to(version.path).as_posix()}",
                        path.read_bytes())
    local = stream(corpus)
    # its own token index (another cache folder), so every byte is read through fsspec
    remote = PackedStream("memory://datasets/overton", local.tokenizer, SEQ, 7, tmp_path / "remote-cache")
    per_epoch = local._epoch(0, 0).sequences
    assert remote._epoch(0, 0).sequences == per_epoch
    assert all(np.array_equal(local.sequence(g), remote.sequence(g)) for g in range(0, per_epoch, 3))
