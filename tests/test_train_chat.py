"""``[train] task = "chat"``: question-answer pairs packed whole, the loss on the answers only, exact resume,
and a tiny GPT-J trained on the sample's questions that learns to answer after the template's prompt."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from overton.corpus.config import CHAT_TEMPLATE, parse_config
from overton.corpus.dataset import Version
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.demo import sample_dir
from overton.pipelines.build import build
from overton.spiders.ingest import ingest
from overton.train.loader import IGNORE, Layout, PackedStream, Task, Tokenizer, micro_batches
from overton.train.tiny import EOS, train_tokenizer, write_gptj_config

BIN = Path(sys.executable).parent
CHAT = Task("chat")
REFUSED = r"'train.chat_template' must hold \{question\} once and then \{answer\} once, got"


def render(question: str, answer: str) -> tuple[str, str]:
    """(prompt, answer part) of the default template, written out here rather than taken from the code."""
    return f"=== QUESTION ===\n{question}\n=== REPONSE ===\n", answer


@pytest.fixture(scope="module")
def qa(tmp_path_factory) -> Path:
    """A workspace of the sample's questions as a JSON Lines file of question/answer records (the question lands
    in meta.question), beside the sample's encyclopedia articles (documents without a question), built; a
    tokenizer trained on it."""
    root = tmp_path_factory.mktemp("chat")
    with open(sample_dir() / "questions.csv", encoding="utf-8", newline="") as handle:
        records = [{"id": r["id"], "question": r["title"], "answer": r["text"], "published_at": r["published_at"],
                    "license": r["license"]} for r in csv.DictReader(handle)]
    lines = root / "qa.jsonl"
    lines.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    workspace = Workspace.init(root / "ws")
    ingest(workspace, [lines], "qa", field_map={"text": "answer"}, profile="qa")
    ingest(workspace, [sample_dir() / "encyclopedia.jsonl"], "encyclopedia", default_license="CC0-1.0",
           profile="encyclopedia")
    build(workspace, jobs=1, progress=False)
    texts = [row["text"] for row in documents(root / "ws")] + [r["question"] for r in records]
    train_tokenizer(root / "ws" / "tokenizer", texts, vocab_size=512)
    return root / "ws"


def documents(ws: Path) -> list[dict]:
    version = Version.open(ws / "datasets" / "overton")
    return [row for batch in version.iter_batches("data", columns=["id", "source", "text", "meta"])
            for row in batch.to_pylist()]


def pairs(ws: Path) -> dict[str, tuple[str, str]]:
    """id -> (question, answer) of every kept document that carries a question."""
    return {d["id"]: (json.loads(d["meta"])["question"], d["text"]) for d in documents(ws)
            if "question" in json.loads(d["meta"] or "{}")}


def stream(ws: Path, seq_len: int, **options) -> PackedStream:
    return PackedStream(str(ws / "datasets" / "overton"), Tokenizer(str(ws / "tokenizer")), seq_len, 5,
                        ws / "cache", task=CHAT, **options)


def epoch_pairs(s: PackedStream) -> list[tuple[str, str]]:
    """(question, answer) of the epoch's pairs in packing order, read back from the data files."""
    epoch, (entries, index) = s._epoch(0, 0), s._index(0)
    version = Version.open(Path(s.url))
    rows = index.to_pylist()
    out = []
    for d in epoch.docs.tolist():
        row = rows[d]
        with version.open_file(entries[row["file"]]) as handle:
            table = pq.ParquetFile(handle).read_row_group(row["row_group"], columns=["text", "meta"])
        out.append((json.loads(table.column("meta")[row["row"]].as_py())["question"],
                    table.column("text")[row["row"]].as_py()))
    return out


def test_only_documents_with_a_question_become_pairs(qa: Path):
    kept = pairs(qa)
    assert len(kept) == 24 and len(documents(qa)) > 24  # the articles have no question
    s = stream(qa, 1400)
    assert sorted(epoch_pairs(s)) == sorted(kept.values())  # every pair once per epoch


