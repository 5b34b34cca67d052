"""A tokenizer and a GPT-J small enough to train on a CPU in seconds: what the demo and the tests use.

There is no model hub offline, so both are built from the corpus itself: a byte-level BPE (GPT-J's kind
of tokenizer; it decodes back to the exact text) and a GPT-J config of a few layers.
"""

from __future__ import annotations

import json
from pathlib import Path

EOS = "<|endoftext|>"


def train_tokenizer(folder: Path, texts: list[str], vocab_size: int = 400) -> Path:
    """A byte-level BPE trained on ``texts``, saved as a Hugging Face tokenizer folder; returns ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS, "bos_token": EOS,
                                                               "tokenizer_class": "PreTrainedTokenizerFast"}))
    return folder


def write_gptj_config(path: Path, vocab_size: int, eos_id: int, n_layer: int = 2, n_embd: int = 64,
                      n_head: int = 4, n_positions: int = 256) -> Path:
    """A GPT-J ``config.json`` of the given (small) shape; GPT-J's own rotary share (a quarter of a head)."""
    rotary_dim = max(2, n_embd // n_head // 8 * 2)
    config = {"model_type": "gptj", "architectures": ["GPTJForCausalLM"], "vocab_size": vocab_size,
              "n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "rotary_dim": rotary_dim,
              "n_positions": n_positions, "bos_token_id": eos_id, "eos_token_id": eos_id,
              "tie_word_embeddings": False}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path
