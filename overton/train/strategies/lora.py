"""``strategy = "lora"``: the base model frozen, LoRA adapters (peft) trained on its projections.

LoRA (Hu et al. 2021) adds to each targeted linear layer ``W`` (``[train.lora] target_modules``: by default
GPT-J's attention ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` and MLP ``fc_in``, ``fc_out``) a product
``B @ A`` of rank ``r``, scaled by ``alpha / r``; ``B`` starts at zero, so step 0 is the base model. Only
``A`` and ``B`` train: AdamW holds moments for them alone, so the GPU holds the base once (bf16) and a few
bytes per adapter parameter, and a checkpoint holds megabytes where full fine-tuning writes 72.6 GB.

* Precision: when the run computes in bf16 (``precision`` bf16, or auto on a GPU that has it) the frozen base
  is stored in bf16 (half the memory; it never receives an update that bf16 could round away) and the
  adapters stay fp32 under bf16 autocast (peft's ``autocast_adapter_dtype``). Otherwise (the CPU tests) the
  base stays fp32, so merged and unmerged models can be compared closely.
* Processes: the adapted model is trained like ``ddp`` (``DdpStrategy``): DDP all-reduces the adapters'
  gradients only, since the frozen base has none.
* Checkpoints: the adapters and their AdamW state through DCP (``get_state_dict`` with
  ``ignore_frozen_params``), plus :data:`RECORD`, what the adapters apply to: the base model's path and
  fingerprint (BLAKE3 of its config and of every weight, as loaded) and the adapter settings. A resume
  whose base or adapter shape differs is refused with one line: the adapters would be applied to weights
  they were not trained on.
* Export: the adapters with peft's ``save_pretrained`` (``adapter_config.json``, ``adapter_model.safetensors``;
  ``PeftModel.from_pretrained(base, folder)`` loads them) in ``<output>/adapter``, and with ``merge = true``
  the base with ``B @ A`` merged in (``merge_and_unload``, in the precision the base trained in) in
  ``<output>/model``, which ``AutoModelForCausalLM`` loads without peft. Both have the tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from overton.corpus.atomic import read_json, write_json
from overton.corpus.errors import UserError
from overton.train.budget import LORA_MODULES
from overton.train.checkpoint import EXTRA_STATE_BYTES, checkpoint_bytes
from overton.train.model import export, replace_folder
from overton.train.strategies.base import ADAPTERS_RECORD, LEGACY_MODEL
from overton.train.strategies.ddp import DdpStrategy

#: The file of a LoRA checkpoint that says what its adapters apply to.
RECORD = ADAPTERS_RECORD
# Config keys that say nothing about what the model computes (where it was read from, the library version).
_VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "use_cache", "architectures")
# Settings that define the adapters' tensors and what they compute; dropout only acts in training.
_ADAPTER_KEYS = ("rank", "alpha", "target_modules")


def base_fingerprint(model: torch.nn.Module) -> str:
    """BLAKE3 of the model's config (less :data:`_VOLATILE_CONFIG`) and of every tensor of its state dict
    (name, dtype, shape and bytes): two bases with one different weight have different fingerprints."""
    import blake3

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    config = {k: v for k, v in model.config.to_dict().items() if k not in _VOLATILE_CONFIG}
    hasher.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        hasher.update(f"\n{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        hasher.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return hasher.hexdigest()


class LoraStrategy(DdpStrategy):
    name = "lora"

    def prepare(self, model: torch.nn.Module) -> None:
        from peft import LoraConfig, get_peft_model

        s = self.settings.lora
        unknown = [name for name in s.target_modules if name not in LORA_MODULES]
        if unknown:
            raise UserError(f"[train.lora] target_modules: {', '.join(unknown)} not in GPT-J's projections "
                            f"({', '.join(LORA_MODULES)})")
        where = model.name_or_path or f"{self.settings.from_config} (new, seed {self.settings.seed})"
        fingerprint = self.dist.share(base_fingerprint(model) if self.dist.main else None)  # rank 0 reads it all
        self.record = {"base": {"path": where, "fingerprint": fingerprint},
                       **{key: getattr(s, key) for key in ("rank", "alpha", "dropout", "target_modules")}}
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if self.bf16:
            model.to(torch.bfloat16)
        config = LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(s.target_modules),
                            bias="none", task_type="CAUSAL_LM")
        super().prepare(get_peft_model(model, config, autocast_adapter_dtype=True))

    def describe(self) -> str:
        s, adapters = self.settings.lora, sum(p.numel() for p in self.trainable())
        return (f"{super().describe()} (r={s.rank}, alpha={s.alpha} on {','.join(s.target_modules)}: "
                f"{adapters:,} adapter parameters trained, the base frozen)")

    def measure(self, model: torch.nn.Module) -> None:
        """One checkpoint: fp32 adapters and their two AdamW moments, per tensor overhead; the export: the
        adapters, and the merged model in the base's dtype when ``merge``."""
        adapters = [p for p in model.parameters() if p.requires_grad]
        n = sum(p.numel() for p in adapters)
        self.checkpoint_bytes = checkpoint_bytes(n, param_bytes=4, optimizer_state_bytes_per_param=8,
                                                 n_tensors=4 * len(adapters))  # weight, exp_avg, exp_avg_sq, step
        base = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        merged = base * self.export_dtype.itemsize if self.settings.lora.merge else 0
        self.export_bytes = 4 * n + EXTRA_STATE_BYTES + merged  # the extra: adapter config, tokenizer

    # ---------------------------------------------------------------------------- state

    def state_options(self):
        """The adapters only: the frozen base is not saved, and so not required (``strict=False``) at load."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(ignore_frozen_params=True, strict=False)

    def save(self, folder: Path) -> list[Path]:
        files = super().save(folder)
        if not self.dist.main:
            return files
        write_json(folder / RECORD, self.record)
        return [*files, folder / RECORD]

    def check(self, folder: Path) -> None:
        """Refuse a checkpoint of full fine-tuning, of other adapters or of adapters trained on another base."""
        if not (folder / RECORD).is_file():
            kind = "an earlier version" if (folder / LEGACY_MODEL).is_file() else "full fine-tuning"
            raise UserError(f"{folder}: a checkpoint of {kind}, not of LoRA adapters; strategy lora needs another "
                            "[train] output (or the strategy that wrote it)")
        saved, now = read_json(folder / RECORD), self.record
        if saved["base"]["fingerprint"] != now["base"]["fingerprint"]:
            raise UserError(f"{folder}: the adapters were trained on the base {saved['base']['path']} (fingerprint "
                            f"{saved['base']['fingerprint'][:12]}), not on {now['base']['path']} (fingerprint "
                            f"{now['base']['fingerprint'][:12]}); resuming needs the same base model (or another "
                            "[train] output for a new run)")
        for key in _ADAPTER_KEYS:
            if saved[key] != now[key]:
                raise UserError(f"{folder}: the adapters were trained with [train.lora] {key} {saved[key]}, the "
                                f"settings say {now[key]}; resuming needs the same value (or another [train] output "
                                "for a new run)")

    # ---------------------------------------------------------------------------- export

    def export(self, folder: Path, tokenizer: str) -> Path | None:
        """The adapters in ``<output>/adapter``; with ``merge``, the merged model in ``folder`` (``<output>/model``).
        The path of the merged model, else of the adapters, on rank 0; None elsewhere."""
        if not self.dist.main:
            return None
        adapter = _save_adapter(self.module, folder.with_name("adapter"), tokenizer)
        if not self.settings.lora.merge:
            return adapter
        merged = self.module.merge_and_unload()  # the end of the run: the adapters are folded into the base
        self.module = self.model = merged
        return export(merged, folder, self.export_dtype, tokenizer)



def _save_adapter(model: Any, folder: Path, tokenizer: str) -> Path:
    """peft's ``save_pretrained`` (the adapters and their config) with the tokenizer, swapped in for ``folder``."""
    from transformers import AutoTokenizer

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(tokenizer).save_pretrained(tmp)

    return replace_folder(folder, fill)
