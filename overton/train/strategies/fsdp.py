"""``strategy = "fsdp"``: parameters, gradients and AdamW states sharded over the processes (FSDP2).

For models whose training state (16 B/param: fp32 weights, gradients, AdamW moments) does not fit one GPU:
each of the ``W`` processes keeps ``1/W`` of it. ``torch.distributed.fsdp.fully_shard`` wraps every GPT-J
block (``model.transformer.h[i]``) and then the root, which holds the embedding, the final LayerNorm and
``lm_head``. A block's parameters are gathered just before its forward (and again for its backward) and
freed after; its gradients are reduce-scattered as soon as they are computed, so only one or two blocks
are ever whole on a GPU (``budget.memory_fsdp`` prices this).

* Precision: with bf16, ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``: the gathered copies
  compute in bf16, gradients are reduced in fp32 into fp32 sharded gradients, and AdamW updates the fp32
  shards (the master weights). No autocast: the policy casts.
* ``[train] offload = true``: ``CPUOffloadPolicy``; the shards, their gradients and AdamW's states live in
  CPU memory and the optimizer steps there; the GPUs hold only the blocks in flight and the activations.
* Activation checkpointing (``[train] activation_checkpointing``) recomputes each block in its backward.
* Gradient accumulation reduce-scatters after every micro-batch: skipping it would keep a whole unsharded
  gradient (bf16) per process until the last micro-batch, the memory FSDP is there to save.
* On one process the model is still sharded, over a group of one: mixed precision and offload then work as
  on many (e.g. offload lets one GPU train a model whose AdamW states only the CPU memory holds).

Checkpoints are DCP's (``base``): each rank writes its shards; they load on any number of processes.
The export gathers the whole state on rank 0, on the CPU (``full_state_dict``, ``cpu_offload``).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch

from overton.train.strategies.base import Strategy, refuse_legacy


class FsdpStrategy(Strategy):
    name = "fsdp"

    def prepare(self, model: torch.nn.Module) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        self.measure(model, shards=self.dist.world)
        # FSDP2 warns that the model's outputs are views an in-place op would detach from its hooks; the loop
        # never changes them in place (the loss is divided into a new tensor)
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
        d = self.dist
        d.group()
        options = {"mesh": init_device_mesh(d.device.type, (d.world,))}
        if self.bf16:
            options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if self.settings.offload:  # pinned memory needs a GPU
            options["offload_policy"] = CPUOffloadPolicy(pin_memory=d.device.type == "cuda")
        for block in model.transformer.h:
            fully_shard(block, **options)
        fully_shard(model, **options)  # moves each shard to the mesh's device (or keeps it on the CPU: offload)
        self.model = self.module = model
        self.optimizer = self.make_optimizer()

    def describe(self) -> str:
        parts = [f"sharded over {self.dist.world}"]
        if self.bf16:
            parts.append("bf16 compute, fp32 master weights")
        if self.settings.offload:
            parts.append("CPU offload")
        return f"fsdp ({', '.join(parts)})"

    def autocast(self) -> contextlib.AbstractContextManager:
        """None: the mixed-precision policy computes in bf16 over the fp32 shards."""
        return contextlib.nullcontext()

    def clip(self, max_norm: float) -> torch.Tensor:
        """The global norm of the sharded gradients (their shards' norms reduced over the ranks)."""
        from torch.distributed.tensor import DTensor

        norm = torch.nn.utils.clip_grad_norm_(self.trainable(), max_norm)
        return norm.full_tensor() if isinstance(norm, DTensor) else norm

    def load_legacy(self, folder: Path) -> None:
        refuse_legacy(self, folder)

    def full_state(self) -> dict[str, torch.Tensor] | None:
        """The shards gathered into whole tensors on rank 0's CPU, one at a time (every rank takes part)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.dist.main else None
