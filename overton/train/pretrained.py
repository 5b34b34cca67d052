"""The model ``overton generate`` and ``overton evaluate`` use, from whatever ``overton train`` left behind.

MODEL may name:

* an exported model folder: ``<output>/model``, or any GPT-J ``save_pretrained`` folder with its tokenizer
  (fr-boris or gpt-j-6b copied to the machine); a hub name works on a connected machine;
* a training output folder (``<output>``, the one that holds ``checkpoints/``): its newest committed
  checkpoint whose checksums match, so a run still in progress can be sampled and measured;
* one checkpoint folder (``<output>/checkpoints/step-NNNNNN``): used only when it is committed and every
  file matches its checksum (a damaged one is refused, exit 1, as ``overton train`` would skip it);
* LoRA adapters saved by peft (``<output>/adapter``), on the base model folder their config names.

A checkpoint of ``strategy = "lora"`` holds the adapters only: they are merged into the base the settings
give (``model``, or ``from_config`` and ``seed``), once its fingerprint matches the one the checkpoint
recorded, so generation and evaluation run on one plain model.

A checkpoint holds weights, not their shape nor the tokenizer: those are the ``[train]`` settings of the
workspace that wrote it, found in the folders above it (the way git finds its repository), and the
tokenizer must still be the one the checkpoint was trained with (its fingerprint is in the marker).
The weights are fp32 on the CPU (exact numbers; an export saved in bf16 is widened) and bf16 on a GPU
that has it.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from overton.corpus.config import TrainConfig
from overton.corpus.errors import Refused, UserError
from overton.corpus.workspace import SETTINGS_FILE, Workspace
from overton.train.checkpoint import CheckpointManager
from overton.train.sources import Sources


@dataclass
class Pretrained:
    model: torch.nn.Module  # in eval mode, on ``device``
    tokenizer: object  # a transformers tokenizer
    device: torch.device
    label: str  # what was loaded, for the output: a folder, or a checkpoint and its step
    workspace: Workspace | None  # the workspace that trained a checkpoint, else None

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def positions(self) -> int:
        """The longest sequence the model takes (GPT-J's ``n_positions``)."""
        return self.model.config.n_positions


def pick_device(name: str | None) -> torch.device:
    """``name`` as given, else the first GPU when there is one, else the CPU."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise UserError(f"--device {name}: not a device (cpu, cuda, cuda:1)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {name}: no GPU is visible to torch here")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load(name: str, device: torch.device) -> Pretrained:
    """The model and tokenizer MODEL names (see the module docstring), on ``device``, in eval mode."""
    _quiet_transformers()
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "checkpoints").is_dir() or (path / "COMMITTED.json").is_file() or path.name.startswith("step-"):
            return _from_checkpoint(path.resolve(), device)
        if (path / "adapter_config.json").is_file():
            return _from_adapter(path, device)
        if not (path / "config.json").is_file():
            raise UserError(f"{name}: neither a model folder (no config.json), nor a training output folder (no "
                            "checkpoints/), nor a checkpoint (no COMMITTED.json)")
    elif path.exists() or name.count("/") != 1 or name.startswith((".", "~", "/")):
        raise UserError(f"{name}: no such model folder" + ("" if path.exists() else " (nor a hub name: owner/model)"))
    return _from_pretrained(name, device)


def _from_pretrained(name: str, device: torch.device) -> Pretrained:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=_dtype(device))
    except (OSError, ValueError) as error:
        raise UserError(f"{name}: cannot load the model ({str(error).splitlines()[0]})") from None
    return Pretrained(model.to(device).eval(), tokenizer, device, name, None)


def _workspace_above(path: Path) -> Workspace:
    for folder in path.parents:
        if (folder / SETTINGS_FILE).is_file():
            return Workspace.open(folder)
    raise UserError(f"{path}: a checkpoint holds weights only; their shape and tokenizer come from the [train] "
                    f"settings of the workspace that trained it, and no {SETTINGS_FILE} is in a folder above it")


def checkpoint_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The model's weights in a checkpoint folder, on the CPU, whatever strategy and process count wrote it.

    DCP checkpoints (``.metadata`` and ``__<rank>_<n>.distcp``): only the model's tensors are read (not the
    optimizer's, twice their size), each whole, assembled from the pieces every rank wrote. Checkpoints of
    earlier versions: ``model.pt``, memory-mapped.
    """
    if (folder / "model.pt").is_file():
        return torch.load(folder / "model.pt", map_location="cpu", weights_only=True, mmap=True)
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = dcp.FileSystemReader(str(folder)).read_metadata()
    state = {key.removeprefix("model."): torch.empty(entry.size, dtype=entry.properties.dtype)
             for key, entry in metadata.state_dict_metadata.items()
             if key.startswith("model.") and isinstance(entry, TensorStorageMetadata)}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        dcp.load({"model": state}, checkpoint_id=folder)
    return state


def _from_checkpoint(path: Path, device: torch.device) -> Pretrained:
    """The weights of a committed, checksum-verified checkpoint, on the model its workspace's settings describe."""
    from transformers import AutoTokenizer

    from overton.train.loader import Tokenizer
    from overton.train.strategies.lora import RECORD as LORA_RECORD

    output = path if (path / "checkpoints").is_dir() else path.parent.parent
    workspace = _workspace_above(output)
    settings: TrainConfig = workspace.config().train
    sources = Sources.resolve(workspace, settings)
    if sources.output.resolve() != output:
        raise UserError(f"{path}: not under the training output of {workspace.settings_path} ({sources.output}); "
                        "its [train] settings may describe another model")
    manager = CheckpointManager(sources.checkpoints, keep=settings.keep)
    if output == path:
        checkpoint, lines = manager.newest_sound()
        if checkpoint is None:
            raise UserError(f"{path}: no committed checkpoint" + (f" ({'; '.join(lines)})" if lines else ""))
    else:
        problems = manager.verify(path)
        if problems:
            raise Refused(f"{path}: {'; '.join(problems)}")
        checkpoint = next(c for c in manager.committed() if c.path == path)
    fingerprint = Tokenizer(sources.tokenizer).fingerprint
    if checkpoint.meta.get("tokenizer", fingerprint) != fingerprint:
        raise UserError(f"{checkpoint.path}: trained with another tokenizer than [train] tokenizer "
                        f"{sources.tokenizer} (fingerprint {checkpoint.meta['tokenizer']}, now {fingerprint})")
    if (checkpoint.path / LORA_RECORD).is_file():
        model = _lora_checkpoint(checkpoint.path, sources, settings)
    else:
        model = _full_checkpoint(checkpoint.path, sources)
    tokenizer = AutoTokenizer.from_pretrained(sources.tokenizer)
    label = f"{checkpoint.path} (step {checkpoint.step})"
    return Pretrained(model.to(device, _dtype(device)).eval(), tokenizer, device, label, workspace)


def _full_checkpoint(folder: Path, sources: Sources):
    """The model of the [train] settings with the checkpoint's weights, every one of them."""
    from transformers import AutoConfig, GPTJConfig, GPTJForCausalLM

    config = AutoConfig.from_pretrained(sources.model) if sources.model else GPTJConfig.from_json_file(
        sources.from_config)
    state = checkpoint_weights(folder)
    model, info = GPTJForCausalLM.from_pretrained(None, config=config, state_dict=state, dtype=torch.float32,
                                                  output_loading_info=True)
    wrong = {kind: keys for kind, keys in info.items() if keys and kind != "error_msgs"}
    if wrong:
        raise UserError(f"{folder}: its weights do not fit the model of the [train] settings ("
                        + "; ".join(f"{kind}: {', '.join(map(str, keys[:3]))}" for kind, keys in wrong.items()) + ")")
    return model


@contextlib.contextmanager
def _peft_quiet():
    """peft calls a transformers method deprecated for v6 (a FutureWarning on every load): nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _lora_checkpoint(folder: Path, sources: Sources, settings: TrainConfig):
    """The base of the [train] settings (the one the adapters were trained on: its fingerprint is checked) with the
    checkpoint's LoRA adapters merged into it."""
    from peft import LoraConfig, get_peft_model

    from overton.corpus.atomic import read_json
    from overton.train.loader import Tokenizer
    from overton.train.model import load_model
    from overton.train.strategies.lora import RECORD, base_fingerprint

    record = read_json(folder / RECORD)
    base = load_model(sources.model, sources.from_config, settings.seed,
                      Tokenizer(sources.tokenizer).backend.get_vocab_size())
    if base_fingerprint(base) != record["base"]["fingerprint"]:
        raise UserError(f"{folder}: its LoRA adapters were trained on the base {record['base']['path']}, not on the "
                        "model the [train] settings give now")
    config = LoraConfig(r=record["rank"], lora_alpha=record["alpha"], lora_dropout=record["dropout"],
                        target_modules=record["target_modules"], bias="none", task_type="CAUSAL_LM")
    with _peft_quiet():
        model = get_peft_model(base, config)
    state = checkpoint_weights(folder)
    adapters = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    if set(state) != adapters:
        raise UserError(f"{folder}: its adapters do not fit [train.lora]'s ({len(state)} tensors saved, "
                        f"{len(adapters)} expected)")
    model.load_state_dict(state, strict=False)
    return model.merge_and_unload()


def _from_adapter(path: Path, device: torch.device) -> Pretrained:
    """LoRA adapters saved by peft (``<output>/adapter``), merged into the base their config names."""
    import json

    from peft import PeftModel
    from transformers import AutoTokenizer

    base_path = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base_path or not (Path(base_path) / "config.json").is_file():
        raise UserError(f"{path}: LoRA adapters whose base ({base_path or 'a model built from a config'}) is not a "
                        "model folder here; use the merged model (<output>/model) or the training output folder")
    base = _from_pretrained(base_path, torch.device("cpu")).model.float()
    with _peft_quiet():
        model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    return Pretrained(model.to(device, _dtype(device)).eval(), AutoTokenizer.from_pretrained(path), device, str(path),
                      None)
