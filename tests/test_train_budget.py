"""Training budget: parameter counts, FLOPs and MFU, memory verdicts, time and cost, checkpoints and disk; and
``overton train --dry-run`` in a fresh workspace, with and without a tokenizer and a model config."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from overton.corpus.config import set_setting
from overton.corpus.dataset import Version
from overton.corpus.errors import UserError
from overton.train.budget import (
    DEEPSPEED_BF16,
    FP32_PARAMS,
    GB,
    GIB,
    GPTJ_6B,
    GPU,
    GPUS,
    LORA_MODULES,
    SIZES,
    ModelShape,
    _hours,
    activation_bytes,
    choose_strategy,
    flops_per_token,
    gpu,
    known_model,
    memory_ddp,
    memory_fsdp,
    memory_lora,
    mfu,
    model_size,
    plan,
    train_hours,
)
from overton.train.checkpoint import EXTRA_STATE_BYTES, TENSOR_OVERHEAD_BYTES
from overton.train.dryrun import CHARS_PER_TOKEN
from overton.train.loader import PackedStream, Tokenizer
from overton.train.sources import selection
from overton.train.tiny import train_tokenizer
from tests.train_fixtures import documents, sample_workspace

BIN = Path(sys.executable).parent

# config.json of Cedille/fr-boris as transformers writes it (GPT-J 6B shapes, defaults left out or spelled out).
FR_BORIS_CONFIG = {
    "model_type": "gptj", "architectures": ["GPTJForCausalLM"], "_name_or_path": "Cedille/fr-boris",
    "n_layer": 28, "n_embd": 4096, "n_head": 16, "n_positions": 2048, "rotary_dim": 64, "vocab_size": 50400,
    "n_inner": None, "tie_word_embeddings": False, "activation_function": "gelu_new",
}

# A toy model and card for arithmetic checked by hand.
TOY = ModelShape(n_layer=2, n_embd=8, n_head=2, vocab_size=10, n_positions=16, rotary_dim=4, name="toy")
TOY_GPU = GPU("toy", memory_bytes=100 * GIB, peak_flops=1e12)


def _a100_plan(**kwargs):
    args = {"tokens": 500_000_000, "seq_len": 1024, "gpus": 2, "gpu_name": "A100-40GB", "mfu": 0.4,
            "price_per_gpu_hour": 1.10, "micro_batch": 1, "epochs": 1, "checkpoint_keep": 2,
            "disk_free_bytes": 200 * GB, "global_batch": 32}
    args.update(kwargs)
    return plan(GPTJ_6B, **args)


# ------------------------------------------------------------------------------------- parameter counts


def test_gptj_6b_parameter_count_and_model_card_figure():
    d, v = 4096, 50400
    assert GPTJ_6B.embedding_params == v * d == 206_438_400
    assert GPTJ_6B.layer_params == 4 * d * d + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * d == 201_355_264
    # What PyTorch counts for GPTJForCausalLM.
    assert GPTJ_6B.total_params == 6_050_882_784
    # The model card's figure counts the 8-shard Mesh Transformer JAX checkpoint (replicated LayerNorms, fc_out
    # biases, and an input-embedding bias per shard).
    assert GPTJ_6B.mesh_jax_params(8) == 6_053_381_344
    assert GPTJ_6B.mesh_jax_params(8) - GPTJ_6B.total_params == 2_498_560


def test_matmul_params_and_flops_per_token():
    assert GPTJ_6B.matmul_weight_params == 28 * 12 * 4096 * 4096 + 4096 * 50400 == 5_843_582_976
    assert GPTJ_6B.matmul_params == GPTJ_6B.total_params - GPTJ_6B.embedding_params == 5_844_444_384
    fpt = flops_per_token(GPTJ_6B, 1024)
    assert fpt == 6 * 5_844_444_384 + 12 * 28 * 4096 * 1024 == 36_475_952_448
    assert round(fpt / 1e9, 2) == 36.48
    assert flops_per_token(GPTJ_6B, 1024, lora=True) == 4 * 5_844_444_384 + 12 * 28 * 4096 * 1024
    assert flops_per_token(GPTJ_6B, 2048) - fpt == 12 * 28 * 4096 * 1024


def test_from_gptj_config_and_defaults():
    shape = ModelShape.from_gptj_config(FR_BORIS_CONFIG)
    assert shape.total_params == GPTJ_6B.total_params
    assert shape.d_ff == 16384 and shape.name == "Cedille/fr-boris"
    # A config.json saved by transformers leaves out values equal to GPTJConfig's defaults.
    assert ModelShape.from_gptj_config({"model_type": "gptj"}).total_params == 6_050_882_784
    small = ModelShape.from_gptj_config({"n_layer": 2, "n_embd": 8, "n_head": 2, "vocab_size": 10, "n_inner": 16})
    assert small.total_params == 10 * 8 + 2 * (4 * 64 + (2 * 8 * 16 + 16 + 8) + 16) + 16 + (8 * 10 + 10)
    tied = ModelShape.from_gptj_config({**FR_BORIS_CONFIG, "tie_word_embeddings": True})
    assert tied.total_params == GPTJ_6B.total_params - 4096 * 50400
    assert tied.matmul_params == GPTJ_6B.matmul_params  # the lm_head matmul still runs
    with pytest.raises(UserError, match="model_type"):
        ModelShape.from_gptj_config({"model_type": "llama"})
    with pytest.raises(UserError, match="multiple of n_head"):
        ModelShape.from_gptj_config({"n_embd": 100, "n_head": 16})


def test_lora_params():
    assert GPTJ_6B.lora_params(8) == 28 * 2 * 8 * (4096 + 4096) == 3_670_016
    assert GPTJ_6B.lora_params(16, ("q_proj", "v_proj", "fc_in")) == 28 * 16 * (2 * 8192 + 4096 + 16384)
    with pytest.raises(UserError, match="unknown LoRA target"):
        GPTJ_6B.lora_params(8, ("c_attn",))


# ---------------------------------------------------------------------------------------------- MFU, time


def test_mfu_of_the_original_run():
    # 2.5 sequences of 1024 tokens per second on 2 x A100 (312 TFLOP/s bf16 dense each).
    value = mfu(2.5 * 1024, flops_per_token(GPTJ_6B, 1024), GPUS["A100-40GB"].peak_flops, 2)
    assert 0.14 < value < 0.16
    assert value == pytest.approx(2560 * 36_475_952_448 / 624e12)


def test_hours_and_cost_on_simple_numbers():
    # 3.6e15 FLOP at 50 % of 2 x 1 TFLOP/s: 3600 s.
    assert train_hours(3.6e6, 1e9, 1e12, 2, 0.5) == pytest.approx(1.0)
    # The toy: N = total - embedding, FLOPs/token at 16 tokens = 6N + 12*2*8*16.
    n = TOY.total_params - 10 * 8
    assert TOY.matmul_params == n
    fpt = 6 * n + 12 * 2 * 8 * 16
    assert flops_per_token(TOY, 16) == fpt
    tokens = 1600 * 16  # 1600 sequences
    report = plan(TOY, tokens, seq_len=16, gpus=4, gpu_name=TOY_GPU, mfu=0.25, price_per_gpu_hour=2.0,
                  micro_batch=2, epochs=2, global_batch=16, disk_free_bytes=10**6)
    assert report.sequences == 3200 and report.tokens_trained == 3200 * 16
    assert report.grad_accum == 2 and report.global_batch == 16 and report.steps == 200
    assert report.hours == pytest.approx(3200 * 16 * fpt / (0.25 * 1e12 * 4) / 3600)
    assert report.gpu_hours == pytest.approx(4 * report.hours)
    assert report.cost == pytest.approx(2.0 * report.gpu_hours)
    assert report.lora_hours < report.hours
    # A partial last batch is still a step.
    assert plan(TOY, 33 * 16, seq_len=16, gpus=1, gpu_name=TOY_GPU, global_batch=8).steps == 5


def test_plan_rejects_bad_settings():
    with pytest.raises(UserError, match="multiple of micro-batch"):
        plan(TOY, 1000, seq_len=16, gpus=2, gpu_name=TOY_GPU, micro_batch=2, global_batch=6)
    with pytest.raises(UserError, match="16 positions"):
        plan(TOY, 1000, seq_len=32, gpu_name=TOY_GPU)
    with pytest.raises(UserError, match="unknown GPU"):
        plan(TOY, 1000, seq_len=16, gpu_name="V100")
    with pytest.raises(UserError, match="MFU"):
        plan(TOY, 1000, seq_len=16, gpu_name=TOY_GPU, mfu=0)
    assert gpu("a100-80gb") is GPUS["A100-80GB"]


# ------------------------------------------------------------------------------------------------ memory


def test_activation_formula():
    s, b, h, a, layers, v = 1024, 1, 4096, 16, 28, 50400
    block = s * b * h * (34 + 5 * a * s // h)
    logits = 10 * s * b * v
    assert activation_bytes(GPTJ_6B, 1024, 1, checkpointing=False) == layers * block + logits
    assert activation_bytes(GPTJ_6B, 1024, 1, checkpointing=True) == layers * 2 * s * b * h + block + logits
    assert activation_bytes(GPTJ_6B, 1024, 1, checkpointing=False, flash_attention=True) == (
        layers * 34 * s * b * h + logits)
    assert activation_bytes(GPTJ_6B, 1024, 4) == 4 * activation_bytes(GPTJ_6B, 1024, 1)


def test_memory_conventions():
    p = GPTJ_6B.total_params
    ddp = memory_ddp(GPTJ_6B, 1024, 1)
    assert ddp.weights + ddp.grads + ddp.optimizer == 16 * p
    sharded = memory_fsdp(GPTJ_6B, 1024, 1, gpus=8)
    assert sharded.weights + sharded.grads + sharded.optimizer == 16 * (p // 8)  # p is a multiple of 8
    assert sharded.activations == ddp.activations  # activations are not sharded
    # the working set: the root (embedding, lm_head and its bias, ln_f) at 8 B/param and a block at 10 B/param
    root = 4096 * 50400 + (4096 * 50400 + 50400) + 2 * 4096
    assert root == p - 28 * GPTJ_6B.layer_params == 412_935_392
    assert sharded.working == 8 * root + 10 * 201_355_264 and round(sharded.working / GIB, 1) == 5.0
    offload = memory_fsdp(GPTJ_6B, 1024, 1, gpus=2, offload=True)
    assert offload.weights == offload.grads == offload.optimizer == 0 and offload.host == 16 * p
    assert offload.total == offload.working + offload.activations
    lora = memory_lora(GPTJ_6B, 1024, 1, rank=8)
    assert lora.total - lora.activations == 2 * p + 16 * 3_670_016


def test_two_a100_40gb_verdicts():
    report = _a100_plan()
    usable = int(40 * GIB * 0.9)
    assert report.usable_bytes == usable
    assert not report.fits(report.memory("ddp"))
    # 16 B/param = 96.8 GB; / 2 = 48.4 GB of training state alone is more than a 40 GB card.
    assert 16 * GPTJ_6B.total_params / 2 == pytest.approx(48.4e9, rel=1e-3)
    assert not report.fits(report.memory("fsdp"))
    assert report.lora_fits and report.lora.total < 13 * GIB
    assert report.fits(report.memory("fsdp", offload=True))
    assert report.choice.name is None  # auto does not offload unless [train] offload allows it
    assert _a100_plan(offload=True).choice.way == "fsdp + CPU offload"
    # Without activation checkpointing the verdicts are the same.
    plain = _a100_plan(activation_checkpointing=False)
    assert not plain.fits(plain.memory("ddp")) and not plain.fits(plain.memory("fsdp")) and plain.lora_fits
    # With too little host RAM, offload does not fit either.
    small = _a100_plan(host_ram_bytes=64 * GIB, offload=True)
    assert not small.fits(small.memory("fsdp", offload=True)) and small.choice.name is None
    options = {o.gpu.name: (o.count, o.strategy) for o in report.full_options}
    assert options == {"A100-40GB": (4, "fsdp"), "A100-80GB": (2, "fsdp"), "H100-80GB": (2, "fsdp"),
                       "H200-141GB": (1, "ddp")}


def test_eight_a100_80gb_sharded_fits():
    report = _a100_plan(gpus=8, gpu_name="A100-80GB", global_batch=32)
    assert not report.fits(report.memory("ddp"))
    assert report.fits(report.memory("fsdp")) and report.choice.way == "fsdp"
    assert report.memory("fsdp").total < 18 * GIB  # 11.3 GiB of state, 5.0 of working set, 0.9 of activations
    assert report.verdict().startswith("overton train (strategy auto) takes fsdp: full fine-tuning fits (fsdp 17.1 "
                                       "GiB per GPU of 72.0 GiB usable on 8 x A100-80GB; ddp 102.0 GiB per GPU "
                                       "would not fit)")


def test_the_planner_takes_the_fastest_strategy_that_fits():
    a100 = GPUS["A100-40GB"]
    fsdp = choose_strategy(GPTJ_6B, 1024, 1, 4, a100)
    assert (fsdp.name, fsdp.offload) == ("fsdp", False)
    # 16 B/param / 4 = 22.5 GiB, a working set of 5.0 GiB and activations of 0.9 GiB: 28.4 GiB of 36.0 usable
    assert fsdp.memory.total == 4 * GPTJ_6B.total_params + fsdp.memory.working + fsdp.memory.activations
    assert round(fsdp.memory.total / GIB, 1) == 28.4
    assert choose_strategy(SIZES["125M"], 1024, 1, 4, a100).name == "ddp"  # small enough for every GPU
    # named in the settings: that one, whether it fits or not, with the figures
    forced = choose_strategy(GPTJ_6B, 1024, 1, 4, a100, strategy="ddp")
    assert forced.name == "ddp" and forced.reason.endswith("DOES NOT FIT")
    one = choose_strategy(GPTJ_6B, 1024, 1, 1, a100, strategy="fsdp", offload=True)
    assert one.way == "fsdp + CPU offload" and one.reason.endswith(": fits")
    none = choose_strategy(GPTJ_6B, 1024, 1, 2, a100)
    assert none.name is None and none.reason == (
        "nothing fits: ddp 102.0 GiB per GPU, fsdp 50.9 GiB per GPU of 36.0 GiB usable on 2 x A100-40GB; with "
        "[train] offload = true, fsdp + CPU offload 5.9 GiB per GPU and 90.2 GiB of host RAM")


def test_time_and_cost_of_gptj_on_two_a100():
    report = _a100_plan()
    assert report.sequences == 488_281 and report.steps == 15_259 and report.grad_accum == 16
    expected = 488_281 * 1024 * 36_475_952_448 / (0.4 * 312e12 * 2) / 3600
    assert report.hours == pytest.approx(expected) and 20 < report.hours < 21
    assert report.cost == pytest.approx(expected * 2 * 1.10)


# ------------------------------------------------------------------------------------ checkpoints, disk


def test_checkpoint_size_and_disk():
    report = _a100_plan()
    assert DEEPSPEED_BF16.bytes_per_param == 16 and DEEPSPEED_BF16.state_bytes_per_param == 14
    assert 85 * GB <= report.checkpoint_bytes <= 100 * GB
    assert report.checkpoint_bytes == 16 * 6_050_882_784
    assert 84 * GB < 14 * GPTJ_6B.total_params < 85 * GB  # the state without Trainer's model copy
    assert FP32_PARAMS.bytes_per_param * GPTJ_6B.total_params == pytest.approx(72.6e9, rel=1e-3)
    assert report.export_bytes == 2 * GPTJ_6B.total_params
    # The original's 200 GB disk holds two checkpoints, not the three (kept 2 + the one being written) + export.
    assert report.checkpoints_fit == 2
    assert report.disk_needed == 3 * report.checkpoint_bytes + report.export_bytes
    assert report.disk_ok is False
    assert _a100_plan(disk_free_bytes=400 * GB).disk_ok is True
    assert _a100_plan(disk_free_bytes=None).disk_ok is None
    # LoRA r=8 on q_proj and v_proj: fp32 adapters and AdamW moments, 4 tensors (with the step) per A and B of each
    assert report.lora_checkpoint_bytes == 12 * 3_670_016 + 4 * 2 * 28 * 2 * TENSOR_OVERHEAD_BYTES + EXTRA_STATE_BYTES
    assert report.lora_export_bytes == 4 * 3_670_016 + 2 * GPTJ_6B.total_params  # adapters + the merged bf16 model
    lora = _a100_plan(strategy="lora", disk_free_bytes=20 * GB)
    assert lora.run_sizes == ("LoRA", lora.lora_checkpoint_bytes, lora.lora_export_bytes)
    assert lora.disk_needed == 3 * lora.lora_checkpoint_bytes + lora.lora_export_bytes and lora.disk_ok
    assert "\ndisk: 20.0 GB free holds 444 LoRA checkpoint(s); keeping 2 needs 3 x 45.0 MB + export = 12.3 GB: " \
           "enough" in "\n".join(lora.lines())


def test_lines_say_the_verdicts():
    text = "\n".join(_a100_plan().lines())
    assert "6,050,882,784 parameters" in text and "6,053,381,344" in text
    assert "36.48 GFLOP/token" in text
    assert "\n  overton train ddp over 2                  102.0 GiB  DOES NOT FIT\n" in text
    assert "\n  overton train fsdp over 2                  50.9 GiB  DOES NOT FIT\n" in text
    assert "\n  overton train fsdp over 2 + CPU offload     5.9 GiB  fits, host RAM 90.2 GiB\n" in text
    assert "\n  overton train lora r=8 on 2 projections    12.2 GiB  fits\n" in text
    assert "\nverdict: overton train cannot run full fine-tuning here (nothing fits: ddp 102.0 GiB" in text
    assert ("\nfits on 2 x A100-40GB: fsdp + CPU offload 5.9 GiB per GPU and 90.2 GiB of host RAM; lora r=8 12.2 "
            "GiB per GPU\n") in text
    assert ("\nfull fine-tuning without offload fits on: 4 x A100-40GB (fsdp, 10.1 h), 2 x A100-80GB (fsdp, 20.3 h), "
            "2 x H100-80GB (fsdp, 6.4 h), 1 x H200-141GB (ddp, 12.8 h)\n") in text
    assert "96.8 GB each" in text and "NOT ENOUGH" in text
    assert "20.3 h, 40.6 GPU-hours, 44.65 EUR; LoRA (24.79 GFLOP/token) 13.8 h" in text
    assert "disk: not checked" in "\n".join(_a100_plan(disk_free_bytes=None).lines())


def test_every_way_priced_is_one_overton_train_runs():
    for report in (_a100_plan(), _a100_plan(gpus=8, gpu_name="A100-80GB"), _a100_plan(gpus=1, gpu_name="H200-141GB"),
                   _a100_plan(gpus=4, gpu_name="H100-80GB", global_batch=32)):
        rows = [line.strip() for line in report.lines() if line.startswith("  ") and "GiB  " in line]
        assert len(rows) == (4 if report.gpus > 1 else 3)  # ddp, fsdp (2 GPUs or more), fsdp + offload, lora
        assert all(row.startswith("overton train ") for row in rows), rows
        assert not any("not available" in line for line in report.lines())


def test_strategy_lora_is_run_as_set_and_priced_with_its_adapters():
    report = _a100_plan(strategy="lora", lora_targets=LORA_MODULES, lora_merge=False)
    assert report.choice.name == "lora"
    assert report.lora.label == "overton train lora r=8 on 6 projections"
    assert report.lora.total - report.lora.activations == 2 * GPTJ_6B.total_params + 16 * 16_515_072
    assert report.verdict() == ("overton train runs lora (as set: 12.4 GiB per GPU of 36.0 GiB usable on 2 x "
                                "A100-40GB: fits)")
    assert report.lora_export_bytes == 4 * 16_515_072  # the adapters only
    assert "LoRA checkpoints 201.0 MB (fp32 adapters + AdamW moments 12 B per adapter parameter), export 66.1 MB" \
        in "\n".join(report.lines())


# --------------------------------------------------------------------------- what overton train holds


def test_memory_of_overton_train():
    p = GPTJ_6B.total_params
    one = memory_ddp(GPTJ_6B, 1024, 1)
    assert one.weights + one.grads + one.optimizer == 16 * p and one.buckets == 0 and one.runs
    # 6B: activations + the bf16 weight copies autocast makes (0.9 + 10.9 GiB); the fused AdamW step adds nothing
    assert one.working == 2 * GPTJ_6B.matmul_weight_params
    assert one.total == 16 * p + one.activations + 2 * GPTJ_6B.matmul_weight_params
    assert round(one.total / GIB, 1) == 102.0
    ddp = memory_ddp(GPTJ_6B, 1024, 1, gpus=2)  # the gradients are DDP's buckets: nothing more on 2 GPUs
    assert ddp.buckets == 0 and ddp.total == one.total
    # The toy at a long sequence: activations dominate, plus the bf16 copy of every matmul weight.
    toy = memory_ddp(TOY, 16, 64, checkpointing=False)
    act = activation_bytes(TOY, 16, 64, checkpointing=False)
    assert toy.total == 16 * TOY.total_params + act + 2 * TOY.matmul_weight_params


def test_verdicts_say_what_overton_train_runs():
    h200 = _a100_plan(gpus=1, gpu_name="H200-141GB", global_batch=32)
    assert h200.verdict() == ("overton train (strategy auto) takes ddp: full fine-tuning fits (ddp 102.0 GiB per GPU "
                              "of 126.4 GiB usable on 1 x H200-141GB)")
    two = _a100_plan(gpus=2, gpu_name="H200-141GB", global_batch=32)
    assert two.choice.way == "ddp"  # DDP's buckets are its gradients: two hold it as one does
    forced = _a100_plan(gpus=2, gpu_name="H200-141GB", global_batch=32, strategy="fsdp")
    assert forced.verdict() == ("overton train runs fsdp (as set: fsdp 50.9 GiB per GPU of 126.4 GiB usable on "
                                "2 x H200-141GB: fits)")
    small = plan(SIZES["125M"], 10**6, gpus=4, gpu_name="A100-40GB", global_batch=8)
    assert small.verdict().startswith("overton train (strategy auto) takes ddp: full fine-tuning fits (ddp ")
    assert "fits on 4 x A100-40GB: ddp " in "\n".join(small.lines())


# ------------------------------------------------------------------------ shapes without a config


def test_model_sizes():
    assert model_size("6B") == (GPTJ_6B, "the 6B shape")
    assert model_size("6b")[0] is GPTJ_6B and model_size("6e9")[0] is GPTJ_6B
    assert model_size("6050882784") == (GPTJ_6B, "the 6B shape")
    shape, how = model_size("125M")
    assert (shape.n_layer, shape.n_embd, shape.n_head, shape.vocab_size) == (12, 768, 12, 50400)
    assert shape.total_params == 162_465_504
    assert model_size("3B") == (SIZES["2.7B"], "the 2.7B shape, the nearest to 3,000,000,000")
    for bad, message in (("abc", "give a size"), ("0", "give a size"), ("-1", "give a size"),
                         ("20B", "no known GPT-J shape within a factor 2 of 20,000,000,000")):
        with pytest.raises(UserError, match=message):
            model_size(bad)
    assert known_model("EleutherAI/gpt-j-6B").total_params == GPTJ_6B.total_params
    assert known_model("Cedille/fr-boris").name == "Cedille/fr-boris"
    assert known_model("gpt2") is None


def test_durations_under_an_hour_are_minutes():
    assert _hours(0.7) == "42 min" and _hours(0.004) == "under 1 min" and _hours(59.4 / 60) == "59 min"
    assert _hours(0.9999) == "1.0 h" and _hours(20.3) == "20.3 h" and _hours(100) == "100 h (4.2 days)"


# ---------------------------------------------------------------------------------------- the dry run


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A fresh workspace (overton.toml as `overton init` writes it: no tokenizer, no model) with the sample built."""
    return sample_workspace(tmp_path_factory.mktemp("dryrun") / "ws").root


