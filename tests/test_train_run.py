"""``overton train`` for real: a tiny GPT-J on the sample corpus, killed, stopped, resumed, on 1 and 2 processes.

Every run is the installed command in a subprocess (``torchrun`` for two processes, gloo on the CPU), and
every resume is compared with one uninterrupted run of the same settings: CPU training with the same
thread count is deterministic, so a resumed run on one process must end with bit-identical weights.
"""

from __future__ import annotations

import json
import math
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
from overton.train.budget import ModelShape, flops_per_token
from overton.train.checkpoint import MARKER
from overton.train.loader import PackedStream, Tokenizer
from overton.train.sources import selection
from overton.train.tiny import train_tokenizer, write_gptj_config
from overton.train.trainer import lr_factor
from tests.train_fixtures import documents, sample_workspace

BIN = Path(sys.executable).parent
# The runs the resume tests compare: 40 steps of 4 sequences of 64 tokens, a checkpoint every 4 steps.
RESUMABLE = {"steps": 40, "save_every": 4, "log_every": 1, "eval_every": 0, "micro_batch": 2, "global_batch": 4}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A workspace with the sample built, a tokenizer trained on it and a tiny GPT-J config."""
    root = tmp_path_factory.mktemp("train") / "base"
    workspace = sample_workspace(root)
    texts = [d["text"] for d in documents(Version.open(workspace.datasets / "overton"))]
    tokenizer = train_tokenizer(root / "tokenizer", texts)
    write_gptj_config(root / "tiny.json", vocab_size=400, eos_id=Tokenizer(str(tokenizer)).eos_id)
    return root


def workspace(base: Path, where: Path, **train) -> Path:
    """A copy of ``base`` whose overton.toml has these [train] settings (and the tiny defaults below)."""
    shutil.copytree(base, where, ignore=shutil.ignore_patterns("runs", "train"))
    values = {"tokenizer": "tokenizer", "from_config": "tiny.json", "seq_len": 64, "lr": 1e-3, "warmup_steps": 3,
              **train}
    lines = ["[train]"] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    (where / "overton.toml").write_text("\n".join(lines) + "\n")
    return where


def command(ws: Path, processes: int = 1) -> list[str]:
    if processes == 1:
        return [str(BIN / "overton"), "train", "-w", str(ws), "--quiet"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "overton", "train", "-w", str(ws), "--quiet"]


def run(ws: Path, processes: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run(command(ws, processes), capture_output=True, text=True, timeout=600)


def interrupted(base: Path, where: Path, step: int, stop: signal.Signals,
                processes: int = 1) -> tuple[Path, int, str, str]:
    """A resumable run sent ``stop`` once its checkpoint of ``step`` is committed: (workspace, exit, out, err)."""
    ws = workspace(base, where, **RESUMABLE)
    marker = ws / "train" / "checkpoints" / f"step-{step:06d}" / MARKER
    process = subprocess.Popen(command(ws, processes), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(stop)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    return ws, process.returncode, out, err


def metrics(ws: Path) -> list[dict]:
    return [json.loads(line) for line in (ws / "train" / "metrics.jsonl").read_text().splitlines()]


def losses(ws: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(ws) if "loss" in r}


def weights(ws: Path) -> dict[str, torch.Tensor]:
    return load_file(ws / "train" / "model" / "model.safetensors")


def checkpoint_state(folder: Path) -> dict:
    """The model and optimizer states of a checkpoint (written with torch.distributed.checkpoint), whole."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(folder, folder.parent / f"{folder.name}.pt")
    try:
        return torch.load(folder.parent / f"{folder.name}.pt", weights_only=False)
    finally:
        (folder.parent / f"{folder.name}.pt").unlink()


def committed(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "train" / "checkpoints").iterdir())


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> Path:
    """The uninterrupted run the resumed ones must reproduce."""
    ws = workspace(base, tmp_path_factory.mktemp("reference") / "ws", **RESUMABLE)
    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert "done: 40 steps" in done.stdout
    assert "\nstrategy auto takes ddp (on CPUs: no GPU memory to plan for)\n" in done.stdout
    assert "; fp32 on cpu; ddp; attention sdpa\n" in done.stdout
    return ws


# ------------------------------------------------------------------------------------------- training


