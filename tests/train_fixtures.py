"""What the training tests build for themselves: a dataset version of the bundled sample and a tiny tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.demo import SAMPLE, sample_dir
from overton.pipelines.build import build
from overton.spiders.ingest import ingest

EOS = "<|endoftext|>"


def sample_workspace(root: Path) -> Workspace:
    """A workspace with the sample corpus built into v0001 (56 documents)."""
    workspace = Workspace.init(root)
    for filename, source, licence in SAMPLE:
        ingest(workspace, [sample_dir() / filename], source, default_license=licence)
    build(workspace, jobs=1, progress=False)
    return workspace


def documents(version: Version) -> list[dict]:
    return [row for batch in version.iter_batches("data", columns=["id", "source", "text", "published_at"])
            for row in batch.to_pylist()]


def tiny_tokenizer(folder: Path, texts: list[str], vocab_size: int = 400) -> Path:
    """A byte-level BPE trained on ``texts`` (decodes back exactly), saved as a Hugging Face tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS, "bos_token": EOS,
                                                               "tokenizer_class": "PreTrainedTokenizerFast"}))
    return folder
