"""``overton evaluate``: perplexity and bits per byte of a model on held-out text.

Two measures of the same sum, the negative log-likelihood (NLL) of every token of the text:

* **perplexity** = exp(NLL in nats / tokens): per token, so it depends on the tokenizer (the training
  logs' ``eval_perplexity`` is the same kind of figure, on packed sequences);
* **bits per byte** = NLL in bits / UTF-8 bytes of the text: the bytes do not depend on the tokenizer,
  so it compares any two models (the Pile's and GPT-NeoX's measure).

Each text is read as a document: it follows an EOS token, as documents do in the sequences ``overton train``
packs, so every token of the text is predicted and every byte counted. A text longer than the context is
read in windows of ``context`` tokens that move by ``stride`` (Hugging Face's sliding-window perplexity):
each window scores only the tokens no earlier window scored, each with at least ``context - stride``
tokens before it (all of them back to the text's start in the first window). ``stride = context - 1``
(windows overlapping by one token) is the fastest and gives the least context; ``context / 2``, the
default, costs twice as much. Scores are summed in float64 from fp32 log-softmax; windows are batched,
padded on the right (causal attention: the padding changes nothing before it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch
from tqdm import tqdm

from overton.corpus.errors import UserError
from overton.train.loader import Selection
from overton.train.pretrained import Pretrained


@dataclass(frozen=True)
class Score:
    nll: float  # natural-log likelihood of every token, summed (nats)
    tokens: int  # tokens scored
    bytes: int  # UTF-8 bytes of the texts
    texts: int

    @property
    def loss(self) -> float:
        """Mean NLL per token in nats (the training loss)."""
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700))

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.bytes


def windows(ids: list[int], context: int, stride: int) -> Iterator[tuple[list[int], int]]:
    """The windows over ``ids`` (EOS first, then the text's tokens): (tokens, how many of the last are scored).

    Every token but the leading EOS is scored exactly once.
    """
    scored_to = 1  # ids[0] is the EOS the text follows: context, never a target
    for begin in range(0, len(ids), stride):
        end = min(begin + context, len(ids))
        yield ids[begin:end], end - scored_to
        scored_to = end
        if end == len(ids):
            return


def _nll(model, batch: list[tuple[list[int], int]], pad: int, device: torch.device) -> torch.Tensor:
    """Summed NLL (float64, nats) of the scored tokens of a batch of windows."""
    width = max(len(tokens) for tokens, _ in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (tokens, scored) in enumerate(batch):
        ids[row, :len(tokens)] = torch.tensor(tokens)
        mask[row, :len(tokens)] = 1
        labels[row, len(tokens) - scored:len(tokens)] = ids[row, len(tokens) - scored:len(tokens)]
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                            ignore_index=-100, reduction="sum")
    return nll.double()


def evaluate(pretrained: Pretrained, texts: Iterable[str], context: int, stride: int, batch_size: int = 8,
             progress: bool = False) -> Score:
    """The score of ``pretrained`` on ``texts`` (see the module docstring)."""
    if not 2 <= context <= pretrained.positions:
        raise UserError(f"--context {context}: between 2 and the model's {pretrained.positions} positions")
    if not 1 <= stride <= context - 1:
        raise UserError(f"--stride {stride}: between 1 and --context - 1 = {context - 1} (each window keeps its "
                        "first token as context)")
    total = torch.zeros((), dtype=torch.float64, device=pretrained.device)
    tokens = n_bytes = n_texts = 0
    pending: list[tuple[list[int], int]] = []
    bar = tqdm(desc="evaluating", unit=" tokens", disable=not progress)
    with torch.inference_mode():
        for text in texts:
            ids = pretrained.tokenizer(text, add_special_tokens=False).input_ids
            if not ids:
                continue
            n_texts += 1
            n_bytes += len(text.encode("utf-8"))
            tokens += len(ids)
            for window in windows([pretrained.eos_id, *ids], context, stride):
                pending.append(window)
                if len(pending) == batch_size:
                    total += _nll(pretrained.model, pending, pretrained.eos_id, pretrained.device)
                    bar.update(sum(scored for _, scored in pending))
                    pending = []
        if pending:
            total += _nll(pretrained.model, pending, pretrained.eos_id, pretrained.device)
            bar.update(sum(scored for _, scored in pending))
    bar.close()
    if not tokens:
        raise UserError("no text to evaluate: the file or the selected documents are empty")
    return Score(float(total), tokens, n_bytes, n_texts)


# ------------------------------------------------------------------------------------------ the texts


def file_text(path: str) -> list[str]:
    """The whole file as one text (a sliding window reads across its lines, as across a document's paragraphs)."""
    try:
        return [Path(path).read_text(encoding="utf-8")]
    except OSError as error:
        raise UserError(f"--text {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"--text {path}: not UTF-8 ({error.reason} at byte {error.start})") from None


def dataset_texts(location: str, sources: list[str], limit: int | None,
                  held_out: Selection | None = None) -> Iterator[str]:
    """The texts of a dataset version's documents, in its file order: those of ``sources`` (all when empty),
    only those ``held_out`` holds out of training when given (as the trainer's evaluation does), at most
    ``limit``."""
    from overton.corpus.dataset import Version

    version = Version.open(location)
    present = {entry.get("source") for entry in version.files("data")}
    unknown = sorted(set(sources) - present)
    if unknown:
        raise UserError(f"--sources: {', '.join(unknown)} not in {version.url} (it has {', '.join(sorted(present))})")
    columns = ["text", "id", "source", "published_at", "speakers"]
    count = 0
    for entry in version.files("data"):
        if sources and entry.get("source") not in sources:
            continue
        for batch in version.batches(entry, columns):
            table = pa.Table.from_batches([batch])
            chosen = held_out.masks(table)[1] if held_out is not None else [True] * table.num_rows
            for text, keep in zip(table.column("text").to_pylist(), chosen, strict=True):
                if not keep:
                    continue
                if limit is not None and count == limit:
                    return
                count += 1
                yield text


# ------------------------------------------------------------------------------------------ the report


def report(scores: list[tuple[str, Score]], context: int, stride: int) -> list[str]:
    """The lines ``overton evaluate`` prints: one per model, then (two models) the difference to the second."""
    first = scores[0][1]
    lines = [f"{first.texts:,} text(s), {first.bytes:,} bytes; windows of {context} tokens, stride {stride}",
             f"{'model':<48} {'tokens':>11} {'loss':>8} {'perplexity':>11} {'bits/byte':>10}"]
    for label, score in scores:
        lines.append(f"{label:<48} {score.tokens:>11,} {score.loss:>8.4f} {score.perplexity:>11.2f} "
                     f"{score.bits_per_byte:>10.4f}")
    if len(scores) == 2:
        (_, model), (_, base) = scores
        change = model.bits_per_byte - base.bits_per_byte
        line = (f"difference: {change:+.4f} bits per byte ({change / base.bits_per_byte:+.1%}) against the base")
        if model.tokens == base.tokens:
            line += f"; perplexity {base.perplexity:.2f} -> {model.perplexity:.2f}"
        else:
            line += " (other tokenizer: its perplexity counts other tokens; compare bits per byte)"
        lines.append(line)
    return lines
