"""``overton train --dry-run``: the budget of the configured run, before anyone rents a GPU.

It reads what the run would read (the model's ``config.json``, the tokenizer, the dataset's token
counts through the loader's index, so the figure is the selected documents' real token count) and
prints ``overton.train.budget.plan``'s report for the ``[train.budget]`` hardware. No torch needed.
Checkpoint sizes are those ``overton train`` writes: fp32 weights and fp32 AdamW moments, 12 B/param.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from overton.corpus.config import TrainConfig
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.train.budget import FP32_PARAMS, ModelShape, plan
from overton.train.checkpoint import disk_free
from overton.train.loader import PackedStream, Tokenizer
from overton.train.sources import Sources, selection


def model_config(paths: Sources) -> dict[str, Any]:
    """The model's config dict: a folder's or the from_config file, else (a hub name) through transformers."""
    if paths.model:
        local = Path(paths.model) / "config.json"
        if local.is_file():
            return json.loads(local.read_text(encoding="utf-8"))
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(paths.model).to_dict()
        except OSError as error:
            raise UserError(f"model {paths.model}: {error}") from None
    if paths.from_config:
        if not Path(paths.from_config).is_file():
            raise UserError(f"from_config {paths.from_config}: no such file")
        return json.loads(Path(paths.from_config).read_text(encoding="utf-8"))
    raise UserError("set [train] model (a pretrained folder) or from_config (a GPT-J config.json)")


def _free_space(folder: Path) -> int:
    """Free bytes where ``folder`` is or will be created."""
    while not folder.exists():
        folder = folder.parent
    return disk_free(folder)


def dry_run(workspace: Workspace, settings: TrainConfig) -> list[str]:
    paths = Sources.resolve(workspace, settings)
    config = model_config(paths)
    shape = ModelShape.from_gptj_config(config, name=Path(paths.model).name if paths.model else None)
    stream = PackedStream(paths.dataset, Tokenizer(paths.tokenizer), settings.seq_len, settings.seed,
                          paths.output / "cache", selection(settings))
    tokens = stream.selected_tokens()
    per_epoch = tokens // settings.seq_len
    if per_epoch == 0:
        raise UserError(f"the selected data holds {tokens} tokens, less than one sequence of {settings.seq_len}")
    epochs = settings.steps * settings.global_batch / per_epoch
    budget = settings.budget
    report = plan(shape, tokens, seq_len=settings.seq_len, gpus=budget.gpus, gpu_name=budget.gpu, mfu=budget.mfu,
                  price_per_gpu_hour=budget.price_per_gpu_hour or None, micro_batch=settings.micro_batch,
                  epochs=epochs, checkpoint_keep=settings.keep, disk_free_bytes=_free_space(paths.checkpoints),
                  global_batch=settings.global_batch, activation_checkpointing=settings.activation_checkpointing,
                  lora_rank=budget.lora_rank, checkpoint_format=FP32_PARAMS, currency=budget.currency)
    head = [f"dataset {paths.dataset}: {tokens:,} tokens selected ({per_epoch:,} sequences of {settings.seq_len}); "
            f"[train] steps {settings.steps:,} x global batch {settings.global_batch} = {epochs:.3g} epoch(s)"]
    return head + report.lines()