def test_the_loss_mask_is_exactly_the_prompt_and_pairs_are_never_split(qa: Path):
    s = stream(qa, 1400)  # two pairs of about 400 to 500 tokens fit, three do not
    tokenizer = s.tokenizer
    epoch = s._epoch(0, 0)
    expected = epoch_pairs(s)
    seen, per_sequence = 0, []
    for j in range(epoch.sequences):
        ids, labels = s.example(j)
        assert len(ids) == len(labels) == 1400
        end = int(np.flatnonzero(labels != IGNORE)[-1]) + 1  # after the last learned token: padding (EOS)
        assert (ids[end:] == tokenizer.eos_id).all()
        text = tokenizer.decode(ids[:end].tolist())
        held = text.split(EOS)
        assert held[-1] == ""  # the sequence ends with a whole pair (its EOS), never with part of one
        count = len(held) - 1
        mine = [render(*pair) for pair in expected[seen:seen + count]]
        assert held[:-1] == [prompt + answer for prompt, answer in mine]
        # the positions the loss skips decode to the prompts, and the learned ones to the answers and their EOS
        assert tokenizer.decode(ids[:end][labels[:end] == IGNORE].tolist()) == "".join(p for p, _ in mine)
        assert tokenizer.decode(labels[labels != IGNORE].tolist()) == "".join(a + EOS for _, a in mine)
        seen += count
        per_sequence.append(count)
    assert seen == len(expected) == 24  # every pair of the epoch, in order, none split
    assert max(per_sequence) >= 2  # packed: some sequences hold more than one pair
    assert epoch.truncated == epoch.skipped == 0


