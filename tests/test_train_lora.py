"""``[train] strategy = "lora"`` for real: LoRA adapters (peft) trained on a tiny pretrained GPT-J, killed, resumed.

The base is a folder saved with ``save_pretrained`` (as fr-boris or gpt-j-6b would be); training runs on the
CPU in fp32 (bf16 base weights are for GPUs), so merged and unmerged models agree to fp32 rounding and a
resumed run must end with bit-identical adapters.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from overton.cli import main
from overton.corpus.dataset import Version
from overton.train.checkpoint import EXTRA_STATE_BYTES, MARKER, TENSOR_OVERHEAD_BYTES, checkpoint_bytes, human_bytes
from overton.train.loader import Tokenizer
from overton.train.tiny import train_tokenizer, write_gptj_config
from tests.train_fixtures import documents, sample_workspace

BIN = Path(sys.executable).parent
SETTINGS = {"tokenizer": "tokenizer", "model": "base", "strategy": "lora", "seq_len": 64, "lr": 1e-2,
            "warmup_steps": 2, "steps": 16, "save_every": 4, "log_every": 1, "eval_every": 0, "micro_batch": 2,
            "global_batch": 4}
LORA = {"rank": 4, "alpha": 8, "dropout": 0.05}  # dropout: resuming exactly needs the RNG states too
TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out")
# 2 blocks of width 64 (fc_in 64 -> 256): r x (in + out) per projection
ADAPTER_PARAMS = 2 * 4 * (4 * (64 + 64) + 2 * (64 + 256))
ADAPTER_TENSORS = 2 * 6 * 2  # lora_A and lora_B of 6 projections in 2 blocks
SCALE = 8 / 4  # alpha / rank


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The sample built, a tokenizer, and two tiny pretrained GPT-J folders of one shape: base/ and other/."""
    from transformers import GPTJConfig, GPTJForCausalLM

    root = tmp_path_factory.mktemp("lora") / "base"
    workspace = sample_workspace(root)
    texts = [d["text"] for d in documents(Version.open(workspace.datasets / "overton"))]
    tokenizer = train_tokenizer(root / "tokenizer", texts)
    config = write_gptj_config(root / "tiny.json", vocab_size=400, eos_id=Tokenizer(str(tokenizer)).eos_id)
    for name, seed in (("base", 1), ("other", 2)):
        torch.manual_seed(seed)
        GPTJForCausalLM(GPTJConfig.from_json_file(config)).save_pretrained(root / name)
    return root


def workspace(base: Path, where: Path, lora: dict | None = None, **train) -> Path:
    """A copy of ``base`` whose overton.toml has these [train] and [train.lora] settings (and the ones above)."""
    shutil.copytree(base, where, ignore=shutil.ignore_patterns("runs", "train"))
    lines = ["[train]"] + [f"{key} = {json.dumps(value)}" for key, value in {**SETTINGS, **train}.items()]
    lines += ["[train.lora]"] + [f"{key} = {json.dumps(value)}" for key, value in {**LORA, **(lora or {})}.items()]
    (where / "overton.toml").write_text("\n".join(lines) + "\n")
    return where


def command(ws: Path) -> list[str]:
    return [str(BIN / "overton"), "train", "-w", str(ws), "--quiet"]


def run(ws: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(ws), capture_output=True, text=True, timeout=600)


