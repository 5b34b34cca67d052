"""The GPT-J model: loaded from a local folder (or a hub name), or built new from a config; exported at the end.

Training keeps fp32 parameters (bf16 only inside autocast), so checkpoints hold fp32 weights and fp32
AdamW moments: 12 bytes per parameter, ``budget.FP32_PARAMS``. The export is what users load with
``AutoModelForCausalLM.from_pretrained``: the weights in bf16 when the run trained in bf16 (half the
size, the precision it was trained in), with the tokenizer beside them.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from overton.corpus.atomic import fsync_dir, fsync_tree
from overton.corpus.errors import UserError


def attention_implementation(device: torch.device, bf16: bool) -> str:
    """The attention kernel to train with: never ``eager`` (it stores every score matrix, in fp32).

    transformers' GPT-J accepts ``eager``, ``sdpa`` (PyTorch's scaled_dot_product_attention, which picks its
    flash or memory-efficient kernel on GPUs), ``flash_attention_2``/``_3`` and ``flex_attention``
    (transformers 5.24). ``flash_attention_2`` when the ``flash-attn`` package is installed and the run
    computes in bf16 on a GPU (it has no fp32 kernel); ``sdpa`` otherwise.
    """
    if device.type == "cuda" and bf16:
        from transformers.utils import is_flash_attn_2_available

        if is_flash_attn_2_available():
            return "flash_attention_2"
    return "sdpa"


def load_model(name_or_path: str, config_file: str, seed: int, vocab_size: int, attention: str = "sdpa"):
    """``GPTJForCausalLM`` from a pretrained folder/name, or new from a GPT-J ``config.json`` (seeded init),
    with the ``attention`` implementation."""
    from transformers import GPTJConfig, GPTJForCausalLM

    if name_or_path:
        try:
            config = GPTJConfig.from_pretrained(name_or_path)
        except OSError as error:
            raise UserError(f"model {name_or_path}: {error}") from None
    elif config_file:
        if not Path(config_file).is_file():
            raise UserError(f"from_config {config_file}: no such file")
        config = GPTJConfig.from_json_file(config_file)
    else:
        raise UserError("set [train] model (a pretrained folder) or from_config (a GPT-J config.json)")
    if config.model_type != "gptj":
        raise UserError(f"{name_or_path or config_file}: a {config.model_type} model; overton trains GPT-J models")
    if vocab_size > config.vocab_size:
        raise UserError(f"the tokenizer has {vocab_size} tokens, more than the model's vocab_size {config.vocab_size}")
    torch.manual_seed(seed)
    if name_or_path:
        return GPTJForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, attn_implementation=attention)
    model = GPTJForCausalLM(config)
    model.set_attn_implementation(attention)
    return model


def export_bytes(model, dtype: torch.dtype) -> int:
    """Size of the export: every parameter and buffer saved in ``dtype``."""
    size = torch.empty((), dtype=dtype).element_size()
    return sum(t.numel() for t in model.state_dict().values()) * size


def export(model, folder: Path, dtype: torch.dtype, tokenizer: str, state: dict | None = None) -> Path:
    """``save_pretrained`` with the tokenizer into a temporary folder, swapped in for ``folder`` (``replace_folder``).

    ``state``: the whole model's state dict when ``model`` holds only its shard of it (FSDP gathers it).
    """
    from transformers import AutoTokenizer

    state = model.state_dict() if state is None else state
    state = {name: tensor.detach().to(dtype) for name, tensor in state.items()}

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=state)
        config = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
        config["dtype"] = str(dtype).removeprefix("torch.")  # the model trains in fp32: say what the file holds
        (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        AutoTokenizer.from_pretrained(tokenizer).save_pretrained(tmp)

    return replace_folder(folder, fill)


def replace_folder(folder: Path, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` writes a hidden temporary folder beside ``folder``; once fsynced it is swapped in for
    ``folder`` (the old one renamed away first, then removed): ``folder`` is never a half-written folder."""
    tag = secrets.token_hex(4)
    tmp, old = (folder.with_name(f".tmp-{folder.name}-{kind}-{tag}") for kind in ("new", "old"))
    fill(tmp)
    fsync_tree(tmp)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder
