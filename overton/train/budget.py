"""What a training run needs, computed before anyone rents a GPU (``overton train --dry-run``).

Pure arithmetic on a model shape (a GPT-J config dict, or one of the known shapes of ``SIZES`` when there is
none), the data size and the hardware: no torch, no transformers, no download. ``plan(...)`` returns a
``BudgetReport``; its ``lines()`` is what the dry run prints.

Every figure below is a formula with a source; the memory ones are estimates (allocator fragmentation,
CUDA context and NCCL buffers are left to the headroom, ``HEADROOM`` = 10 % of the card by default).

Parameters (GPT-J as in Hugging Face ``GPTJForCausalLM``; d = n_embd, f = n_inner or 4d, V = vocab_size)::

    input embedding wte          V*d
    per block (28 for GPT-J)     q, k, v, out projections without bias      4*d*d
                                 fc_in d->f with bias, fc_out f->d with bias 2*d*f + f + d
                                 one LayerNorm ln_1 (parallel attention and MLP) 2*d
    final ln_f                   2*d
    lm_head (untied) with bias   d*V + V

GPT-J 6B: 6,050,882,784, the number PyTorch counts. The model card's 6,053,381,344 counts the
Mesh Transformer JAX checkpoint, which keeps a copy of every LayerNorm and of fc_out's bias on each of
its 8 model-parallel shards, plus a bias on the input embedding (mesh-transformer-jax ``to_hf_weights.py``
keeps one LayerNorm copy, sums the fc_out biases and drops the embedding bias):
``ModelShape.mesh_jax_params(8)`` reproduces it, 2,498,560 more.

FLOPs per trained token (PaLM, Chowdhery et al. 2022, appendix B; Kaplan et al. 2020, table 1)::

    6*N + 12*n_layer*n_embd*seq_len

N = every parameter but the input embedding (a lookup, no FLOPs): the matmul weights (q, k, v, out,
fc_in, fc_out per block, and GPT-J's untied lm_head) with their biases and the LayerNorms (0.01 % of N).
GPT-J 6B at 1024 tokens: 36.48 GFLOP (the matmul weights alone give 36.47). The second term is the
attention scores and their weighted sum (QK^T and AV, forward 2+2 FLOPs per position, times 3 with the
backward pass). MFU = tokens/s * FLOPs per token / (peak FLOP/s * GPUs); recomputation of activations is
not counted (it is model FLOPs, not hardware FLOPs). LoRA trains no base weight, so the backward pass
skips the weight gradients of the base: 4*N + 12*n_layer*n_embd*seq_len.

Memory per GPU of each way ``overton train`` trains (``overton.train.strategies``), every one of them full
fine-tuning with fp32 parameters and AdamW: fp32 weights 4 + fp32 gradients 4 + fp32 AdamW moments m, v 8
= 16 B/param of training state (the ZeRO paper's "16Φ", Rajbhandari et al. 2020, section 3.1, has the same
16 with bf16 weights and gradients beside fp32 master weights).

* ``ddp`` (``memory_ddp``): the 16 B/param on every GPU. DDP's gradient buckets cost nothing more: with
  ``gradient_as_bucket_view`` the gradients are views into them (``DDP_BUCKET_BYTES`` = 0; measured on the
  CPU with gloo, 2 processes: 10.48 B/param above the weights without it, 6.48 with it). The forward and
  backward passes add the activations and the bf16 copy autocast makes of each matmul weight (2 B); the
  optimizer step adds nothing: AdamW is fused on GPUs, one in-place kernel (measured on the CPU, first
  step: 0.05 B/param above the moments fused, 4.12 with ``foreach``, which holds sqrt(v) of every
  parameter at once). GPT-J 6B: 102.0 GiB per GPU, one GPU or many (1,024 tokens, micro-batch 1,
  activation checkpointing).
* ``fsdp`` over N GPUs (``memory_fsdp``): the 16 B/param divided by N, plus the whole bf16 units in flight
  (the working set) plus the activations. The root unit (the embedding, ``lm_head`` and the last
  LayerNorm) stays gathered from its forward to the end of the backward: its bf16 weights 2, its bf16
  gradients 2 and their fp32 copy for the reduce-scatter 4, 8 B per root parameter; the blocks: two
  gathered at once (the one computing and the one prefetched, 2 B each) and one block's bf16 gradients and
  fp32 copy (6 B), 10 B per block parameter. GPT-J 6B: 4.9 GiB of working set; 22.5 GiB of state per GPU
  over 4. With ``offload`` the 16 B/param live in host RAM (all GPUs' shards together) and the GPUs hold
  the working set and the activations.
* ``lora`` (``memory_lora``; Hu et al. 2021): the frozen base in bf16 on every GPU (2 B/param) + 16 B per
  adapter parameter (fp32 weight, gradient and AdamW moments), rank r on the projections of ``[train.lora]``,
  r*(in + out) each, + the activations. Only by name (``strategy = "lora"``): it trains something else than
  full fine-tuning, so ``auto`` never takes it. Its checkpoints hold the adapters and their moments.

``choose_strategy`` is what ``[train] strategy = "auto"`` runs, in the trainer (with the GPUs present) and in
the dry run (with ``[train.budget]``'s): ``ddp`` when it fits, else ``fsdp``, else (with ``offload =
true``) ``fsdp`` with CPU offload; each is slower than the one before (sharding adds the gathers and
reduce-scatters of every block, offload the copies to and from the host and a CPU optimizer step).

Activations are never divided by data parallelism or ZeRO. Per block, bf16, no recomputation
(Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", eq. 1, with
t = 1)::

    s*b*h*(34 + 5*a*s/h) bytes    (s sequence length, b micro-batch, h = n_embd, a = n_head)

derived for a GPT block with two LayerNorms and dropout, so an upper bound for GPT-J (one LayerNorm, no
dropout in fine-tuning). The 5*a*s/h term is the attention score matrices; a fused (flash) attention
kernel does not store them (``flash_attention=True``). With full activation checkpointing only each
block's input is kept, 2*s*b*h bytes per block (same paper, section 4.1), plus the full activations of
the one block being recomputed in the backward pass. The logits add 10*s*b*V bytes (bf16 logits,
their fp32 copy that ``GPTJForCausalLM`` makes for the loss, the fp32 log-softmax kept for backward).

Checkpoints (``CheckpointFormat``): by default what Hugging Face Trainer + DeepSpeed writes for a bf16
run, bf16 weights 2 + fp32 master weights 4 + fp32 moments 8 = 14 B/param of training state, plus the
2 B/param bf16 model copy Trainer saves in the same folder: 16 B/param. GPT-J 6B: 84.7 GB of state,
96.8 GB with the copy: the original run's 85-97 GB checkpoints. ``FP32_PARAMS`` is a trainer that keeps
fp32 parameters and autocasts (12 B/param, 72.6 GB). The disk must hold the kept checkpoints, the one
being written and the final bf16 export, the rule ``overton.train.checkpoint`` enforces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from overton.corpus.errors import UserError
from overton.train.checkpoint import checkpoint_bytes, human_bytes

MIB = 1 << 20
GIB = 1 << 30
GB = 10**9

HEADROOM = 0.10  # share of each card's memory left free: CUDA context, NCCL buffers, fragmentation

BF16_WEIGHT = 2
FP32_MASTER = 4
ADAM_MOMENTS = 8

# What ``overton train`` holds (overton.train.strategies: fp32 parameters, fused AdamW on GPUs).
TRAINER_STATE_BYTES = 4 + 4 + ADAM_MOMENTS  # fp32 weights, fp32 gradients, fp32 AdamW moments: 16
DDP_BUCKET_BYTES = 0  # gradient_as_bucket_view: the gradients are DDP's buckets (4 B/param without it)
STEP_BYTES = 0  # fused AdamW updates in place (torch's foreach step would hold sqrt(v) of all: 4 B/param)
AUTOCAST_COPY_BYTES = 2  # ddp: the bf16 copy autocast makes of each matmul weight, kept from forward to backward
# fsdp's working set per parameter of a unit: the root stays gathered (bf16 weights 2 + bf16 gradients 2 + their
# fp32 copy for the reduce-scatter 4); blocks: two gathered (2 + 2) and one's gradients with their fp32 copy (6).
FSDP_ROOT_BYTES = 8
FSDP_BLOCK_BYTES = 10

# Per block activation bytes, Korthikanti et al. 2022 eq. 1: s*b*h*(34 + 5*a*s/h).
ACT_LINEAR = 34
ACT_ATTENTION = 5
ACT_CHECKPOINT = 2  # bytes per s*b*h kept per block under full recomputation (the bf16 block input)
LOGIT_BYTES = 10  # per logit: bf16 2 + fp32 copy 4 + fp32 log-softmax 4

POWERS_OF_TWO = (1, 2, 4, 8, 16, 32, 64, 128)


# ------------------------------------------------------------------------------------------ model shape

# transformers' GPTJConfig defaults: a config.json saved by transformers omits keys equal to them.
_GPTJ_DEFAULTS: dict[str, Any] = {
    "n_layer": 28, "n_embd": 4096, "n_head": 16, "vocab_size": 50400, "n_positions": 2048,
    "rotary_dim": 64, "n_inner": None, "tie_word_embeddings": False,
}

# LoRA target names as in transformers' GPT-J modules, each with its (in, out) features as a function of d, f.
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out")


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a GPT-J model, all the budget needs."""

    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    n_positions: int = 2048
    rotary_dim: int | None = 64
    n_inner: int | None = None  # None: 4 * n_embd
    tie_word_embeddings: bool = False
    name: str = "GPT-J"

    def __post_init__(self) -> None:
        for key in ("n_layer", "n_embd", "n_head", "vocab_size", "n_positions"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserError(f"model config: {key} must be a positive integer, not {value!r}")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner <= 0):
            raise UserError(f"model config: n_inner must be a positive integer or null, not {self.n_inner!r}")
        if self.n_embd % self.n_head:
            raise UserError(f"model config: n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")

    @classmethod
    def from_gptj_config(cls, config: Mapping[str, Any], name: str | None = None) -> ModelShape:
        """From a transformers ``GPTJConfig`` dict (``config.json``); missing keys take GPTJConfig's defaults."""
        if config.get("model_type", "gptj") != "gptj":
            raise UserError(f"model config: model_type is {config['model_type']!r}, the budget knows GPT-J ('gptj')")
        values = {key: config.get(key, default) for key, default in _GPTJ_DEFAULTS.items()}
        values["tie_word_embeddings"] = bool(values["tie_word_embeddings"])
        label = name or config.get("_name_or_path") or "GPT-J"
        return cls(**values, name=str(label))

    # ---- dimensions

    @property
    def d_ff(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    # ---- parameter counts (transformers' GPTJForCausalLM)

    @property
    def embedding_params(self) -> int:
        """The input embedding table wte, V*d."""
        return self.vocab_size * self.n_embd

    @property
    def attention_params(self) -> int:
        """Per block: q, k, v and out projections, d*d each, no bias."""
        return 4 * self.n_embd * self.n_embd

    @property
    def mlp_params(self) -> int:
        """Per block: fc_in d->f and fc_out f->d with their biases."""
        d, f = self.n_embd, self.d_ff
        return 2 * d * f + f + d

    @property
    def layer_params(self) -> int:
        """One block: attention + MLP + its single LayerNorm (GPT-J's attention and MLP run in parallel)."""
        return self.attention_params + self.mlp_params + 2 * self.n_embd

    @property
    def lm_head_params(self) -> int:
        """The output projection: d*V weight (shared with wte when tied) and a V bias."""
        return (0 if self.tie_word_embeddings else self.n_embd * self.vocab_size) + self.vocab_size

    @property
    def total_params(self) -> int:
        """Every parameter, counted once: 6,050,882,784 for GPT-J 6B."""
        return self.embedding_params + self.n_layer * self.layer_params + 2 * self.n_embd + self.lm_head_params

    @property
    def matmul_weight_params(self) -> int:
        """The weights of every matrix multiply (lm_head included, even when tied), no bias, no LayerNorm."""
        d, f = self.n_embd, self.d_ff
        return self.n_layer * (4 * d * d + 2 * d * f) + d * self.vocab_size

    @property
    def matmul_params(self) -> int:
        """N of the FLOPs formula: every parameter but the input embedding (lm_head counted even when tied)."""
        tied = self.n_embd * self.vocab_size if self.tie_word_embeddings else 0
        return self.total_params - self.embedding_params + tied

    @property
    def largest_unit_params(self) -> int:
        """The largest FSDP/ZeRO-3 unit (one block, or the embedding, or lm_head): what is gathered at once."""
        return max(self.layer_params, self.embedding_params, self.lm_head_params)

    def mesh_jax_params(self, shards: int = 8) -> int:
        """The count of the Mesh Transformer JAX checkpoint (GPT-J model card: 6,053,381,344 with 8 shards).

        Each of the ``shards`` model-parallel shards keeps its own copy of every LayerNorm (28 ln_1 and ln_f)
        and of fc_out's bias, and the input embedding is a linear layer with a bias on each shard.
        """
        if shards < 1:
            raise ValueError("shards must be >= 1")
        replicated = self.n_layer * (2 * self.n_embd + self.n_embd) + 2 * self.n_embd
        return self.total_params + (shards - 1) * replicated + shards * self.n_embd

    def lora_params(self, rank: int, targets: Iterable[str] = ("q_proj", "v_proj")) -> int:
        """Trainable LoRA parameters: r*(in + out) per targeted projection per block."""
        if rank < 1:
            raise UserError(f"LoRA rank must be >= 1, not {rank}")
        d, f = self.n_embd, self.d_ff
        sizes = {"q_proj": (d, d), "k_proj": (d, d), "v_proj": (d, d), "out_proj": (d, d),
                 "fc_in": (d, f), "fc_out": (f, d)}
        total = 0
        for target in targets:
            if target not in sizes:
                raise UserError(f"unknown LoRA target {target!r}; GPT-J has {', '.join(LORA_MODULES)}")
            n_in, n_out = sizes[target]
            total += rank * (n_in + n_out)
        return self.n_layer * total

    def describe(self) -> str:
        return (f"{self.name}: {self.n_layer} layers, d={self.n_embd}, {self.n_head} heads, "
                f"vocab {self.vocab_size}, {self.total_params:,} parameters")


GPTJ_6B = ModelShape(n_layer=28, n_embd=4096, n_head=16, vocab_size=50400, n_positions=2048, rotary_dim=64,
                     n_inner=None, name="GPT-J 6B")


def _gptj_style(n_layer: int, n_embd: int, n_head: int, size: str) -> ModelShape:
    return ModelShape(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=GPTJ_6B.vocab_size,
                      n_positions=GPTJ_6B.n_positions, rotary_dim=GPTJ_6B.rotary_dim, name=f"GPT-J-style {size}")


# The shapes a dry run can assume without a config.json (``--model-size``), by nominal size. 6B is
# EleutherAI/gpt-j-6b's config. The smaller ones take the layers, width and heads of the GPT-3 paper's models
# of that size (Brown et al. 2020, table 2.1, as GPT-Neo 125M, 1.3B and 2.7B did; 1.3B with GPT-Neo's 16 heads,
# the paper's 24 do not divide 2048) and GPT-J's vocabulary, positions and untied output layer, so they hold more
# than their nominal size (125M: 162,465,504 parameters, nearly half of them the embedding and output layer).
SIZES: dict[str, ModelShape] = {
    "125M": _gptj_style(12, 768, 12, "125M"),
    "350M": _gptj_style(24, 1024, 16, "350M"),
    "1.3B": _gptj_style(24, 2048, 16, "1.3B"),
    "2.7B": _gptj_style(32, 2560, 32, "2.7B"),
    "6B": GPTJ_6B,
}
# Hub models whose shape is known without their config.json (fr-boris is GPT-J 6B trained further on French).
KNOWN_MODELS: dict[str, str] = {"eleutherai/gpt-j-6b": "6B", "cedille/fr-boris": "6B"}

_MULTIPLIERS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_COUNT = re.compile(r"(\d+(?:\.\d+)?(?:e\d+)?)([KMBT]?)", re.IGNORECASE)


def _count(text: str) -> float | None:
    """A parameter count written as 6B, 125M, 1.3B, 6e9 or 6050882784; None when it is none of them."""
    match = _COUNT.fullmatch(text.strip())
    return float(match[1]) * _MULTIPLIERS[match[2].upper()] if match else None


def model_size(text: str) -> tuple[ModelShape, str]:
    """The shape ``--model-size`` names: a size of :data:`SIZES`, or the one nearest a parameter count.

    Returns the shape and how it was chosen, for the dry run to say. A count more than a factor 2 away from
    every known size is refused: the budget would describe another model.
    """
    count = _count(text)
    if not count or count < 1:
        raise UserError(f"--model-size {text!r}: give a size ({', '.join(SIZES)}) or a parameter count such as "
                        "6e9")
    nominal = {size: _count(size) for size in SIZES}
    size = min(SIZES, key=lambda s: abs(math.log(count / nominal[s])))
    if not 0.5 <= count / nominal[size] <= 2:
        raise UserError(f"--model-size {text}: no known GPT-J shape within a factor 2 of {count:,.0f} parameters "
                        f"(known: {', '.join(SIZES)}); set [train] from_config to the model's config.json")
    exact = count in (nominal[size], SIZES[size].total_params)
    how = f"the {size} shape" if exact else f"the {size} shape, the nearest to {count:,.0f}"
    return SIZES[size], how


def known_model(name: str) -> ModelShape | None:
    """The shape of a hub model of :data:`KNOWN_MODELS` (any case), named as the settings name it."""
    size = KNOWN_MODELS.get(name.lower())
    return None if size is None else replace(SIZES[size], name=name)


# ---------------------------------------------------------------------------------------------- FLOPs


def flops_per_token(shape: ModelShape, seq_len: int, *, lora: bool = False) -> float:
    """Training FLOPs per token: 6*N + 12*n_layer*n_embd*seq_len (4*N + ... when only LoRA adapters train)."""
    if seq_len < 1:
        raise ValueError("seq_len must be >= 1")
    weights = (4 if lora else 6) * shape.matmul_params
    return float(weights + 12 * shape.n_layer * shape.n_embd * seq_len)


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float, n_gpus: int = 1) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak of all the GPUs together."""
    if peak_flops <= 0 or n_gpus < 1:
        raise ValueError("peak_flops must be > 0 and n_gpus >= 1")
    return tokens_per_s * flops_per_token / (peak_flops * n_gpus)


def train_hours(tokens: float, flops_per_token: float, peak_flops: float, n_gpus: int, mfu: float) -> float:
    """Wall-clock hours to train ``tokens`` at a model FLOPs utilisation ``mfu``."""
    if not 0 < mfu <= 1:
        raise UserError(f"MFU must be in (0, 1], not {mfu}")
    if peak_flops <= 0 or n_gpus < 1:
        raise ValueError("peak_flops must be > 0 and n_gpus >= 1")
    return tokens * flops_per_token / (mfu * peak_flops * n_gpus) / 3600


# ------------------------------------------------------------------------------------------------ GPUs


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int  # nvidia-smi memory.total
    peak_flops: float  # dense bf16 tensor-core FLOP/s


# Peaks: dense bf16 (NVIDIA quotes twice as much "with sparsity").
#   A100: NVIDIA A100 Tensor Core GPU datasheet, BF16 Tensor Core 312 TFLOPS (624 with sparsity), 40 and 80 GB.
#   H100 SXM: NVIDIA H100 Tensor Core GPU datasheet, BF16 Tensor Core 1,979 TFLOPS with sparsity -> 989 dense.
#   H200 SXM: NVIDIA H200 Tensor Core GPU datasheet, BF16 Tensor Core 1,979 TFLOPS with sparsity -> 989 dense.
# Memory: nvidia-smi's memory.total on each card: A100-SXM4-40GB 40960 MiB, A100-SXM4-80GB 81920 MiB,
#   H100 80GB HBM3 81559 MiB, H200 143771 MiB (marketed 141 GB).
GPUS: dict[str, GPU] = {gpu.name: gpu for gpu in (
    GPU("A100-40GB", 40960 * MIB, 312e12),
    GPU("A100-80GB", 81920 * MIB, 312e12),
    GPU("H100-80GB", 81559 * MIB, 989e12),
    GPU("H200-141GB", 143771 * MIB, 989e12),
)}


def gpu(name: str | GPU) -> GPU:
    """A catalogue GPU by name (case and spaces ignored), or the GPU given."""
    if isinstance(name, GPU):
        return name
    wanted = name.upper().replace(" ", "").replace("_", "-")
    for known in GPUS.values():
        if known.name.upper() == wanted:
            return known
    raise UserError(f"unknown GPU {name!r}; known: {', '.join(GPUS)}")


# ---------------------------------------------------------------------------------------------- memory


def activation_bytes(shape: ModelShape, seq_len: int, micro_batch: int, *, checkpointing: bool = True,
                     flash_attention: bool = False) -> int:
    """Activation memory of one micro-batch on one GPU (Korthikanti et al. 2022), logits included."""
    if seq_len < 1 or micro_batch < 1:
        raise ValueError("seq_len and micro_batch must be >= 1")
    s, b, h, a = seq_len, micro_batch, shape.n_embd, shape.n_head
    block = ACT_LINEAR * s * b * h + (0 if flash_attention else ACT_ATTENTION * a * s * s * b)
    logits = LOGIT_BYTES * s * b * shape.vocab_size
    if checkpointing:
        return shape.n_layer * ACT_CHECKPOINT * s * b * h + block + logits
    return shape.n_layer * block + logits


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one GPU holds for one way of training (and host RAM for the offloaded part)."""

    label: str
    weights: int
    grads: int
    optimizer: int
    activations: int
    working: int = 0  # ZeRO-3/FSDP gathered unit; for overton train, what peaks beyond the activations
    host: int = 0  # CPU RAM, all GPUs of the run together
    buckets: int = 0  # DDP's gradient buckets
    runs: bool = False  # overton train runs it (the other ways are not available in this version)

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer + self.activations + self.working + self.buckets

    def fits(self, usable_bytes: int) -> bool:
        return self.total <= usable_bytes