def losses(ws: Path) -> dict[int, float]:
    records = (json.loads(line) for line in (ws / "train" / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(folder / name)


def committed(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "train" / "checkpoints").iterdir())


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> tuple[Path, str]:
    """The uninterrupted run (merge = true) that the resumed one must reproduce; its workspace and output."""
    ws = workspace(base, tmp_path_factory.mktemp("reference") / "ws")
    done = run(ws)
    assert done.returncode == 0, done.stderr
    return ws, done.stdout


# ------------------------------------------------------------------------------------------- training


def test_the_adapters_train_their_checkpoints_are_small_and_both_exports_load(base, reference):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws, out = reference
    assert f"lora (r=4, alpha=8 on {','.join(TARGETS)}: {ADAPTER_PARAMS:,} adapter parameters trained, the base " \
           "frozen)" in out
    assert f"done: 16 steps; model exported to {ws}/train/model" in out
    trained = losses(ws)
    assert sorted(trained) == list(range(1, 17)) and trained[16] < trained[1] - 0.08  # 5.995 -> 5.870 measured

    # a checkpoint is the adapters, their AdamW moments and the small state: 12 B per adapter parameter
    expected = checkpoint_bytes(ADAPTER_PARAMS, n_tensors=4 * ADAPTER_TENSORS)
    assert re.search(rf"^checkpoints: {re.escape(human_bytes(expected))} each, keeping 2;", out, re.MULTILINE)
    assert committed(ws) == ["step-000012", "step-000016"]
    newest = ws / "train" / "checkpoints" / "step-000016"
    marker = json.loads((newest / MARKER).read_text())
    assert {f["path"] for f in marker["files"]} == {".metadata", "__0_0.distcp", "lora.json", "rng-rank0.pt",
                                                    "scheduler.pt"}
    state = (newest / "__0_0.distcp").stat().st_size
    # fp32 weights and two moments (12 B each), plus DCP's per-tensor records (1.8 kB measured) for 24 weights,
    # 48 moments and 24 step counters; the base (150,928 parameters, 1.8 MB in fp32 alone) is not there
    assert 12 * ADAPTER_PARAMS <= state <= 12 * ADAPTER_PARAMS + 4 * ADAPTER_TENSORS * 2048
    assert marker["bytes"] < 12 * ADAPTER_PARAMS + 4 * ADAPTER_TENSORS * 2048 + 64 * 1024
    record = json.loads((newest / "lora.json").read_text())
    assert record["base"]["path"] == str(ws / "base") and len(record["base"]["fingerprint"]) == 64
    assert (record["rank"], record["alpha"], record["target_modules"]) == (4, 8, list(TARGETS))

    # the adapters: peft's folder, loaded on the base; every B moved away from its zero start
    adapter = tensors(ws / "train" / "adapter", "adapter_model.safetensors")
    assert len(adapter) == ADAPTER_TENSORS and sum(t.numel() for t in adapter.values()) == ADAPTER_PARAMS
    assert all(t.abs().max() > 0 for k, t in adapter.items() if "lora_B" in k)
    config = json.loads((ws / "train" / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (4, 8, sorted(TARGETS))

    # the merged model: the base's tensors bit for bit where no adapter is, W + alpha/r B A where one is
    base_weights = tensors(ws / "base", "model.safetensors")
    merged = tensors(ws / "train" / "model", "model.safetensors")
    assert merged.keys() == base_weights.keys()
    for name, weight in merged.items():
        module = name.removesuffix(".weight")
        if module.rsplit(".", 1)[-1] in TARGETS and name.endswith(".weight"):
            a = adapter[f"base_model.model.{module}.lora_A.weight"]
            b = adapter[f"base_model.model.{module}.lora_B.weight"]
            assert torch.allclose(weight, base_weights[name] + SCALE * b @ a, rtol=0, atol=1e-6), name
            assert not torch.equal(weight, base_weights[name])
        else:
            assert torch.equal(weight, base_weights[name]), name

    # merged and unmerged give the same logits, to fp32 rounding
    tokenizer = AutoTokenizer.from_pretrained(ws / "train" / "model")
    ids = torch.tensor([tokenizer("Le gouvernement a présenté le projet de loi sur").input_ids])
    merged_model = AutoModelForCausalLM.from_pretrained(ws / "train" / "model").eval()
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(ws / "base"),
                                         ws / "train" / "adapter").eval()
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(ws / "base").eval()(ids).logits
        a, b = merged_model(ids).logits, unmerged(ids).logits
    assert (a - b).abs().max() < 1e-5
    assert (a - plain).abs().max() > 1e-2  # the adapters change what the model says
    text = tokenizer.decode(merged_model.generate(ids, max_new_tokens=8, do_sample=False,
                                                  pad_token_id=tokenizer.eos_token_id)[0])
    assert text.startswith("Le gouvernement") and len(text) > len("Le gouvernement a présenté le projet de loi sur")


def test_in_the_process_the_base_stays_bit_identical_and_merge_false_exports_the_adapters_only(base, tmp_path):
    from overton.corpus.workspace import Workspace
    from overton.train.trainer import Run

    ws = workspace(base, tmp_path / "ws", {"merge": False}, steps=4)
    run_ = Run(Workspace.open(ws), Workspace.open(ws).config().train, progress=False)
    try:
        outcome = run_.run()
    finally:
        run_.close()
    assert outcome.export == ws / "train" / "adapter" and not (ws / "train" / "model").exists()
    model = run_.strategy.module
    base_weights = tensors(ws / "base", "model.safetensors")
    frozen = {name.removeprefix("base_model.model.").replace(".base_layer", ""): p
              for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen.keys() == base_weights.keys()
    assert all(torch.equal(p, base_weights[name]) for name, p in frozen.items())
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert len(trained) == ADAPTER_TENSORS and all("lora_" in name for name in trained)
    assert all(p.abs().max() > 0 for name, p in trained.items() if "lora_B" in name)


def test_bf16_keeps_the_base_in_bf16_and_the_adapters_in_fp32(base, tmp_path, capsys):
    """What a GPU run does (precision auto on a GPU with bf16), here on the CPU: the frozen base in bf16, the
    adapters and their AdamW moments in fp32, the merged export in bf16."""
    from overton.corpus.workspace import Workspace
    from overton.train.trainer import Run

    ws = workspace(base, tmp_path / "ws", steps=2, precision="bf16")
    run_ = Run(Workspace.open(ws), Workspace.open(ws).config().train, progress=False)
    try:
        run_.run()
    finally:
        run_.close()
    assert "bf16 on cpu; lora (" in capsys.readouterr().out
    strategy = run_.strategy
    adapters = [p for group in strategy.optimizer.param_groups for p in group["params"]]
    assert len(adapters) == ADAPTER_TENSORS and {p.dtype for p in adapters} == {torch.float32}
    moments = [t for state in strategy.optimizer.state.values() for k, t in state.items() if k != "step"]
    assert len(moments) == 2 * ADAPTER_TENSORS and {t.dtype for t in moments} == {torch.float32}
    assert {p.dtype for p in strategy.module.parameters()} == {torch.bfloat16}  # merged into the bf16 base
    assert json.loads((ws / "train" / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    assert {t.dtype for t in tensors(ws / "train" / "model", "model.safetensors").values()} == {torch.bfloat16}
    assert {t.dtype for t in tensors(ws / "train" / "adapter", "adapter_model.safetensors").values()} == {torch.float32}


# ------------------------------------------------------------------------------------- kills and resumes


def test_sigkill_then_the_same_command_gives_the_same_adapters_and_losses(base, reference, tmp_path, capsys):
    ws = workspace(base, tmp_path / "ws")
    marker = ws / "train" / "checkpoints" / "step-000008" / MARKER
    process = subprocess.Popen(command(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL and not (ws / "train" / "adapter").exists()
    newest = committed(ws)[-1]

    # the same checkpoint on another base, with other adapters or as full fine-tuning: refused, one line
    toml = (ws / "overton.toml").read_text()
    for change, message in (
            (('model = "base"', 'model = "other"'),
             rf"the adapters were trained on the base {ws}/base \(fingerprint [0-9a-f]{{12}}\), not on {ws}/other "
             r"\(fingerprint [0-9a-f]{12}\); resuming needs the same base model"),
            (("rank = 4", "rank = 8"), r"the adapters were trained with \[train.lora\] rank 4, the settings say 8"),
            (('strategy = "lora"', 'strategy = "ddp"'),
             r"a checkpoint of LoRA adapters, without the model's weights; resume it with \[train\] strategy = "
             r'"lora"')):
        (ws / "overton.toml").write_text(toml.replace(*change))
        assert main(["train", "-w", str(ws), "--quiet"]) == 2
        error = capsys.readouterr().err
        assert re.fullmatch(rf"overton: error: {ws}/train/checkpoints/{newest}: {message}.*\n", error), error
    (ws / "overton.toml").write_text(toml)
    assert committed(ws)[-1] == newest

    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {int(newest[5:])}:" in done.stdout
    reference_ws, _ = reference
    assert losses(ws) == losses(reference_ws)  # the same sequences and the same dropout masks, step by step
    for folder, name in (("adapter", "adapter_model.safetensors"), ("model", "model.safetensors")):
        expected, got = (tensors(w / "train" / folder, name) for w in (reference_ws, ws))
        assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_full_fine_tuning_checkpoint_is_not_resumed_as_adapters(base, tmp_path, capsys):
    ws = workspace(base, tmp_path / "ws", strategy="ddp", steps=1, save_every=1)
    assert main(["train", "-w", str(ws), "--quiet"]) == 0
    toml = (ws / "overton.toml").read_text()
    (ws / "overton.toml").write_text(toml.replace('strategy = "ddp"', 'strategy = "lora"'))
    capsys.readouterr()
    assert main(["train", "-w", str(ws), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"overton: error: {ws}/train/checkpoints/step-000001: a checkpoint of full "
                                       "fine-tuning, not of LoRA adapters; strategy lora needs another [train] "
                                       "output (or the strategy that wrote it)\n")


# ------------------------------------------------------------------------------------------ settings


def test_the_disk_preflight_counts_adapter_checkpoints(base, tmp_path, monkeypatch, capsys):
    ws = workspace(base, tmp_path / "ws", {"merge": False})
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real(path)._replace(free=300_000) if "checkpoints" in str(path) else real(path))
    assert main(["train", "-w", str(ws), "--quiet"]) == 2
    # fp32 adapters, their two AdamW moments, 4 tensors each (with the step counter); the export: the adapters
    each = 12 * ADAPTER_PARAMS + 4 * ADAPTER_TENSORS * TENSOR_OVERHEAD_BYTES + EXTRA_STATE_BYTES
    export = 4 * ADAPTER_PARAMS + EXTRA_STATE_BYTES
    error = capsys.readouterr().err
    assert error == (f"overton: error: not enough disk space for checkpoints in {ws}/train/checkpoints: need "
                     f"{human_bytes(3 * each + export)} (3 x {human_bytes(each)} checkpoint + final export of "
                     f"{human_bytes(export)}), 300.0 kB free; free some space, or write checkpoints to another "
                     "folder\n")


def test_the_dry_run_prices_the_adapters_the_trainer_writes(base, reference, tmp_path, capsys):
    ws = workspace(base, tmp_path / "ws")
    assert main(["train", "-w", str(ws), "--dry-run", "--gpu", "H100-80GB"]) == 0
    out = capsys.readouterr().out
    _, trained = reference
    [each] = re.findall(r"^checkpoints: (.+?) each, keeping 2;", trained, re.MULTILINE)  # the trainer's disk check
    assert f"; LoRA checkpoints {each} (fp32 adapters + AdamW moments 12 B per adapter parameter), export " in out
    assert re.search(rf"^disk: .* free holds \d+ LoRA checkpoint\(s\); keeping 2 needs 3 x {each} \+ export = ", out,
                     re.MULTILINE)
    assert re.search(r"^  overton train lora r=4 on 6 projections +\d+\.\d GiB  fits$", out, re.MULTILINE)
    assert re.search(r"^verdict: overton train runs lora \(as set: \d+\.\d GiB per GPU of 71\.7 GiB usable on 1 x "
                     r"H100-80GB: fits\)$", out, re.MULTILINE)
    assert "not available" not in out


@pytest.mark.parametrize(("lora", "message"), [
    ({"target_modules": ["q_proj", "c_attn"]},
     "[train.lora] target_modules: c_attn not in GPT-J's projections (q_proj, k_proj, v_proj, out_proj, fc_in, "
     "fc_out)"),
    ({"target_modules": []}, "setting 'train.lora.target_modules'"),
    ({"rank": 0}, "setting 'train.lora.rank'"),
    ({"dropout": 1.0}, "setting 'train.lora.dropout'"),
])
def test_mistakes_are_one_line(base, tmp_path, capsys, lora, message):
    ws = workspace(base, tmp_path / "ws", lora)
    assert main(["train", "-w", str(ws), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("overton: error: ") and message in error and error.count("\n") == 1, error


def test_the_earlier_budget_lora_rank_says_what_replaced_it():
    from overton.corpus.config import parse_config
    from overton.corpus.errors import UserError

    with pytest.raises(UserError, match=r"^overton.toml: setting 'train.budget.lora_rank' was replaced by "
                                        r"\[train.lora\] rank"):
        parse_config("[train.budget]\nlora_rank = 8\n")
