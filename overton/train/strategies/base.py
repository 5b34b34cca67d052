"""The contract every training strategy keeps, and what they share: AdamW, clipping, checkpoints through DCP.

Checkpoints of every strategy are written with ``torch.distributed.checkpoint`` (DCP): each process writes
its part in parallel (``__<rank>_<n>.distcp``; rank 0 adds ``.metadata``, the index of every tensor's
pieces), and a checkpoint loads on any number of processes and under any strategy, because DCP reads each
parameter by name and reshards it. Model and optimizer state go through ``get_state_dict`` and
``set_state_dict`` (``torch.distributed.checkpoint.state_dict``), which key both by parameter name whatever
wraps the model. One format for every strategy: DCP reads back exactly the bytes that were written, so a
one-process or DDP run resumes bit for bit as it did with ``torch.save``, and writes faster under DDP
(the replicated state is split between the ranks instead of written by rank 0 alone).
Checkpoints of earlier versions (``model.pt`` and ``optimizer.pt``, whole states saved by rank 0) still
load into a model that is not sharded.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import ClassVar

import torch

from overton.corpus.config import TrainConfig
from overton.corpus.errors import UserError
from overton.train.checkpoint import estimate_checkpoint_bytes
from overton.train.distributed import Distributed
from overton.train.model import export, export_bytes

# Files of a checkpoint written by earlier versions (torch.save of the whole state by rank 0).
LEGACY_MODEL, LEGACY_OPTIMIZER = "model.pt", "optimizer.pt"
DCP_METADATA = ".metadata"
# The file that marks a checkpoint of LoRA adapters (``strategies/lora.py``): it holds no weights of the model.
ADAPTERS_RECORD = "lora.json"


class Strategy:
    """One way of training. Every method is called on every rank (process), in the same order.

    1. ``Strategy(dist, settings, bf16)``: no collective, nothing moved yet.
    2. ``prepare(model)``: takes the ``GPTJForCausalLM`` just loaded (fp32, on the CPU, ``use_cache`` off,
       activation checkpointing already enabled when the settings ask for it) and sets:

       * ``self.model``: what the training forward runs, ``self.model(input_ids=ids, labels=labels).loss``
         (the DDP wrapper, the sharded model, ...);
       * ``self.module``: the model itself, with ``GPTJForCausalLM``'s API: evaluation runs it (under
         ``torch.no_grad``, on every rank) and ``export`` saves it;
       * ``self.optimizer``: AdamW over ``trainable()`` (``make_optimizer``);
       * ``self.checkpoint_bytes`` and ``self.export_bytes``: the size of one checkpoint (all ranks
         together) and of the export, for the disk preflight (``measure(model)``, before any sharding).

    3. Each optimizer step: for each micro-batch ``with strategy.accumulate(last), strategy.autocast():``
       the forward, then the backward of ``loss / accumulation``; then ``clip(max_norm)`` returns the
       global gradient norm before clipping (a tensor on every rank); the trainer steps the optimizer
       and zeroes the gradients. Averaging the gradients over the ranks is the strategy's business.
    4. ``save(folder)`` writes the model and optimizer state into ``folder`` (empty, shared by the ranks)
       and returns the files this rank wrote, which it then hashes (what no rank claims, rank 0 hashes);
       ``load(folder)`` reads a checkpoint written by any strategy on any number of ranks. The trainer
       adds the scheduler, the RNG states and the loader's state, and commits.
    5. ``export(folder, tokenizer)``: a full Hugging Face folder that ``AutoModelForCausalLM`` loads, in
       ``export_dtype``; the path on rank 0, None elsewhere.

    A subclass sets ``name`` and implements ``prepare``; it overrides what differs (``trainable`` for
    adapters, ``accumulate`` for gradient synchronisation, ``autocast`` when its own mixed precision
    replaces autocast, ``clip`` for sharded gradients, ``state_options`` for a partial state).
    """

    name: ClassVar[str] = ""

    def __init__(self, dist: Distributed, settings: TrainConfig, bf16: bool):
        self.dist, self.settings, self.bf16 = dist, settings, bf16
        self.model: torch.nn.Module | None = None
        self.module: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.checkpoint_bytes = self.export_bytes = 0

    # ---------------------------------------------------------------------------- set up

    def prepare(self, model: torch.nn.Module) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """What the start line says about the strategy, e.g. ``ddp over 2 processes``."""
        return self.name if self.dist.world == 1 else f"{self.name} over {self.dist.world} processes"

    @property
    def export_dtype(self) -> torch.dtype:
        """The precision the run trained in: bf16 when it computed in bf16, else fp32."""
        return torch.bfloat16 if self.bf16 else torch.float32

    def measure(self, model: torch.nn.Module, shards: int = 1) -> None:
        """Sizes of one checkpoint (each tensor saved in ``shards`` pieces) and of the export, from the whole
        model: call it before sharding."""
        self.checkpoint_bytes = estimate_checkpoint_bytes(model, shards=shards)
        self.export_bytes = export_bytes(model, self.export_dtype)

    def trainable(self) -> list[torch.nn.Parameter]:
        """The parameters that train: those AdamW updates and clipping measures."""
        return [p for p in self.module.parameters() if p.requires_grad]

    def make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over ``trainable()``; fused when they are all on GPUs (one in-place kernel, no foreach buffer); on
        CPUs (and for shards offloaded there) torch's default, which the CPU tests' exact resumes were measured with."""
        s = self.settings
        parameters = self.trainable()
        fused = True if all(p.device.type == "cuda" for p in parameters) else None
        return torch.optim.AdamW(parameters, lr=s.lr, betas=(s.adam_beta1, s.adam_beta2),
                                 weight_decay=s.weight_decay, fused=fused)

    # ---------------------------------------------------------------------------- a step

    def accumulate(self, last: bool) -> contextlib.AbstractContextManager:
        """The context of one micro-batch's forward and backward; ``last``: the step's last micro-batch."""
        return contextlib.nullcontext()

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast over fp32 parameters when training in bf16."""
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def clip(self, max_norm: float) -> torch.Tensor:
        """Clip the gradients by their global L2 norm; the norm before clipping."""
        return torch.nn.utils.clip_grad_norm_(self.trainable(), max_norm)

    # ---------------------------------------------------------------------------- state

    def state_options(self):
        """``StateDictOptions`` of ``get_state_dict`` and ``set_state_dict``; None: every parameter, all required."""
        return None

    def state_dicts(self) -> tuple[dict, dict]:
        """The model's and the optimizer's state dicts as DCP saves and loads them (keyed by parameter name)."""
        from torch.distributed.checkpoint.state_dict import get_state_dict

        return get_state_dict(self.module, self.optimizer, options=self.state_options())

    def save(self, folder: Path) -> list[Path]:
        """Write the model and optimizer state (DCP); the files this rank wrote."""
        import torch.distributed.checkpoint as dcp

        model, optimizer = self.state_dicts()
        with warnings.catch_warnings():  # alone, DCP warns that it saves alone, which is what no_dist asks
            warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
            dcp.save({"model": model, "optimizer": optimizer}, checkpoint_id=folder, no_dist=_alone())
        mine = sorted(folder.glob(f"__{self.dist.rank}_*.distcp"))
        return mine + [folder / DCP_METADATA] if self.dist.main else mine

    def check(self, folder: Path) -> None:
        """Refuse, with one line, a checkpoint this strategy cannot resume: LoRA adapters, without the model."""
        if (folder / ADAPTERS_RECORD).is_file():
            raise UserError(f"{folder}: a checkpoint of LoRA adapters, without the model's weights; resume it with "
                            "[train] strategy = \"lora\" (or another [train] output for a new run)")

    def load(self, folder: Path) -> None:
        """Read the model and optimizer state of a checkpoint written by any strategy on any number of ranks
        (but LoRA's, which ``check`` refuses)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        self.check(folder)
        if (folder / LEGACY_MODEL).is_file():
            self.load_legacy(folder)
            return
        model, optimizer = self.state_dicts()
        state = {"model": model, "optimizer": optimizer}
        dcp.load(state, checkpoint_id=folder, no_dist=_alone())
        set_state_dict(self.module, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"], options=self.state_options())

    def load_legacy(self, folder: Path) -> None:
        """A checkpoint of an earlier version: the whole model and optimizer states, as ``torch.save`` wrote them."""
        load = {"map_location": self.dist.device, "weights_only": True}
        self.module.load_state_dict(torch.load(folder / LEGACY_MODEL, **load))
        self.optimizer.load_state_dict(torch.load(folder / LEGACY_OPTIMIZER, **load))

    def full_state(self) -> dict[str, torch.Tensor] | None:
        """Every parameter and buffer of the whole model on rank 0 (None on the others); every rank calls it."""
        return self.module.state_dict() if self.dist.main else None

    def export(self, folder: Path, tokenizer: str) -> Path | None:
        """``save_pretrained`` of the whole model in ``export_dtype``, with the tokenizer; the path on rank 0."""
        state = self.full_state()
        if not self.dist.main:
            return None
        return export(self.module, folder, self.export_dtype, tokenizer, state)


def _alone() -> bool:
    """One process without a process group (ddp on one process): DCP then reads and writes without collectives."""
    return not torch.distributed.is_initialized()


def refuse_legacy(strategy: Strategy, folder: Path) -> None:
    """For sharded strategies: an earlier version's whole-state checkpoint is resumed with ddp first."""
    raise UserError(f"{folder}: a checkpoint of an earlier version (model.pt); resume it with [train] strategy = "
                    f"\"ddp\" until its next save, then {strategy.name} can go on from there")