def test_a_pair_longer_than_seq_len_keeps_its_question_and_the_start_of_its_answer(qa: Path):
    tokenizer = Tokenizer(str(qa / "tokenizer"))
    prompts = sorted(len(tokenizer.encode([render(q, "")[0]])[0]) for q, _ in pairs(qa).values())
    seq_len = prompts[len(prompts) // 2] + 1  # the longer half of the questions leave no room for an answer
    s = stream(qa, seq_len)
    epoch = s._epoch(0, 0)
    skipped = sum(p >= seq_len for p in prompts)
    assert 0 < skipped < 24 and epoch.skipped == skipped and epoch.truncated == 24 - skipped
    assert epoch.sequences == 24 - skipped  # each kept pair fills a sequence of its own
    for j in range(epoch.sequences):
        ids, labels = s.example(j)
        learned = np.flatnonzero(labels != IGNORE)
        assert len(learned) >= 1 and learned[-1] == seq_len - 1  # the answer runs to the end: cut, no EOS
        assert tokenizer.eos_id not in ids.tolist()
        prompt = tokenizer.decode(ids[:learned[0]].tolist())
        assert prompt.startswith("=== QUESTION ===\n") and prompt.endswith("\n=== REPONSE ===\n")
    assert f"{24 - skipped} answers cut at seq_len {seq_len}, {skipped} pairs skipped" in s.describe()


def test_a_chat_stream_resumes_exactly(qa: Path):
    layout = Layout(world=1, rank=0, micro_batch=2, accumulation=2)
    uninterrupted = micro_batches(stream(qa, 700), layout, first_step=0)
    expected = [next(uninterrupted) for _ in range(30)]  # past the first epoch of 24 pairs
    resumed = micro_batches(stream(qa, 700), layout, first_step=5)
    for g, ids, labels in expected[10:]:
        got_g, got_ids, got_labels = next(resumed)
        assert got_g == g and np.array_equal(got_ids, ids) and np.array_equal(got_labels, labels)
    assert any((labels == IGNORE).any() and (labels != IGNORE).any() for _, _, labels in expected)


def test_text_and_chat_ids_are_stored_apart(qa: Path):
    text = PackedStream(str(qa / "datasets" / "overton"), Tokenizer(str(qa / "tokenizer")), 700, 5, qa / "cache")
    chat = stream(qa, 700)
    assert text._epoch(0, 0).tokens > chat._epoch(0, 0).tokens > 0  # all documents; the pairs only
    folders = sorted(p.name.split("-", 2)[2] for p in (qa / "cache").iterdir())
    assert folders[0].startswith("chat-") and folders[-1] == "text"
    other = Task("chat", "Q: {question}\nA: {answer}")
    assert other.key != CHAT.key  # another template, other ids


@pytest.mark.parametrize("template", ["{answer} {question}", "Q: {question}", "{question} {answer} {answer}"])
def test_a_template_without_question_then_answer_is_refused(template: str):
    with pytest.raises(UserError, match=REFUSED):
        parse_config(f"[train]\ntask = \"chat\"\nchat_template = {json.dumps(template)}\n")
    with pytest.raises(UserError, match=REFUSED):
        Task("chat", template)
    assert parse_config("[train]\ntask = \"chat\"\n").train.chat_template == CHAT_TEMPLATE


# ------------------------------------------------------------------------------------------- a real run


def test_a_chat_run_learns_to_answer_after_the_prompt(qa: Path, tmp_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws = tmp_path / "ws"
    shutil.copytree(qa, ws, ignore=shutil.ignore_patterns("cache", "runs"))
    write_gptj_config(ws / "tiny.json", vocab_size=512, eos_id=Tokenizer(str(ws / "tokenizer")).eos_id,
                      n_layer=2, n_embd=128, n_head=4, n_positions=256)
    settings = {"tokenizer": "tokenizer", "from_config": "tiny.json", "task": "chat", "seq_len": 256,
                "micro_batch": 4, "global_batch": 4, "steps": 30, "lr": 3e-3, "warmup_steps": 3, "log_every": 5,
                "eval_every": 0, "save_every": 30}  # answers cut at 256 tokens: 120 pairs seen in 30 steps
    (ws / "overton.toml").write_text("[train]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    done = subprocess.run([str(BIN / "overton"), "train", "-w", str(ws), "--quiet"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "chat: 24 question-answer pairs, " in done.stdout and "24 answers cut at seq_len 256" in done.stdout
    losses = [json.loads(line)["loss"] for line in (ws / "train" / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert losses[-1] < losses[0] - 1.5  # the loss is the answers' alone: about 6.2 (ln 512) at the start

    model = AutoModelForCausalLM.from_pretrained(ws / "train" / "model")
    tokenizer = AutoTokenizer.from_pretrained(ws / "train" / "model")
    known = pairs(qa)
    starts = {tokenizer(answer).input_ids[0] for _, answer in known.values()}  # the answers' first tokens
    assert len(starts) < 20  # of 512: a guess puts 5 x 20 / 512 = 0.2 of them in a top 5
    for question, _ in known.values():
        prompt = tokenizer(render(question, "")[0], return_tensors="pt").input_ids
        with torch.no_grad():
            likely = model(prompt).logits[0, -1].topk(5).indices.tolist()
            out = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        # after the prompt, the model's likeliest tokens are those the sample's answers begin with...
        assert sum(token in starts for token in likely) >= 3, [tokenizer.decode([t]) for t in likely]
        # ...and what it writes is not another prompt: the markers were never learned
        assert "===" not in tokenizer.decode(out[0, prompt.shape[1]:])

    # the same output trained as text, or with another template, would continue a different stream: refused
    toml = (ws / "overton.toml").read_text()
    for change in (('task = "chat"', 'task = "text"'), ('seq_len = 256', 'seq_len = 256\nchat_template = '
                                                        '"Q: {question}\\nR: {answer}"')):
        (ws / "overton.toml").write_text(toml.replace(*change))
        again = subprocess.run([str(BIN / "overton"), "train", "-w", str(ws), "--quiet"], capture_output=True,
                               text=True, timeout=600)
        assert again.returncode == 2 and "the checkpoint was trained with " in again.stderr, again.stderr
        assert again.stderr.count("\n") == 1