def test_a_run_learns_logs_evaluates_and_exports(base, tmp_path: Path):
    ws = workspace(base, tmp_path / "ws", steps=20, log_every=5, eval_every=10, eval_fraction=0.1, save_every=5,
                   tensorboard=True, peak_tflops=0.001, micro_batch=2, global_batch=8)
    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert re.search(r"checkpoints: \d\.\d MB each, keeping 2; .* free in .*: room for \d+ more", done.stdout)
    assert "starting: 20 steps of 8 sequences x 64 tokens; 1 process(es) x micro-batch 2 x 4 accumulation; " \
           "fp32 on cpu" in done.stdout
    records = metrics(ws)
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [1, 5, 10, 15, 20]  # the first step too: throughput from the start
    assert train[-1]["loss"] < train[0]["loss"] - 0.3
    for r in train:  # the logged rate is the one the step used: warmup 3 steps, cosine to 0.1 x 1e-3 at step 20
        assert r["lr"] == pytest.approx(1e-3 * lr_factor(r["step"] - 1, 3, 20, 0.1))
        assert r["sequences"] == 8 * r["step"] and r["grad_norm"] > 0
    # MFU = tokens/s per device x FLOPs per token / peak (6N + 12 L d s, N without the input embedding)
    shape = ModelShape.from_gptj_config(json.loads((ws / "tiny.json").read_text()))
    per_token = 6 * (shape.total_params - 400 * 64) + 12 * 2 * 64 * 64
    assert flops_per_token(shape, 64) == per_token
    for r in train:
        assert r["mfu"] == pytest.approx(r["tokens_per_s_per_device"] * per_token / 1e9, rel=1e-12)
    evaluation = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evaluation] == [10, 20]
    assert evaluation[1]["eval_loss"] < evaluation[0]["eval_loss"]
    assert all(r["eval_perplexity"] == pytest.approx(math.exp(r["eval_loss"])) for r in evaluation)
    held_out = PackedStream(str(ws / "datasets" / "overton"), Tokenizer(str(ws / "tokenizer")), 64, 0,
                            tmp_path / "cache", selection(_settings(ws)), evaluation=True).count()
    assert held_out > 100 and evaluation[0]["eval_sequences"] == 100  # capped: eval_batches 50 x micro-batch 2
    assert "step 10: eval loss" in done.stdout

    out = ws / "train"
    assert committed(out.parent) == ["step-000015", "step-000020"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert type(model).__name__ == "GPTJForCausalLM"
    trained = checkpoint_state(out / "checkpoints" / "step-000020")["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items() if k in model.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    ids = tokenizer("Le gouvernement", return_tensors="pt").input_ids
    text = tokenizer.decode(model.generate(ids, max_new_tokens=8, do_sample=False,
                                           pad_token_id=tokenizer.eos_token_id)[0])
    assert text.startswith("Le gouvernement") and len(text) > len("Le gouvernement")
    [record] = [json.loads(p.read_text()) for p in (ws / "runs").glob("*-train.json")]
    assert (record["status"], record["step"], record["stopped_by"]) == ("ok", 20, None)

    # a new selection of documents is said; the settings that define the data order cannot change
    toml = (ws / "overton.toml").read_text()
    (ws / "overton.toml").write_text(toml.replace("eval_fraction = 0.1", "eval_fraction = 0.2"))
    again = run(ws)
    assert again.returncode == 0 and "note: the document selection changed since step-000020" in again.stdout
    assert "already done: 20 steps; the model is in" in again.stdout  # a finished run is not exported twice
    (ws / "overton.toml").write_text(toml.replace("global_batch = 8", "global_batch = 4"))
    again = run(ws)
    assert again.returncode == 2
    assert "the checkpoint was trained with global_batch 8, the settings say 4" in again.stderr


def test_a_diverged_run_stops_without_saving(base, tmp_path: Path):
    ws = workspace(base, tmp_path / "ws", steps=6, log_every=1, save_every=2, lr=1e6, warmup_steps=0, clip=1e9)
    done = run(ws)
    assert done.returncode == 1
    [step] = re.findall(r"^overton: the loss is nan at step (\d+): training diverged, nothing saved; lower "
                        r"\[train\] lr or raise warmup_steps, and run again", done.stderr, re.MULTILINE)
    assert "Traceback" not in done.stderr
    assert all(int(name[5:]) < int(step) for name in committed(ws))  # no checkpoint of the diverged weights


@pytest.mark.parametrize(("train", "message"), [
    ({"tokenizer": "/no/such/tokenizer"}, "tokenizer /no/such/tokenizer: no such folder or tokenizer.json file"),
    ({"tokenizer": ""}, "set [train] tokenizer"),
    ({"from_config": ""}, "set [train] model (a pretrained folder) or from_config (a GPT-J config.json)"),
    ({"global_batch": 5, "micro_batch": 2}, "[train] global_batch 5 must be a multiple of micro_batch x processes"),
    ({"seq_len": 512}, "[train] seq_len 512 is longer than the model's 256 positions"),
    ({"follow": True}, "[train] follow needs epochs >= 1"),
    ({"dataset": "elsewhere"}, "/ws/elsewhere: no such dataset folder"),
])
def test_mistakes_are_one_line(base, tmp_path: Path, capsys, train, message):
    ws = workspace(base, tmp_path / "ws", **train)
    assert main(["train", "-w", str(ws)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("overton: error: ") and message in error and error.count("\n") == 1, error


def test_lr_schedule():
    assert [lr_factor(s, 4, 20, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 20, 0.1) == 1.0
    assert lr_factor(12, 4, 20, 0.1) == pytest.approx(0.55)  # half way down the cosine
    assert lr_factor(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert lr_factor(0, 0, 10, 0.0) == 1.0


# ------------------------------------------------------------------------------------- kills and resumes


def test_sigkill_then_the_same_command_ends_with_identical_weights(base, reference, tmp_path: Path):
    ws, returncode, _, _ = interrupted(base, tmp_path / "ws", 8, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert not (ws / "train" / "model").exists()  # killed long before the end
    older, newest = committed(ws)[-2:]
    # what a kill during the next save leaves, and a newest checkpoint damaged after its commit
    (ws / "train" / "checkpoints" / ".tmp-step-999999-deadbeef").mkdir()
    (ws / "train" / "checkpoints" / ".tmp-step-999999-deadbeef" / "__0_0.distcp").write_bytes(b"half")
    with open(ws / "train" / "checkpoints" / newest / "__0_0.distcp", "r+b") as handle:
        handle.truncate(100)

    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert f"skipping checkpoint {newest}: __0_0.distcp has 100 bytes" in done.stdout
    assert "removed 1 unfinished checkpoint folder(s)" in done.stdout
    assert f"resuming at step {int(older[5:])}:" in done.stdout
    assert losses(ws) == losses(reference)  # the same sequences, step by step, logged once each
    assert [r["step"] for r in metrics(ws)] == list(range(1, 41))
    expected, got = weights(reference), weights(ws)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_flipped_byte_in_the_newest_checkpoint_is_found_and_the_one_before_resumed(base, reference, tmp_path: Path):
    ws, returncode, _, _ = interrupted(base, tmp_path / "ws", 8, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    older, newest = committed(ws)[-2:]
    model = ws / "train" / "checkpoints" / newest / "__0_0.distcp"
    size = model.stat().st_size
    with open(model, "r+b") as handle:  # silent damage: the size stays, sizes cannot see it
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert model.stat().st_size == size

    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert f"{newest}: __0_0.distcp: checksum differs from COMMITTED.json; skipped\n" in done.stdout
    assert re.search(rf"^{older}: checksums verified \(\d\.\d MB in \d+\.\d s\)$", done.stdout, re.MULTILINE)
    assert f"resuming at step {int(older[5:])}:" in done.stdout
    assert losses(ws) == losses(reference)  # not one step trained from the damaged weights
    expected, got = weights(reference), weights(ws)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert committed(ws) == ["step-000036", "step-000040"]


def test_sigkill_during_a_save_resumes_from_the_previous_checkpoint(base, tmp_path: Path):
    """A wider model (80 MB checkpoints) so that a save lasts long enough to be killed in the middle of it."""
    write_gptj_config(base / "wide.json", vocab_size=400, eos_id=0, n_layer=2, n_embd=512, n_head=8)
    settings = {"from_config": "wide.json", "steps": 6, "save_every": 2, "log_every": 1, "global_batch": 2}
    reference = workspace(base, tmp_path / "reference", **settings)
    assert run(reference).returncode == 0
    ws = workspace(base, tmp_path / "ws", **settings)
    checkpoints = ws / "train" / "checkpoints"
    process = subprocess.Popen(command(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any((p / "__0_0.distcp").exists() for p in checkpoints.glob(".tmp-step-000004-*")):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)  # the state is being written: the marker is not there yet
        process.wait(timeout=60)
    finally:
        process.kill()
    [stale] = checkpoints.glob(".tmp-step-000004-*")
    assert not (stale / MARKER).exists() and committed(ws)[-1] == "step-000002"

    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert "removed 1 unfinished checkpoint folder(s)" in done.stdout and "resuming at step 2:" in done.stdout
    assert losses(ws) == losses(reference)
    expected, got = weights(reference), weights(ws)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_saves_exits_0_and_resumes_exactly(base, reference, tmp_path: Path, stop):
    ws, returncode, out, err = interrupted(base, tmp_path / "ws", 4, stop)
    assert returncode == 0, err
    [stopped] = re.findall(rf"stopped by {stop.name} at step (\d+): checkpoint saved", out)
    assert 4 <= int(stopped) < 40
    assert committed(ws)[-1] == f"step-{int(stopped):06d}"  # saved where it stopped, not at a multiple of 4
    assert not (ws / "train" / "model").exists()
    [record] = [json.loads(p.read_text()) for p in (ws / "runs").glob("*-train.json")]
    assert (record["status"], record["stopped_by"], record["step"]) == ("ok", stop.name, int(stopped))

    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {stopped}:" in done.stdout
    assert losses(ws) == losses(reference)
    expected, got = weights(reference), weights(ws)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_elastic_resume_from_one_process_to_two_under_torchrun(base, reference, tmp_path: Path):
    ws, returncode, _, err = interrupted(base, tmp_path / "ws", 4, signal.SIGTERM)
    assert returncode == 0, err
    stopped = int(committed(ws)[-1][5:])

    done = run(ws, processes=2)
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {stopped}: 40 steps of 4 sequences x 64 tokens; 2 process(es) x micro-batch 2 x " \
           "1 accumulation" in done.stdout
    assert done.stdout.count("done: 40 steps") == 1  # rank 0 reports, rank 1 is silent
    ref, got = losses(reference), losses(ws)
    assert [s for s in got] == list(range(1, 41))
    assert all(got[s] == ref[s] for s in range(1, stopped + 1))  # the one-process part
    # the two-process part sees the same sequences: the same losses, up to the order of the gradient sums
    assert all(got[s] == pytest.approx(ref[s], rel=1e-5) for s in range(stopped + 1, 41))
    expected, trained = weights(reference), weights(ws)
    assert all(torch.allclose(expected[k], trained[k], rtol=1e-3, atol=1e-4) for k in expected)


def test_sigterm_to_torchrun_saves_on_every_rank_and_one_process_resumes(base, reference, tmp_path: Path):
    ws, returncode, out, err = interrupted(base, tmp_path / "ws", 4, signal.SIGTERM, processes=2)
    # torchrun passes SIGTERM to both processes, which save and exit 0; torchrun itself then exits 1
    assert returncode == 1 and "SignalException" in err
    [stopped] = re.findall(r"stopped by SIGTERM at step (\d+): checkpoint saved", out)
    newest = ws / "train" / "checkpoints" / f"step-{int(stopped):06d}"
    assert (newest / MARKER).exists() and (newest / "rng-rank0.pt").exists() and (newest / "rng-rank1.pt").exists()

    done = run(ws)  # back to one process
    assert done.returncode == 0, done.stderr
    assert f"resuming at step {stopped}: 40 steps of 4 sequences x 64 tokens; 1 process(es) x micro-batch 2 x " \
           "2 accumulation" in done.stdout
    ref, got = losses(reference), losses(ws)
    assert sorted(got) == list(range(1, 41))
    assert all(got[s] == pytest.approx(ref[s], rel=1e-5) for s in got)


# ----------------------------------------------------------------------------------------- disk checks


def test_preflight_refuses_before_training_when_the_disk_cannot_hold_the_checkpoints(
        base, tmp_path: Path, monkeypatch, capsys):
    ws = workspace(base, tmp_path / "ws", steps=4)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real(path)._replace(free=3_000_000) if "checkpoints" in str(path) else real(path))
    assert main(["train", "-w", str(ws), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    # 150,928 parameters: fp32 weights + AdamW moments (12 B each), 2 kB per tensor (100) and 64 KiB of small
    # state: 2,081,472 B; a 4 B/param export
    assert error == (f"overton: error: not enough disk space for checkpoints in {ws}/train/checkpoints: need 6.8 MB "
                     "(3 x 2.1 MB checkpoint + final export of 603.7 kB), 3.0 MB free; free some space, or write "
                     "checkpoints to another folder")
    assert not (ws / "train" / "metrics.jsonl").exists()  # not one step trained


_SMALL_FS = 'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" train -w "$3" --quiet'


def test_preflight_on_a_real_small_filesystem(base, tmp_path: Path):
    """The output folder on a 4 MiB tmpfs (a user namespace, no root); skipped where the kernel forbids it."""
    small = tmp_path / "small"
    small.mkdir()
    ws = workspace(base, tmp_path / "ws", steps=4, output=str(small / "run"))
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _SMALL_FS, "sh",
                               str(small), str(BIN / "overton"), str(ws)], capture_output=True, text=True,
                              timeout=300)
    except FileNotFoundError:
        pytest.skip("no small filesystem: the `unshare` command (util-linux) is not installed")
    if "unshare:" in done.stderr or "mount:" in done.stderr:
        pytest.skip(f"no small filesystem: a tmpfs cannot be mounted without root here ({done.stderr.strip()})")
    assert done.returncode == 2, done.stderr
    assert re.search(r"overton: error: not enough disk space for checkpoints in \S+/run/checkpoints: need .* "
                     r"4\.2 MB free", done.stderr), done.stderr


# ------------------------------------------------------------------------------------------ options


def test_loader_workers_activation_checkpointing_and_bf16(base, tmp_path: Path):
    plain = workspace(base, tmp_path / "plain", steps=3, log_every=1)
    workers = workspace(base, tmp_path / "workers", steps=3, log_every=1, loader_workers=2)
    recompute = workspace(base, tmp_path / "recompute", steps=3, log_every=1, activation_checkpointing=True)
    bf16 = workspace(base, tmp_path / "bf16", steps=3, log_every=1, precision="bf16")
    for ws in (plain, workers, recompute, bf16):
        done = run(ws)
        assert done.returncode == 0, done.stderr
    a, b, c = losses(plain), losses(recompute), losses(bf16)
    assert losses(workers) == a  # two reading processes hand over the same batches in the same order
    assert all(b[s] == pytest.approx(a[s], rel=1e-6) for s in a)  # recomputation changes memory, not results
    assert all(c[s] == pytest.approx(a[s], rel=0.02) and c[s] != a[s] for s in a)  # bf16 autocast: close, not equal
    assert "bf16 on cpu" in done.stdout
    config = json.loads((bf16 / "train" / "model" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    assert all(t.dtype == torch.bfloat16 for t in weights(bf16).values())


# ------------------------------------------------------------------------------------------- dry run

GPTJ_6B = {"model_type": "gptj", "n_layer": 28, "n_embd": 4096, "n_head": 16, "vocab_size": 50400,
           "n_positions": 2048, "rotary_dim": 64, "n_inner": None, "tie_word_embeddings": False}


def test_dry_run_for_gptj_6b_on_two_a100_40gb(base, tmp_path: Path, capsys):
    ws = workspace(base, tmp_path / "ws", model="gpt-j-6b", from_config="", seq_len=1024, micro_batch=1,
                   global_batch=8, steps=1000, activation_checkpointing=True)
    (ws / "gpt-j-6b").mkdir()
    (ws / "gpt-j-6b" / "config.json").write_text(json.dumps(GPTJ_6B))
    assert main(["train", "-w", str(ws), "--dry-run", "--gpus", "2", "--gpu", "A100-40GB", "--price", "2"]) == 0
    out = capsys.readouterr().out
    settings_tokens = PackedStream(str(ws / "datasets" / "overton"), Tokenizer(str(ws / "tokenizer")), 1024, 0,
                                   tmp_path / "cache", selection(_settings(ws))).selected_tokens()
    assert f"{settings_tokens:,} tokens selected ({settings_tokens // 1024} sequences of 1024)" in out
    assert "budget for gpt-j-6b: 28 layers, d=4096, 16 heads, vocab 50400, 6,050,882,784 parameters" in out
    assert "36.48 GFLOP/token" in out
    assert "global batch 8 = micro-batch 1 x 2 GPUs x 4 accumulation: 1,000 steps" in out
    assert ("verdict: overton train cannot run full fine-tuning here (nothing fits: ddp 102.0 GiB per GPU, fsdp "
            "50.9 GiB per GPU of 36.0 GiB usable on 2 x A100-40GB; with [train] offload = true, fsdp + CPU offload "
            "5.9 GiB per GPU and 90.2 GiB of host RAM)") in out
    assert ("fits on 2 x A100-40GB: fsdp + CPU offload 5.9 GiB per GPU and 90.2 GiB of host RAM; lora r=8 12.4 GiB "
            "per GPU") in out  # [train.lora]: rank 8 on the 6 projections
    assert "full fine-tuning without offload fits on: 4 x A100-40GB (fsdp, " in out
    assert "checkpoints: 72.6 GB each (weights 4 + fp32 AdamW moments 8 = 12 B/param), final bf16 export 12.1 GB" \
        in out
    assert re.search(r"disk: [\d.]+ GB free holds \d+ full checkpoint\(s\); keeping 2 needs 3 x 72\.6 GB \+ export "
                     r"= 229\.9 GB: (enough|NOT ENOUGH)", out)
    assert re.search(r"GPU-hours, [\d,.]+ EUR", out)


@pytest.mark.parametrize(("option", "message"), [
    (["--mfu", "0"], "MFU must be in (0, 1], not 0.0"),
    (["--gpu", "X100"], "unknown GPU 'X100'; known: A100-40GB, A100-80GB, H100-80GB, H200-141GB"),
    (["--gpus", "0"], "gpus and micro-batch must be >= 1"),
    (["--price", "-1"], "argument --price: must be 0 or more"),
])
def test_dry_run_mistakes_are_one_line(base, tmp_path: Path, capsys, option, message):
    ws = workspace(base, tmp_path / "ws")
    try:
        code = main(["train", "-w", str(ws), "--dry-run", *option])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def _settings(ws: Path):
    from overton.corpus.workspace import Workspace

    return Workspace.open(ws).config().train


# ------------------------------------------------------------------------------------------- follow


def test_follow_waits_for_a_newer_version_and_trains_on_what_it_adds(base, tmp_path: Path):
    import random

    from overton.corpus.workspace import Workspace
    from overton.pipelines.build import build
    from overton.spiders.ingest import ingest
    from tests.conftest import french_text, write_jsonl

    ws = workspace(base, tmp_path / "ws", epochs=1, follow_poll_seconds=0.1, log_every=1, save_every=1000,
                   micro_batch=2, global_batch=4)
    first = PackedStream(str(ws / "datasets" / "overton"), Tokenizer(str(ws / "tokenizer")), 64, 0,
                         tmp_path / "cache", selection(_settings(ws)), epochs=1).count() // 4
    toml = (ws / "overton.toml").read_text() + f"steps = {first + 5}\n"
    (ws / "overton.toml").write_text(toml)
    process = subprocess.Popen([*command(ws), "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 300
        while not (ws / "train" / "metrics.jsonl").exists() or first not in losses(ws):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1)
        assert process.poll() is None and max(losses(ws)) == first  # the first version is used up: it waits
        rng = random.Random(5)
        records = [{"id": f"n{i}", "text": french_text(rng, 300), "title": f"Nouveau {i}"} for i in range(8)]
        ingest(Workspace.open(ws), [write_jsonl(tmp_path / "new.jsonl", records)], "nouveaux",
               default_license="CC0-1.0")
        build(Workspace.open(ws), jobs=1, progress=False)  # v0002
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert f"done: {first + 5} steps" in out
    assert sorted(losses(ws)) == list(range(1, first + 6))
    [last] = committed(ws)
    meta = json.loads((ws / "train" / "checkpoints" / last / MARKER).read_text())["meta"]
    assert [s["version"] for s in meta["segments"]] == ["v0001", "v0002"]
