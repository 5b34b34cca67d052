"""``strategy = "ddp"``: the whole model and AdamW on every process, gradients all-reduced.

One process trains the plain model. Under ``torchrun`` the model is wrapped in ``DistributedDataParallel``
with ``gradient_as_bucket_view=True``: the gradients are views into DDP's all-reduce buckets instead of a
second fp32 copy beside them (4 B/param less on every GPU, ``budget.DDP_BUCKET_BYTES``). Gradients are
all-reduced on the last micro-batch of a step only (``no_sync`` before), so accumulation costs one all-reduce
per step. Parameters stay fp32; bf16 runs under autocast.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.parallel import DistributedDataParallel

from overton.train.strategies.base import Strategy


class DdpStrategy(Strategy):
    name = "ddp"

    def prepare(self, model: torch.nn.Module) -> None:
        self.measure(model)
        d = self.dist
        self.module = model.to(d.device)
        self.model = self.module
        if d.world > 1:
            self.model = DistributedDataParallel(self.module, device_ids=[d.device.index] if d.device.type == "cuda"
                                                 else None, gradient_as_bucket_view=True)
        self.optimizer = self.make_optimizer()

    def accumulate(self, last: bool) -> contextlib.AbstractContextManager:
        """No all-reduce before the step's last micro-batch: DDP adds the accumulated gradients once."""
        if last or self.dist.world == 1:
            return contextlib.nullcontext()
        return self.model.no_sync()