def _copy(built: Path, where: Path, **train: str) -> Path:
    shutil.copytree(built, where, ignore=shutil.ignore_patterns("runs"))
    text = (where / "overton.toml").read_text()
    for key, value in train.items():
        text = set_setting(text, "train", key, value)
    (where / "overton.toml").write_text(text)
    return where


def _dry_run(ws: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "overton"), "train", "-w", str(ws), "--dry-run", *options],
                          capture_output=True, text=True, timeout=120)


def test_dry_run_without_tokenizer_or_model_config(built, tmp_path: Path):
    ws = _copy(built, tmp_path / "ws")
    # The command's own process, asked afterwards whether the dry run imported torch.
    code = ("import sys; from overton.cli import main; code = main(sys.argv[1:]); "
            "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "train", "-w", str(ws), "--dry-run", "--model-size", "6B",
                           "--gpus", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "no torch\n"
    out = done.stdout
    characters = sum(len(d["text"]) for d in documents(Version.open(ws / "datasets" / "overton")))
    tokens = round(characters / CHARS_PER_TOKEN)
    assert CHARS_PER_TOKEN == 2.9
    assert f": about {tokens:,} tokens selected ({tokens // 1024} sequences of 1024)" in out
    assert (f"\ntokens estimated from {characters:,} characters at 2.9 characters per token; set [train] tokenizer "
            "for an exact count\n") in out
    assert "\nmodel: assumed the 6B shape (--model-size 6B); no config.json read\n" in out
    assert "budget for GPT-J 6B: 28 layers, d=4096, 16 heads, vocab 50400, 6,050,882,784 parameters" in out
    # [train] defaults: 1,000 steps of 8 sequences of 1,024 tokens, on 2 x A100-40GB at 40 % MFU: 20 minutes.
    sequences = math.floor(tokens // 1024 * (1000 * 8 / (tokens // 1024)))
    minutes = sequences * 1024 * 36_475_952_448 / (0.4 * 312e12 * 2) / 60
    assert 19 < minutes < 21
    assert f"time: full fine-tuning {round(minutes)} min, 0.7 GPU-hours; LoRA (" in out
    lines = out.splitlines()
    for label in ("overton train ddp over 2", "overton train fsdp over 2 "):  # [train] defaults: no checkpointing
        row = next(line for line in lines if line.startswith(f"  {label}"))
        assert row.endswith("DOES NOT FIT"), row
    row = next(line for line in lines if line.startswith("  overton train fsdp over 2 + CPU offload"))
    assert row.endswith("fits, host RAM 90.2 GiB"), row
    row = next(line for line in lines if line.startswith("  overton train lora r=8 on 6 projections"))  # [train.lora]
    assert row.endswith(" 17.9 GiB  fits"), row
    verdict = next(line for line in lines if line.startswith("verdict: "))
    assert verdict.startswith("verdict: overton train cannot run full fine-tuning here (nothing fits: ddp 107.4 GiB "
                              "per GPU, fsdp 56.4 GiB per GPU of 36.0 GiB usable on 2 x A100-40GB; with [train] "
                              "offload = true, fsdp + CPU offload")
    fits = next(line for line in lines if line.startswith("fits on 2 x A100-40GB: "))
    items = fits.removeprefix("fits on 2 x A100-40GB: ").split("; ")
    assert len(items) == 2 and items[0].startswith("fsdp + CPU offload 11.3 GiB per GPU")
    assert items[1] == "lora r=8 17.9 GiB per GPU"
    assert "\nfull fine-tuning without offload fits on: 4 x A100-40GB (fsdp, " in out
    assert ", 1 x H200-141GB (ddp, " in out


def test_dry_run_of_gptj_6b_on_four_a100_40gb_takes_fsdp(built, tmp_path: Path):
    done = _dry_run(_copy(built, tmp_path / "ws"), "--model-size", "6B", "--gpus", "4", "--gpu", "A100-40GB")
    assert done.returncode == 0, done.stderr
    # [train] defaults: no activation checkpointing (6.4 GiB of activations); 22.5 GiB of state, 5.0 of working set
    assert ("\nverdict: overton train (strategy auto) takes fsdp: full fine-tuning fits (fsdp 33.9 GiB per GPU of "
            "36.0 GiB usable on 4 x A100-40GB; ddp 107.4 GiB per GPU would not fit)\n") in done.stdout
    assert "\n  overton train fsdp over 4                  33.9 GiB  fits\n" in done.stdout


def test_dry_run_with_a_tokenizer_counts_exactly_and_a_known_model_needs_no_config(built, tmp_path: Path):
    ws = _copy(built, tmp_path / "ws", tokenizer='"tokenizer"', model='"Cedille/fr-boris"')
    texts = [d["text"] for d in documents(Version.open(ws / "datasets" / "overton"))]
    train_tokenizer(ws / "tokenizer", texts)
    done = _dry_run(ws)
    assert done.returncode == 0, done.stderr
    from overton.corpus.workspace import Workspace

    settings = Workspace.open(ws).config().train
    exact = PackedStream(str(ws / "datasets" / "overton"), Tokenizer(str(ws / "tokenizer")), 1024, 0,
                         tmp_path / "cache", selection(settings)).selected_tokens()
    assert exact != round(sum(map(len, texts)) / CHARS_PER_TOKEN)
    assert f"overton: {exact:,} tokens selected ({exact // 1024} sequences of 1024)" in done.stdout
    assert "estimated" not in done.stdout and "about" not in done.stdout
    assert "\nmodel: assumed the known shape of Cedille/fr-boris; no config.json read\n" in done.stdout
    assert "budget for Cedille/fr-boris: 28 layers, d=4096, 16 heads" in done.stdout


@pytest.mark.parametrize(("options", "message"), [
    (["--model-size", "abc"], "--model-size 'abc': give a size (125M, 350M, 1.3B, 2.7B, 6B) or a parameter count"),
    (["--model-size", "20B"], "--model-size 20B: no known GPT-J shape within a factor 2 of 20,000,000,000 parameters"),
    ([], "set [train] model (a pretrained folder) or from_config (a GPT-J config.json), or give --model-size"),
])
def test_dry_run_model_mistakes_are_one_line(built, tmp_path: Path, options, message):
    done = _dry_run(_copy(built, tmp_path / "ws"), *options)
    assert done.returncode == 2
    assert done.stderr.startswith(f"overton: error: {message}") and done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_model_size_without_dry_run_is_refused(built, tmp_path: Path):
    done = subprocess.run([str(BIN / "overton"), "train", "-w", str(built), "--model-size", "6B"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == ("overton: error: --model-size sizes a --dry-run only: overton train trains [train] model "
                           "or from_config\n")