def memory_ddp(shape: ModelShape, seq_len: int, micro_batch: int, *, gpus: int = 1, checkpointing: bool = True,
               flash_attention: bool = False) -> MemoryEstimate:
    """``strategy = "ddp"`` on each GPU: the whole model and AdamW on every GPU (one GPU: the plain model).

    fp32 weights, gradients and AdamW moments (16 B/param); DDP's buckets are the gradients themselves
    (``DDP_BUCKET_BYTES``); then the forward and backward passes: the activations plus the bf16 copies autocast
    makes of the matmul weights (2 B each). The fused optimizer step adds nothing (``STEP_BYTES``).
    """
    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    p = shape.total_params
    act = activation_bytes(shape, seq_len, micro_batch, checkpointing=checkpointing, flash_attention=flash_attention)
    peak = max(act + AUTOCAST_COPY_BYTES * shape.matmul_weight_params, STEP_BYTES * p)
    return MemoryEstimate("overton train ddp, one GPU" if gpus == 1 else f"overton train ddp over {gpus}",
                          weights=4 * p, grads=4 * p, optimizer=ADAM_MOMENTS * p, activations=act,
                          working=peak - act, buckets=DDP_BUCKET_BYTES * p if gpus > 1 else 0, runs=True)


def memory_fsdp(shape: ModelShape, seq_len: int, micro_batch: int, *, gpus: int = 1, offload: bool = False,
                checkpointing: bool = True, flash_attention: bool = False) -> MemoryEstimate:
    """``strategy = "fsdp"`` on each of ``gpus`` GPUs: the 16 B/param of training state sharded, the working set of
    whole bf16 units (``FSDP_ROOT_BYTES`` per root parameter, ``FSDP_BLOCK_BYTES`` per block parameter) and the
    activations; with ``offload`` the state is in host RAM (``host``: all the GPUs' shards together)."""
    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    p = shape.total_params
    act = activation_bytes(shape, seq_len, micro_batch, checkpointing=checkpointing, flash_attention=flash_attention)
    root = p - shape.n_layer * shape.layer_params
    working = FSDP_ROOT_BYTES * root + FSDP_BLOCK_BYTES * shape.layer_params
    label = f"overton train fsdp over {gpus}"
    if offload:
        return MemoryEstimate(f"{label} + CPU offload", weights=0, grads=0, optimizer=0, activations=act,
                              working=working, host=TRAINER_STATE_BYTES * p, runs=True)
    shard = -(-p // gpus)
    return MemoryEstimate(label, weights=4 * shard, grads=4 * shard, optimizer=ADAM_MOMENTS * shard, activations=act,
                          working=working, runs=True)


@dataclass(frozen=True)
class StrategyChoice:
    """What ``[train] strategy`` comes to on some GPUs: the strategy (None: nothing fits), with CPU offload or
    not, its memory per GPU, and the figures that decided it (``reason``, to print in parentheses)."""

    name: str | None
    offload: bool
    memory: MemoryEstimate | None
    reason: str

    @property
    def way(self) -> str:
        return f"{self.name}{' + CPU offload' if self.offload else ''}"


def strategy_options(shape: ModelShape, seq_len: int, micro_batch: int, gpus: int, *, checkpointing: bool,
                     flash_attention: bool = False) -> list[tuple[str, bool, MemoryEstimate]]:
    """The ways overton train runs full fine-tuning on ``gpus`` GPUs, fastest first: (strategy, offload, memory):
    ddp; fsdp (on 2 GPUs or more: on one it shards nothing); fsdp with CPU offload."""
    common = {"checkpointing": checkpointing, "flash_attention": flash_attention}
    options = [("ddp", False, memory_ddp(shape, seq_len, micro_batch, gpus=gpus, **common))]
    if gpus > 1:
        options.append(("fsdp", False, memory_fsdp(shape, seq_len, micro_batch, gpus=gpus, **common)))
    options.append(("fsdp", True, memory_fsdp(shape, seq_len, micro_batch, gpus=gpus, offload=True, **common)))
    return options


def _needs(name: str, offload: bool, memory: MemoryEstimate) -> str:
    host = f" and {_gib(memory.host)} of host RAM" if offload else ""
    return f"{name}{' + CPU offload' if offload else ''} {_gib(memory.total)} per GPU{host}"


def choose_strategy(shape: ModelShape, seq_len: int, micro_batch: int, gpus: int, card: GPU, *,
                    strategy: str = "auto", offload: bool = False, checkpointing: bool = True,
                    flash_attention: bool = False, headroom: float = HEADROOM,
                    host_ram_bytes: int | None = None) -> StrategyChoice:
    """What ``[train] strategy`` (``auto``, ``ddp``, ``fsdp``, ``lora``) comes to on ``gpus`` x ``card``.

    ``auto``: the first of ``strategy_options`` that fits (CPU offload only when ``offload`` allows it, and when
    the host RAM holds it if known); ``name`` None when none does. A strategy named in the settings: that
    one, with whether it fits said. The one function behind the dry run and the trainer, so the dry run never
    promises what the trainer will not do.
    """
    usable = int(card.memory_bytes * (1 - headroom))
    on = f"of {_gib(usable)} usable on {gpus} x {card.name}"
    if strategy == "lora":
        return StrategyChoice("lora", False, None, "as set")
    options = strategy_options(shape, seq_len, micro_batch, gpus, checkpointing=checkpointing,
                               flash_attention=flash_attention)

    def fits(off: bool, memory: MemoryEstimate) -> bool:
        return memory.fits(usable) and not (off and host_ram_bytes is not None and memory.host > host_ram_bytes)

    if strategy != "auto":
        off = strategy == "fsdp" and offload
        name, off, memory = next((o for o in options if o[:2] == (strategy, off)), (strategy, off, options[0][2]))
        verdict = "fits" if fits(off, memory) else "DOES NOT FIT"
        return StrategyChoice(name, off, memory, f"as set: {_needs(name, off, memory)} {on}: {verdict}")
    tried = []
    for name, off, memory in options:
        if off and not offload:
            continue
        if fits(off, memory):
            others = f"; {', '.join(tried)} would not fit" if tried else ""
            return StrategyChoice(name, off, memory, f"{_needs(name, off, memory)} {on}{others}")
        tried.append(_needs(name, off, memory))
    hint = "" if offload else f"; with [train] offload = true, {_needs('fsdp', True, options[-1][2])}"
    return StrategyChoice(None, False, None, f"nothing fits: {', '.join(tried)} {on}{hint}")


def memory_lora(shape: ModelShape, seq_len: int, micro_batch: int, *, rank: int = 8,
                targets: Sequence[str] = ("q_proj", "v_proj"), checkpointing: bool = True,
                flash_attention: bool = False) -> MemoryEstimate:
    """LoRA: frozen bf16 base on every GPU, 16 B per adapter parameter, activations as for full fine-tuning."""
    lora = shape.lora_params(rank, targets)
    act = activation_bytes(shape, seq_len, micro_batch, checkpointing=checkpointing, flash_attention=flash_attention)
    return MemoryEstimate(f"overton train lora r={rank} on {len(tuple(targets))} projections",
                          weights=BF16_WEIGHT * shape.total_params + 4 * lora, grads=4 * lora,
                          optimizer=ADAM_MOMENTS * lora, activations=act, runs=True)


def lora_checkpoint_size(shape: ModelShape, rank: int, targets: Sequence[str]) -> int:
    """One checkpoint of ``strategy = "lora"``, as the trainer's disk check counts it: the fp32 adapters and
    their two AdamW moments (12 B per adapter parameter) and, per adapter tensor (A and B of each targeted
    projection of each block), the weight, the two moments and the step counter."""
    tensors = 4 * 2 * shape.n_layer * len(targets)
    return checkpoint_bytes(shape.lora_params(rank, targets), n_tensors=tensors)


# ----------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class CheckpointFormat:
    """Bytes per parameter of one full fine-tuning checkpoint."""

    name: str
    weights: int  # the model weights in the training state
    master: int  # fp32 master copy (0 when the weights are fp32 already)
    moments: int  # AdamW exp_avg + exp_avg_sq
    model_copy: int  # a separate copy of the model saved in the same folder (Trainer's save_model)

    @property
    def state_bytes_per_param(self) -> int:
        return self.weights + self.master + self.moments

    @property
    def bytes_per_param(self) -> int:
        return self.state_bytes_per_param + self.model_copy

    def formula(self) -> str:
        parts = [f"weights {self.weights}"]
        if self.master:
            parts.append(f"fp32 master {self.master}")
        parts.append(f"fp32 AdamW moments {self.moments}")
        if self.model_copy:
            parts.append(f"model copy {self.model_copy}")
        return " + ".join(parts) + f" = {self.bytes_per_param} B/param"


# Hugging Face Trainer + DeepSpeed, bf16: bf16 weights, fp32 master, fp32 moments, plus the bf16 model copy.
DEEPSPEED_BF16 = CheckpointFormat("bf16 + fp32 master (Trainer + DeepSpeed)", weights=BF16_WEIGHT,
                                  master=FP32_MASTER, moments=ADAM_MOMENTS, model_copy=BF16_WEIGHT)
# A trainer keeping fp32 parameters under autocast (overton.train.checkpoint.checkpoint_bytes's default).
FP32_PARAMS = CheckpointFormat("fp32 parameters + autocast", weights=4, master=0, moments=ADAM_MOMENTS, model_copy=0)


# ---------------------------------------------------------------------------------------------- report


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _hours(h: float) -> str:
    """A duration: minutes under an hour, hours under two days, then hours and days."""
    if round(h * 60) < 60:
        return f"{round(h * 60)} min" if h * 60 >= 0.5 else "under 1 min"
    return f"{h:,.1f} h" if h < 48 else f"{h:,.0f} h ({h / 24:.1f} days)"


@dataclass(frozen=True)
class FullOption:
    """The fewest GPUs of one kind that hold full fine-tuning without offload, with the strategy ``auto`` takes
    there (ddp on one GPU when it fits, else fsdp over the fewest that hold it) and the time at the same MFU."""

    gpu: GPU
    count: int
    strategy: str
    memory: MemoryEstimate
    hours: float

    def describe(self) -> str:
        return f"{self.count} x {self.gpu.name} ({self.strategy}, {_hours(self.hours)})"


@dataclass(frozen=True)
class BudgetReport:
    shape: ModelShape
    gpu: GPU
    gpus: int
    seq_len: int
    micro_batch: int
    grad_accum: int
    epochs: float
    tokens: int  # in the data, one epoch
    sequences: int  # trained, all epochs
    steps: int
    mfu: float
    headroom: float
    activation_checkpointing: bool
    flops_per_token: float
    lora_flops_per_token: float
    hours: float  # full fine-tuning
    lora_hours: float
    price_per_gpu_hour: float | None
    currency: str
    options: tuple[tuple[str, bool, MemoryEstimate], ...]  # strategy_options: (strategy, offload, memory)
    choice: StrategyChoice  # what [train] strategy comes to here
    lora: MemoryEstimate
    lora_rank: int
    activations_other: int  # activations with the other checkpointing choice, for the report
    checkpoint_format: CheckpointFormat
    checkpoint_bytes: int
    export_bytes: int
    lora_checkpoint_bytes: int
    lora_export_bytes: int
    checkpoint_keep: int
    disk_free_bytes: int | None
    host_ram_bytes: int | None
    full_options: tuple[FullOption, ...]

    # ---- derived figures

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.gpus * self.grad_accum

    @property
    def tokens_trained(self) -> int:
        return self.sequences * self.seq_len

    @property
    def total_flops(self) -> float:
        return self.tokens_trained * self.flops_per_token

    @property
    def gpu_hours(self) -> float:
        return self.hours * self.gpus

    @property
    def lora_gpu_hours(self) -> float:
        return self.lora_hours * self.gpus

    @property
    def cost(self) -> float | None:
        return None if self.price_per_gpu_hour is None else self.gpu_hours * self.price_per_gpu_hour

    @property
    def lora_cost(self) -> float | None:
        return None if self.price_per_gpu_hour is None else self.lora_gpu_hours * self.price_per_gpu_hour

    @property
    def usable_bytes(self) -> int:
        """Memory one GPU may fill: the card less the headroom."""
        return int(self.gpu.memory_bytes * (1 - self.headroom))

    def fits(self, estimate: MemoryEstimate | None) -> bool:
        if estimate is None or not estimate.fits(self.usable_bytes):
            return False
        return not (estimate.host and self.host_ram_bytes is not None and estimate.host > self.host_ram_bytes)

    def memory(self, strategy: str, offload: bool = False) -> MemoryEstimate | None:
        """The estimate of one strategy on these GPUs (None: fsdp without offload on one GPU)."""
        return next((m for name, off, m in self.options if (name, off) == (strategy, offload)), None)

    @property
    def lora_fits(self) -> bool:
        return self.fits(self.lora)

    @property
    def run_sizes(self) -> tuple[str, int, int]:
        """What the configured run writes: its kind of checkpoint ("LoRA" for strategy lora, else "full"), the
        size of one, and of the final export."""
        if self.choice.name == "lora":
            return "LoRA", self.lora_checkpoint_bytes, self.lora_export_bytes
        return "full", self.checkpoint_bytes, self.export_bytes

    @property
    def checkpoints_fit(self) -> int | None:
        """How many of the run's checkpoints the free disk holds."""
        return None if self.disk_free_bytes is None else self.disk_free_bytes // self.run_sizes[1]

    @property
    def disk_needed(self) -> int:
        """The kept checkpoints, the one being written and the final export (overton.train.checkpoint's rule)."""
        _kind, checkpoint, export = self.run_sizes
        return (self.checkpoint_keep + 1) * checkpoint + export

    @property
    def disk_ok(self) -> bool | None:
        return None if self.disk_free_bytes is None else self.disk_free_bytes >= self.disk_needed

    # ---- the text

    def _money(self, amount: float | None) -> str:
        return "" if amount is None else f", {amount:,.2f} {self.currency}"

    def verdict(self) -> str:
        """One sentence: what ``[train] strategy`` comes to on this hardware, and the figures that decide it."""
        c = self.choice
        if c.name is None:
            return f"overton train cannot run full fine-tuning here ({c.reason})"
        if c.name == "lora":
            verdict = "fits" if self.lora_fits else "DOES NOT FIT"
            return (f"overton train runs lora (as set: {_gib(self.lora.total)} per GPU of {_gib(self.usable_bytes)} "
                    f"usable on {self.gpus} x {self.gpu.name}: {verdict})")
        if c.reason.startswith("as set"):
            return f"overton train runs {c.way} ({c.reason})"
        return f"overton train (strategy auto) takes {c.way}: full fine-tuning fits ({c.reason})"

    def what_fits(self) -> list[str]:
        """The ways to train that fit this hardware, then the fewest GPUs of each kind for full fine-tuning."""
        here = [_needs(name, off, m) for name, off, m in self.options if self.fits(m)]
        if self.lora_fits:
            here.append(f"lora r={self.lora_rank} {_gib(self.lora.total)} per GPU")
        lines = [f"fits on {self.gpus} x {self.gpu.name}: " + ("; ".join(here) if here else "nothing above")]
        fewest = [o.describe() for o in self.full_options]
        lines.append("full fine-tuning without offload fits on: " + (", ".join(fewest) if fewest else
                                                                      "none of " + ", ".join(GPUS) + " up to 128"))
        return lines

    def lines(self) -> list[str]:
        s = self.shape
        g = self.gpu
        out = [f"budget for {s.describe()}"]
        if s.total_params == GPTJ_6B.total_params:
            out.append(f"  (the model card's {s.mesh_jax_params(8):,} counts the 8 Mesh Transformer JAX shards' "
                       "replicated LayerNorms and biases)")
        out.append(f"data: {self.tokens:,} tokens x {self.epochs:.3g} epoch(s) = {self.sequences:,} sequences of "
                   f"{self.seq_len} tokens; global batch {self.global_batch} = micro-batch {self.micro_batch} x "
                   f"{self.gpus} GPUs x {self.grad_accum} accumulation: {self.steps:,} steps")
        out.append(f"compute: {self.flops_per_token / 1e9:.2f} GFLOP/token (6N + 12*L*d*s, N = "
                   f"{s.matmul_params:,}), {self.total_flops:.3g} FLOP in all; {self.gpus} x {g.name} at "
                   f"{self.mfu:.0%} MFU of {g.peak_flops / 1e12:.0f} TFLOP/s bf16 each")
        price = ("" if self.price_per_gpu_hour is None
                 else f" at {self.price_per_gpu_hour:,.2f} {self.currency}/GPU-hour")
        out.append(f"time: full fine-tuning {_hours(self.hours)}, {self.gpu_hours:,.1f} GPU-hours"
                   f"{self._money(self.cost)}; LoRA ({self.lora_flops_per_token / 1e9:.2f} GFLOP/token) "
                   f"{_hours(self.lora_hours)}, {self.lora_gpu_hours:,.1f} GPU-hours"
                   f"{self._money(self.lora_cost)}{price}")
        ckpt = "with" if self.activation_checkpointing else "without"
        other = "without" if self.activation_checkpointing else "with"
        activations = self.options[0][2].activations
        out.append(f"memory per GPU, activations {ckpt} checkpointing at micro-batch {self.micro_batch} "
                   f"({_gib(activations)}; {other}: {_gib(self.activations_other)}); {g.name} has "
                   f"{_gib(g.memory_bytes)}, {_gib(self.usable_bytes)} usable with {self.headroom:.0%} headroom")
        out.append(f"  (fp32 weights, gradients, AdamW moments {TRAINER_STATE_BYTES} B/param: ddp on each GPU, with "
                   f"autocast's bf16 weight copies {AUTOCAST_COPY_BYTES} B/param; fsdp divided by the GPUs, with the "
                   f"whole bf16 units in flight ({FSDP_ROOT_BYTES} B/param of the root, {FSDP_BLOCK_BYTES} of a "
                   "block); CPU offload: in host RAM)")
        for _name, _off, row in self.options:
            verdict = "fits" if self.fits(row) else "DOES NOT FIT"
            host = f", host RAM {_gib(row.host)}" if row.host else ""
            if row.host and self.host_ram_bytes is not None and row.host > self.host_ram_bytes:
                verdict = f"DOES NOT FIT (host RAM {_gib(self.host_ram_bytes)})"
            out.append(f"  {row.label:<40} {_gib(row.total):>10}  {verdict}{host}")
        verdict = "fits" if self.lora_fits else "DOES NOT FIT"
        out.append(f"  {self.lora.label:<40} {_gib(self.lora.total):>10}  {verdict}")
        out.append("verdict: " + self.verdict())
        out.extend(self.what_fits())
        out.append(f"checkpoints: {human_bytes(self.checkpoint_bytes)} each ({self.checkpoint_format.formula()}), "
                   f"final bf16 export {human_bytes(self.export_bytes)}; "
                   f"LoRA checkpoints {human_bytes(self.lora_checkpoint_bytes)} (fp32 adapters + AdamW moments 12 B "
                   f"per adapter parameter), export {human_bytes(self.lora_export_bytes)}")
        if self.disk_free_bytes is None:
            out.append("disk: not checked (no free space given)")
        else:
            state = "enough" if self.disk_ok else "NOT ENOUGH"
            kind, checkpoint, _export = self.run_sizes
            out.append(f"disk: {human_bytes(self.disk_free_bytes)} free holds {self.checkpoints_fit} {kind} "
                       "checkpoint(s); "
                       f"keeping {self.checkpoint_keep} needs {self.checkpoint_keep + 1} x "
                       f"{human_bytes(checkpoint)} + export = {human_bytes(self.disk_needed)}: {state}")
        return out


def _full_options(shape: ModelShape, seq_len: int, micro_batch: int, tokens: float, mfu: float,
                  headroom: float, checkpointing: bool, flash_attention: bool,
                  catalogue: Iterable[GPU]) -> tuple[FullOption, ...]:
    options = []
    fpt = flops_per_token(shape, seq_len)
    for card in catalogue:
        for count in POWERS_OF_TWO:
            choice = choose_strategy(shape, seq_len, micro_batch, count, card, checkpointing=checkpointing,
                                     flash_attention=flash_attention, headroom=headroom)
            if choice.name is not None:
                options.append(FullOption(card, count, choice.name, choice.memory,
                                          train_hours(tokens, fpt, card.peak_flops, count, mfu)))
                break
    return tuple(options)


def plan(shape: ModelShape, tokens: int, seq_len: int = 1024, gpus: int = 1,
         gpu_name: str | GPU = "A100-40GB", mfu: float = 0.40, price_per_gpu_hour: float | None = None,
         micro_batch: int = 1, epochs: float = 1.0, checkpoint_keep: int = 2, disk_free_bytes: int | None = None,
         *, global_batch: int | None = None, activation_checkpointing: bool = True, flash_attention: bool = False,
         strategy: str = "auto", offload: bool = False,
         lora_rank: int = 8, lora_targets: Sequence[str] = ("q_proj", "v_proj"), lora_merge: bool = True,
         host_ram_bytes: int | None = None,
         headroom: float = HEADROOM, checkpoint_format: CheckpointFormat = DEEPSPEED_BF16,
         currency: str = "EUR") -> BudgetReport:
    """What training ``shape`` on ``tokens`` tokens needs on ``gpus`` x ``gpu_name``.

    ``mfu`` is an assumption (0.40 by default, what a tuned FSDP/DeepSpeed run of a 6B model can reach; the
    original run got 0.15): replace it with the MFU the trainer logs from its first steps. ``global_batch``
    (sequences) defaults to ``micro_batch * gpus``; it must be a multiple of it (the rest is accumulation).
    ``strategy`` and ``offload`` are ``[train]``'s: the report says what they come to (``choose_strategy``).
    ``lora_rank``, ``lora_targets`` and ``lora_merge`` are ``[train.lora]``'s: the adapters, and whether the
    export holds the merged model (bf16) besides them (fp32).
    """
    card = gpu(gpu_name)
    if tokens < 0:
        raise UserError(f"tokens must be >= 0, not {tokens}")
    if gpus < 1 or micro_batch < 1:
        raise UserError(f"gpus and micro-batch must be >= 1, not {gpus} and {micro_batch}")
    if not 1 <= seq_len <= shape.n_positions:
        raise UserError(f"sequence length {seq_len} must be between 1 and the model's {shape.n_positions} positions")
    if epochs <= 0:
        raise UserError(f"epochs must be > 0, not {epochs}")
    if checkpoint_keep < 1:
        raise UserError(f"checkpoints to keep must be >= 1, not {checkpoint_keep}")
    if not 0 <= headroom < 1:
        raise ValueError("headroom must be in [0, 1)")
    per_step = micro_batch * gpus
    if global_batch is None:
        global_batch = per_step
    if global_batch < per_step or global_batch % per_step:
        raise UserError(f"global batch {global_batch} must be a multiple of micro-batch x GPUs = {per_step}")
    sequences = math.floor(tokens // seq_len * epochs)
    steps = math.ceil(sequences / global_batch)
    trained = sequences * seq_len
    fpt = flops_per_token(shape, seq_len)
    lora_fpt = flops_per_token(shape, seq_len, lora=True)
    common = {"checkpointing": activation_checkpointing, "flash_attention": flash_attention}
    lora_params = shape.lora_params(lora_rank, lora_targets)
    return BudgetReport(
        shape=shape, gpu=card, gpus=gpus, seq_len=seq_len, micro_batch=micro_batch,
        grad_accum=global_batch // per_step, epochs=epochs, tokens=tokens, sequences=sequences, steps=steps,
        mfu=mfu, headroom=headroom, activation_checkpointing=activation_checkpointing,
        flops_per_token=fpt, lora_flops_per_token=lora_fpt,
        hours=train_hours(trained, fpt, card.peak_flops, gpus, mfu),
        lora_hours=train_hours(trained, lora_fpt, card.peak_flops, gpus, mfu),
        price_per_gpu_hour=price_per_gpu_hour, currency=currency,
        options=tuple(strategy_options(shape, seq_len, micro_batch, gpus, **common)),
        choice=choose_strategy(shape, seq_len, micro_batch, gpus, card, strategy=strategy, offload=offload,
                               headroom=headroom, host_ram_bytes=host_ram_bytes, **common),
        lora=memory_lora(shape, seq_len, micro_batch, rank=lora_rank, targets=lora_targets, **common),
        lora_rank=lora_rank,
        activations_other=activation_bytes(shape, seq_len, micro_batch, checkpointing=not activation_checkpointing,
                                           flash_attention=flash_attention),
        checkpoint_format=checkpoint_format,
        checkpoint_bytes=checkpoint_format.bytes_per_param * shape.total_params,
        export_bytes=BF16_WEIGHT * shape.total_params,
        lora_checkpoint_bytes=lora_checkpoint_size(shape, lora_rank, lora_targets),
        lora_export_bytes=4 * lora_params + (BF16_WEIGHT * shape.total_params if lora_merge else 0),
        checkpoint_keep=checkpoint_keep, disk_free_bytes=disk_free_bytes, host_ram_bytes=host_ram_bytes,
        full_options=_full_options(shape, seq_len, micro_batch, trained, mfu, headroom, activation_checkpointing,
                                   flash_attention, GPUS.values()),
    )
