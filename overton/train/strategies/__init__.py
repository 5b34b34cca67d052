"""Training strategies: how the model is spread over the processes, what trains, and how its state is saved.

``overton train`` (:mod:`overton.train.trainer`) is one loop for every way of training; what differs between
them lives in one small class per strategy, a subclass of :class:`~overton.train.strategies.base.Strategy`:

========  =====================================================================================  ==============
name      what it does                                                                           module
========  =====================================================================================  ==============
``ddp``   the whole model and AdamW on every process; gradients all-reduced (DDP; one process:   ``ddp.py``
          the plain model)
``fsdp``  parameters, gradients and AdamW states sharded over the processes (FSDP2), bf16        ``fsdp.py``
          compute with fp32 master weights, optional CPU offload
``lora``  the base model frozen (bf16 when computing in bf16), LoRA adapters trained on its       ``lora.py``
          projections (peft), as ddp; checkpoints of the adapters only
========  =====================================================================================  ==============

``[train] strategy = "auto"`` (the default) takes the fastest one that
:func:`overton.train.budget.choose_strategy` says fits the GPUs present (``ddp`` on CPUs).

Registering a new strategy (e.g. ``lora``):

1. write ``overton/train/strategies/<name>.py`` with a subclass of ``Strategy`` (read its docstring: the
   contract) whose ``name`` is the strategy's name;
2. add ``"<name>": "overton.train.strategies.<name>:<Class>"`` to :data:`STRATEGIES` below (imported only
   by the runs that use it, so FSDP or an adapter library cost the other runs nothing);
3. allow the name in ``[train] strategy`` (``TrainConfig.strategy``'s pattern and the template in
   ``overton/corpus/config.py``), and take the mark "not available in this version" off its rows of the
   dry run (``overton.train.budget``).

Every registered strategy runs through ``tests/test_train_strategies.py``, whose contract tests are
parametrised over :data:`STRATEGIES`: a run killed with SIGKILL and run again ends with the same losses and
weights as an uninterrupted one; two processes under ``torchrun`` give the losses of one; the export loads
with ``AutoModelForCausalLM`` and generates. ``tests/test_train_run.py`` (resume, signals, follow) runs the
default strategy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from overton.corpus.errors import UserError

if TYPE_CHECKING:
    from overton.train.strategies.base import Strategy

#: Strategy name -> "module:Class", imported when a run chooses it.
STRATEGIES: dict[str, str] = {
    "ddp": "overton.train.strategies.ddp:DdpStrategy",
    "fsdp": "overton.train.strategies.fsdp:FsdpStrategy",
    "lora": "overton.train.strategies.lora:LoraStrategy",
}


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under ``name``; a UserError (one line) for a name with none."""
    if name not in STRATEGIES:
        raise UserError(f"[train] strategy {name!r} is not available in this version (available: auto, "
                        f"{', '.join(STRATEGIES)})")
    module, _, cls = STRATEGIES[name].partition(":")
    return getattr(importlib.import_module(module), cls)
