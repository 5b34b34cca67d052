"""``overton generate`` and ``overton evaluate`` on a tiny GPT-J that ``overton train`` fine-tuned on the sample.

The numbers are checked against the model's own loss (``labels=``) computed by hand; the fine-tuned model
must beat its untrained start (the same seeded initialisation ``overton train`` starts from) on the
sample and on the real GPTJ-Overton validation split.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from overton.cli import main
from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.train.evaluate import Score, evaluate, windows
from overton.train.generate import Sampling, chat_prompt, generate
from overton.train.loader import Tokenizer
from overton.train.model import export, load_model
from overton.train.pretrained import load
from overton.train.sources import selection
from overton.train.tiny import train_tokenizer, write_gptj_config
from tests.conftest import shared_file
from tests.train_fixtures import documents, sample_workspace

BIN = Path(sys.executable).parent
CPU = torch.device("cpu")
PROMPT = "Mesdames et Messieurs,"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A workspace where ``overton train`` fine-tuned a tiny GPT-J for 30 steps (checkpoints at 20 and 30), and
    ``base/``: the untrained start of that run, exported."""
    root = tmp_path_factory.mktemp("generate") / "ws"
    workspace = sample_workspace(root)
    texts = [d["text"] for d in documents(Version.open(workspace.datasets / "overton"))]
    tokenizer = train_tokenizer(root / "tokenizer", texts)
    write_gptj_config(root / "tiny.json", vocab_size=400, eos_id=Tokenizer(str(tokenizer)).eos_id)
    write_settings(root)
    done = subprocess.run([str(BIN / "overton"), "train", "-w", str(root), "--quiet"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    start = load_model("", str(root / "tiny.json"), 0, 400)  # what overton train began from: seed 0
    export(start, root / "base", torch.float32, str(tokenizer))
    return root


def write_settings(root: Path, **changes) -> None:
    """The workspace's [train] settings: a tiny GPT-J trained 30 steps from tiny.json, and ``changes``."""
    values = {"tokenizer": "tokenizer", "from_config": "tiny.json", "seq_len": 64, "lr": 3e-3, "warmup_steps": 3,
              "steps": 30, "save_every": 20, "log_every": 20, "eval_every": 0, "micro_batch": 4, "global_batch": 8,
              "eval_fraction": 0.1, "chat_template": "Q: {question}\nR: {answer}", **changes}
    (root / "overton.toml").write_text("[train]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))


def overton(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "overton"), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def table(stdout: str) -> dict[str, dict[str, float]]:
    """``overton evaluate``'s rows: label -> tokens, loss, perplexity, bits/byte."""
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"(.+?)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if match:
            rows[match[1]] = {"tokens": int(match[2].replace(",", "")), "loss": float(match[3]),
                              "perplexity": float(match[4]), "bits_per_byte": float(match[5])}
    return rows


# ------------------------------------------------------------------------------------------- evaluate


def test_windows_score_every_token_once_with_the_promised_context():
    rng = random.Random(7)
    for _ in range(300):
        n, context = rng.randint(2, 300), rng.randint(2, 64)
        stride = rng.randint(1, context - 1)
        seen, begin = [], 0
        for number, (tokens, scored) in enumerate(windows(list(range(n)), context, stride)):
            assert 1 <= scored <= len(tokens) - 1 and len(tokens) <= context
            first = tokens[len(tokens) - scored]
            seen.extend(tokens[len(tokens) - scored:])
            assert tokens[0] == begin
            if number:  # after the first window every scored token has context - stride tokens before it, or more
                assert first - tokens[0] >= context - stride
            begin += stride
        assert seen == list(range(1, n)), (n, context, stride)


def test_scores_match_the_models_own_loss(trained):
    """One window: the model's mean loss over the text's tokens after EOS. Many windows: the sum of each window's
    own loss on the tokens it scores. Batching (right padding) changes nothing."""
    pretrained = load(str(trained / "train" / "model"), CPU)
    model, eos = pretrained.model, pretrained.eos_id
    text = "Mesdames et Messieurs les députés, la séance est ouverte à quinze heures."
    ids = [eos, *pretrained.tokenizer(text, add_special_tokens=False).input_ids]
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    score = evaluate(pretrained, [text], context=len(ids), stride=len(ids) // 2)
    assert (score.tokens, score.bytes, score.texts) == (len(ids) - 1, len(text.encode()), 1)
    assert score.loss == pytest.approx(loss, rel=1e-5)
    assert score.perplexity == pytest.approx(math.exp(loss), rel=1e-5)
    assert score.bits_per_byte == pytest.approx(loss * (len(ids) - 1) / math.log(2) / len(text.encode()), rel=1e-5)

    long = " ".join(d["text"] for d in documents(Version.open(trained / "datasets" / "overton"))[:4])
    ids = [eos, *pretrained.tokenizer(long, add_special_tokens=False).input_ids]
    context, stride = 48, 47  # windows [0, 48), [47, 95), ... each scoring what the one before did not
    by_hand, begin = 0.0, 0
    with torch.no_grad():
        while begin + 1 < len(ids):
            window = torch.tensor([ids[begin:begin + context]])
            labels = window.clone()
            labels[0, 0] = -100  # the first token of a window is context only (the EOS, or the previous window's last)
            scored = int((labels[0, 1:] != -100).sum())
            by_hand += model(input_ids=window, labels=labels).loss.item() * scored
            begin += stride
    for batch in (1, 5):
        score = evaluate(pretrained, [long], context, stride, batch_size=batch)
        assert score.tokens == len(ids) - 1
        assert score.nll == pytest.approx(by_hand, rel=1e-5)


def test_finetuned_beats_its_untrained_start_on_the_sample(trained):
    done = overton("evaluate", str(trained / "train" / "model"), "--dataset", str(trained / "datasets" / "overton"),
                   "--limit", "20", "--compare", str(trained / "base"), "--context", "64", "--stride", "63", "--batch",
                   "64", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout)
    model, base = rows[str(trained / "train" / "model")], rows[f"base: {trained / 'base'}"]
    assert model["tokens"] == base["tokens"] > 2000
    # an untrained GPT-J predicts nearly uniformly: loss ln(400) = 5.99 nats/token
    assert base["loss"] == pytest.approx(math.log(400), abs=0.1)
    assert model["loss"] < base["loss"] - 1.0
    assert model["bits_per_byte"] < base["bits_per_byte"]
    difference = float(re.search(r"difference: ([-+][\d.]+) bits per byte", done.stdout)[1])
    assert difference == pytest.approx(model["bits_per_byte"] - base["bits_per_byte"], abs=2e-4)
    assert f"perplexity {base['perplexity']:.2f} -> {model['perplexity']:.2f}" in done.stdout


def test_finetuned_reads_the_real_validation_split_better_than_chance(trained):
    """On real speeches it never saw, the tiny model (400 tokens, trained on the sample for 30 steps) beats a
    uniform guess over its vocabulary, log2(400) bits per token, by more than 15 %."""
    validation = shared_file("viepublique/gptj-overton-validation.txt")
    pretrained = load(str(trained / "train"), CPU)
    assert pretrained.label == f"{trained / 'train' / 'checkpoints' / 'step-000030'} (step 30)"
    score = evaluate(pretrained, [validation.read_text(encoding="utf-8")], context=64, stride=63, batch_size=64)
    assert (score.texts, score.bytes) == (1, 301_611)
    uniform = math.log2(400) * score.tokens / score.bytes
    assert score.bits_per_byte < 0.85 * uniform
    assert score.loss < math.log(400) - 1.0


def test_held_out_documents_sources_and_limit(trained, capsys):
    version = Version.open(trained / "datasets" / "overton")
    docs = [row for batch in version.iter_batches("data", ["id", "source", "published_at", "speakers", "text"])
            for row in batch.to_pylist()]
    held = selection(Workspace.open(trained).config().train).masks(pa.Table.from_pylist(docs))[1]
    assert 0 < held.sum() < len(docs)
    model = str(trained / "train" / "model")
    assert main(["evaluate", model, "--dataset", str(version.path), "--held-out", "-w", str(trained), "--quiet"]) == 0
    expected = sum(len(d["text"].encode()) for d, h in zip(docs, held, strict=True) if h)
    assert capsys.readouterr().out.startswith(f"{held.sum():,} text(s), {expected:,} bytes")
    assert main(["evaluate", model, "--dataset", str(version.path), "--sources", "questions", "--limit", "3",
                 "--quiet"]) == 0
    first = [d for d in docs if d["source"] == "questions"][:3]
    assert capsys.readouterr().out.startswith(f"3 text(s), {sum(len(d['text'].encode()) for d in first):,} bytes")


@pytest.mark.parametrize("args, message", [
    (["--text", "missing.txt"], "--text missing.txt: No such file or directory"),
    (["--dataset", "nowhere"], "nowhere: no such dataset folder"),
    (["--dataset", "datasets/overton", "--sources", "senat"], "--sources: senat not in"),
    (["--dataset", "datasets/overton", "--held-out", "-w", "base"], "base is not an overton workspace"),
    (["--text", "tiny.json", "--limit", "2"], "--sources and --limit choose documents of a --dataset"),
    (["--text", "tiny.json", "--context", "999"], "--context 999: between 2 and the model's 256 positions"),
    (["--text", "tiny.json", "--context", "64", "--stride", "64"], "--stride 64: between 1 and --context - 1"),
])
def test_evaluate_mistakes_are_one_line(trained, args, message, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    assert main(["evaluate", "train/model", *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("overton: error: ") and message in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------- generate


class Recorder:
    """A stdout that keeps each write apart, to see the text arrive in pieces."""

    def __init__(self):
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        if text:
            self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_generate_streams_seeded_samples(trained, monkeypatch):
    pretrained = load(str(trained / "train" / "model"), CPU)
    outputs = []
    for seed in (1, 1, 2):
        recorder = Recorder()
        monkeypatch.setattr(sys, "stdout", recorder)
        text = generate(pretrained, PROMPT, Sampling(max_new_tokens=40, seed=seed))
        monkeypatch.undo()
        assert len(recorder.writes) > 3  # printed as it came, not at the end
        assert "".join(recorder.writes) == PROMPT + text + "\n"
        outputs.append(text)
    assert outputs[0] == outputs[1] != outputs[2]
    assert len(pretrained.tokenizer(outputs[0]).input_ids) >= 20


def test_greedy_generation_is_the_argmax_chain(trained, capsys):
    pretrained = load(str(trained / "train" / "model"), CPU)
    ids = [pretrained.eos_id, *pretrained.tokenizer(PROMPT, add_special_tokens=False).input_ids]
    with torch.no_grad():
        for _ in range(25):
            following = int(pretrained.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if following == pretrained.eos_id:
                break
            ids.append(following)
    expected = pretrained.tokenizer.decode(ids[1:], skip_special_tokens=True)
    text = generate(pretrained, PROMPT, Sampling(max_new_tokens=25, temperature=0))
    assert PROMPT + text == expected
    assert capsys.readouterr().out == expected + "\n"


def test_export_checkpoint_and_training_output_write_the_same(trained, capsys):
    greedy = ["--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "30"]
    exported = overton("generate", str(trained / "train" / "model"), *greedy)  # the installed command
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(PROMPT) and len(exported.stdout) > len(PROMPT) + 10
    for path in (trained / "train", trained / "train" / "checkpoints" / "step-000030"):
        assert main(["generate", str(path), *greedy]) == 0
        assert capsys.readouterr().out == exported.stdout
    assert main(["generate", str(trained / "train" / "checkpoints" / "step-000020"), *greedy]) == 0
    assert capsys.readouterr().out != exported.stdout


def test_a_damaged_checkpoint_is_refused_and_the_output_falls_back(trained, tmp_path, capsys):
    ws = tmp_path / "ws"
    shutil.copytree(trained, ws, ignore=shutil.ignore_patterns("cache", "runs"))
    newest = max((ws / "train" / "checkpoints" / "step-000030").iterdir(), key=lambda path: path.stat().st_size)
    data = bytearray(newest.read_bytes())  # the model's weights (and the optimizer's moments)
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    greedy = ["--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "30"]
    assert main(["generate", str(newest.parent), *greedy]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"overton: error: {newest.parent}: {newest.name}: checksum differs from COMMITTED.json\n"
    assert main(["evaluate", str(ws / "train"), "--text", str(ws / "tiny.json"), "--quiet"]) == 0
    assert f"{ws / 'train' / 'checkpoints' / 'step-000020'} (step 20)" in capsys.readouterr().out
    (ws / "overton.toml").write_text((ws / "overton.toml").read_text().replace('"tokenizer"', '"base"'))
    assert main(["generate", str(ws / "train" / "checkpoints" / "step-000020"), *greedy]) == 2
    assert "trained with another tokenizer than [train] tokenizer" in capsys.readouterr().err


def test_chat_wraps_the_prompt_in_the_workspace_template(trained, capsys):
    question = "Quel est le budget de la commune ?"
    assert chat_prompt("Q: {question}\nR: {answer}", question) == f"Q: {question}\nR: "
    greedy = ["--temperature", "0", "--max-new-tokens", "20"]
    assert main(["generate", str(trained / "train"), "--prompt", question, "--chat", *greedy]) == 0
    answer = capsys.readouterr().out
    assert main(["generate", str(trained / "train"), "--prompt", f"Q: {question}\nR: ", *greedy]) == 0
    assert capsys.readouterr().out == f"Q: {question}\nR: {answer}"
    # an exported model, run outside any workspace: the default template
    assert main(["generate", str(trained / "base"), "--prompt", question, "--chat", *greedy]) == 0
    answer = capsys.readouterr().out
    prompt = f"=== QUESTION ===\n{question}\n=== REPONSE ===\n"
    assert main(["generate", str(trained / "base"), "--prompt", prompt, *greedy]) == 0
    assert capsys.readouterr().out == prompt + answer


@pytest.mark.parametrize("args, message", [
    (["nowhere", "--prompt", "x"], "nowhere: no such model folder"),
    (["tokenizer", "--prompt", "x"], "tokenizer: neither a model folder (no config.json)"),
    (["train/model", "--prompt", "x", "--max-new-tokens", "300"], "exceed the 256 positions of the model"),
    (["train/model", "--prompt", "x", "--device", "cuda"], "--device cuda: no GPU is visible"),
])
def test_generate_mistakes_are_one_line(trained, args, message, monkeypatch, capsys):
    monkeypatch.chdir(trained)
    assert main(["generate", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("overton: error: ")
    assert message in captured.err and captured.err.count("\n") == 1


def test_score_is_the_sum_it_reports():
    score = Score(nll=100 * math.log(2), tokens=50, bytes=25, texts=2)
    assert (score.bits_per_byte, score.loss) == (4.0, 2 * math.log(2))
    assert score.perplexity == pytest.approx(4.0)


def test_lora_checkpoints_and_adapters_load_merged_into_their_base(trained, tmp_path, capsys):
    """A LoRA run on the exported untrained start: its checkpoint (adapters only) merged into the base, its peft
    adapter folder and its merged export write and score the same; another base is refused."""
    ws = tmp_path / "ws"
    shutil.copytree(trained, ws, ignore=shutil.ignore_patterns("train", "runs"))
    lora = {"from_config": "", "model": "base", "strategy": "lora", "steps": 4, "save_every": 4}
    write_settings(ws, **lora)
    done = subprocess.run([str(BIN / "overton"), "train", "-w", str(ws), "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert (ws / "train" / "checkpoints" / "step-000004" / "lora.json").is_file()
    greedy = ["--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "20"]
    outputs, rows = [], []
    for path in (ws / "train", ws / "train" / "adapter", ws / "train" / "model"):
        assert main(["generate", str(path), *greedy]) == 0
        outputs.append(capsys.readouterr().out)
        assert main(["evaluate", str(path), "--text", str(ws / "tiny.json"), "--quiet"]) == 0
        rows.append(next(iter(table(capsys.readouterr().out).values())))
    assert outputs[0] == outputs[1] == outputs[2]
    for row in rows[1:]:
        assert row["tokens"] == rows[0]["tokens"] and row["bits_per_byte"] == pytest.approx(rows[0]["bits_per_byte"],
                                                                                             abs=2e-4)
    start = load(str(trained / "base"), CPU)  # the adapters trained: the merged model is not the base any more
    assert evaluate(start, [(ws / "tiny.json").read_text()], 256, 128).bits_per_byte != rows[0]["bits_per_byte"]
    shutil.copytree(ws / "train" / "model", ws / "other")  # same shape, other weights
    write_settings(ws, **{**lora, "model": "other"})
    assert main(["generate", str(ws / "train"), *greedy]) == 2
    assert "its LoRA adapters were trained on the base" in capsys.readouterr().err


def test_a_checkpoint_sharded_over_two_processes_loads_whole(trained, tmp_path, capsys):
    """FSDP under torchrun: each process wrote its shard of every weight; the checkpoint loads in one process
    and writes and scores as the export does."""
    ws = tmp_path / "ws"
    shutil.copytree(trained, ws, ignore=shutil.ignore_patterns("train", "runs", "base"))
    write_settings(ws, strategy="fsdp", steps=4, save_every=4)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "overton", "train", "-w", str(ws), "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    checkpoint = ws / "train" / "checkpoints" / "step-000004"
    assert {p.name for p in checkpoint.glob("*.distcp")} == {"__0_0.distcp", "__1_0.distcp"}
    greedy = ["--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "20"]
    outputs, rows = [], []
    for path in (checkpoint, ws / "train" / "model"):
        assert main(["generate", str(path), *greedy]) == 0
        outputs.append(capsys.readouterr().out)
        assert main(["evaluate", str(path), "--text", str(ws / "tiny.json"), "--quiet"]) == 0
        rows.append(next(iter(table(capsys.readouterr().out).values())))
    assert outputs[0] == outputs[1]
    assert rows[0] == rows[1]
