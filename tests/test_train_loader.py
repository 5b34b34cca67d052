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


def test_token_ids_are_stored_once_and_a_seek_tokenizes_nothing(corpus, monkeypatch):
    _, _, tokenizer, cache = corpus
    s = stream(corpus)
    epoch = s._epoch(0, 0)  # builds the index and stores the ids, if no test did before
    assert tokenizer.dtype == np.uint16  # a vocabulary of 400: 2 bytes a token
    stored = sorted(cache.glob("tokens-*-text/*.u16"))
    assert len(stored) == len(epoch.entries)
    assert sum(p.stat().st_size for p in stored) == 2 * epoch.tokens  # every document once (weights 1)

    def refuse(texts):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(tokenizer, "encode", refuse)
    middle = epoch.sequences // 2
    fresh = stream(corpus)  # another stream: nothing in memory is shared, the ids are read from the cache
    assert np.array_equal(fresh.sequence(middle), s.sequence(middle))
    assert [len(fresh.sequence(g)) for g in (0, middle, epoch.sequences - 1)] == [SEQ] * 3


def test_ids_tokenized_in_small_pieces_are_the_same(corpus, tmp_path: Path, monkeypatch):
    from overton.train import loader

    whole = stream(corpus)
    monkeypatch.setattr(loader, "_ENCODE_BYTES", 3000)  # a few documents at a time, one if it is longer
    pieces = stream(corpus, cache=tmp_path / "cache")
    count = whole._epoch(0, 0).sequences
    assert pieces._epoch(0, 0).sequences == count
    assert all(np.array_equal(whole.sequence(g), pieces.sequence(g)) for g in range(count))


def test_a_damaged_ids_file_is_made_again(corpus, tmp_path: Path):
    cache = tmp_path / "cache"
    first = stream(corpus, cache=cache)
    wanted = range(0, first._epoch(0, 0).sequences, 11)
    expected = [first.sequence(g) for g in wanted]
    ids = max(cache.glob("tokens-*-text/*.u16"), key=lambda path: path.stat().st_size)
    size = ids.stat().st_size
    ids.write_bytes(ids.read_bytes()[:-2])  # one token short: a partial copy
    again = stream(corpus, cache=cache)
    assert all(np.array_equal(again.sequence(g), e) for g, e in zip(wanted, expected, strict=True))
    assert ids.stat().st_size == size


def test_one_epoch_decodes_back_to_every_document_once(corpus):
    import pyarrow.parquet as pq

    _, version, tokenizer, _ = corpus
    s = stream(corpus)
    epoch = s._epoch(0, 0)
    index = s._index(0)[1].to_pylist()
    texts = []  # each document's text, read from the version in epoch order
    for d in epoch.docs.tolist():
        row = index[d]
        entry = epoch.entries[row["file"]]
        with version.open_file(entry) as handle:
            group = pq.ParquetFile(handle).read_row_group(row["row_group"], columns=["text"])
        texts.append(group.column("text")[row["row"]].as_py())
    eos = tokenizer.eos_id
    tokens = np.array([t for ids in tokenizer.encode(texts) for t in (*ids, eos)])  # tokenized afresh
    assert len(tokens) == epoch.tokens and epoch.sequences == len(tokens) // SEQ
    packed = np.concatenate([s.sequence(g) for g in range(epoch.sequences)])
    assert np.array_equal(packed, tokens[: epoch.sequences * SEQ])  # sequences are the stream, cut
    labels = np.concatenate([s.example(g)[1] for g in range(epoch.sequences)])
    assert np.array_equal(labels, packed)  # text: every token counts in the loss
    decoded = tokenizer.decode(tokens.tolist()).split("<|endoftext|>")
    assert decoded[-1] == ""
    assert sorted(decoded[:-1]) == sorted(d["text"] for d in documents(version))


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
            assert int(first) not in seen and list(batch) == ["input_ids"]  # text: the labels are the ids
            seen[int(first)] = batch["input_ids"][0]
            assert int(first) in layout.rank_sequences(int(first) // layout.global_batch)
    assert sorted(seen) == list(range(steps * 6))
    reference = stream(corpus)
    assert all(torch.equal(seen[g], torch.from_numpy(reference.sequence(g).astype("int64"))) for g in seen)


def test_resuming_at_a_step_tokenizes_nothing_and_continues_exactly(corpus, monkeypatch):
    layout = Layout(world=1, rank=0, micro_batch=2, accumulation=2)
    uninterrupted = micro_batches(stream(corpus), layout, first_step=0)
    expected = [next(uninterrupted) for _ in range(40)]
    monkeypatch.setattr(corpus[2], "encode", None)  # the stored ids are read, never the text
    resumed = micro_batches(stream(corpus), layout, first_step=6)
    first_g, first_batch, _ = next(resumed)
    assert first_g == 24 and np.array_equal(first_batch, expected[12][1])
    for g, batch, labels in expected[13:]:
        got_g, got, got_labels = next(resumed)
        assert got_g == g and np.array_equal(got, batch) and np.array_equal(got_labels, labels)


def test_filters_weights_and_a_held_out_split(corpus):
    _, version, _, _ = corpus
    docs = documents(version)
    plain = stream(corpus)._epoch(0, 0)
    only_speeches = stream(corpus, selection=Selection(sources=("speeches",)))._epoch(0, 0)
    doubled = stream(corpus, selection=Selection(weights={"speeches": 2.0}))._epoch(0, 0)
    speech_tokens = only_speeches.tokens
    assert 0 < speech_tokens < plain.tokens
    assert doubled.tokens == plain.tokens + speech_tokens
    half = [stream(corpus, selection=Selection(weights={"speeches": 1.5}))._epoch(0, e).tokens for e in range(4)]
    assert len(set(half)) > 1 and all(plain.tokens < t < doubled.tokens for t in half)

    selection = Selection(eval_fraction=0.2)
    train = stream(corpus, selection=selection)._epoch(0, 0)
    held = stream(corpus, selection=selection, evaluation=True)._epoch(0, 0)
    train_rows, held_rows = set(train.docs.tolist()), set(held.docs.tolist())  # rows of the same index
    assert not train_rows & held_rows and len(held_rows) + len(train_rows) == len(docs)
    assert 0.1 * len(docs) < len(held_rows) < 0.3 * len(docs)

    recent = Selection(eval_since=date(2022, 1, 1))
    recent_docs = [d for d in docs if d["published_at"] and d["published_at"].date() >= date(2022, 1, 1)]
    held_recent = stream(corpus, selection=recent, evaluation=True)._epoch(0, 0)
    assert len(held_recent.docs) == len(recent_docs) > 0
    batches = list(eval_batches(stream(corpus, selection=selection, evaluation=True), world=2, rank=1,
                                micro_batch=2))
    assert batches and all(ids.shape == (2, SEQ) and labels is ids for ids, labels in batches)


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

    # the whole of v0002 from the same cache tokenizes nothing: its files are v0001's (hard links, the same
    # checksums), whose ids were stored by the first segment, and the new one, stored by the second
    encoded = []
    counting = Tokenizer(str(cache.parent / "tokenizer"))
    original = counting.encode
    counting.encode = lambda texts: encoded.extend(texts) or original(texts)
    whole = PackedStream(url, counting, SEQ, 7, cache, epochs=1)
    assert whole.versions["v0002"].files("data") and whole._epoch(0, 0).tokens > follow._epoch(0, 0).tokens
    assert encoded == [] and len(whole._index(0)[0]) == len(follow.segments[0].paths) + 1


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
