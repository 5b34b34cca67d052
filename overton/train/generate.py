"""``overton generate``: text from a trained model, printed token by token as the model writes it.

The prompt is read as the start of a document: it follows an EOS token, as every document does in the
sequences ``overton train`` packs, so the model sees what it was trained on. Sampling is seeded
(``--seed``): the same model, prompt and settings write the same text on the same machine.
``--temperature 0`` is greedy decoding (top-k and top-p are then unused).

``--chat`` wraps the prompt in the chat template a model trained with ``[train] task = "chat"`` learned:
``chat_template``'s text up to ``{answer}``, with ``{question}`` replaced by the prompt; the model writes the
answer and stops at EOS (or after ``--max-new-tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from overton.corpus.config import CHAT_TEMPLATE
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.train.pretrained import Pretrained


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 200
    temperature: float = 0.8  # 0: greedy
    top_k: int = 50  # 0: every token
    top_p: float = 0.95  # 1: every token
    seed: int = 0


def chat_template(workspace: Workspace | None) -> str:
    """The workspace's ``[train] chat_template`` (checked when the settings are read), else the default one."""
    return workspace.config().train.chat_template if workspace else CHAT_TEMPLATE


def chat_prompt(template: str, question: str) -> str:
    """What the model reads in chat mode: the template up to ``{answer}`` with the question in it, the prompt
    the loader tokenizes for ``[train] task = "chat"``."""
    return template.split("{answer}")[0].replace("{question}", question)


def generate(pretrained: Pretrained, prompt: str, sampling: Sampling, echo: bool = True) -> str:
    """Print the continuation of ``prompt`` as it comes (after the prompt itself when ``echo``); return it."""
    from transformers import GenerationConfig, TextStreamer

    tokenizer, model = pretrained.tokenizer, pretrained.model
    ids = [pretrained.eos_id, *tokenizer(prompt, add_special_tokens=False).input_ids]
    if len(ids) + sampling.max_new_tokens > pretrained.positions:
        raise UserError(f"the prompt ({len(ids) - 1} tokens) and --max-new-tokens {sampling.max_new_tokens} exceed "
                        f"the {pretrained.positions} positions of the model: shorten one of them")
    greedy = sampling.temperature == 0
    config = GenerationConfig(max_new_tokens=sampling.max_new_tokens, do_sample=not greedy,
                              temperature=None if greedy else sampling.temperature,
                              top_k=None if greedy else sampling.top_k, top_p=None if greedy else sampling.top_p,
                              eos_token_id=pretrained.eos_id, pad_token_id=pretrained.eos_id)
    streamer = TextStreamer(tokenizer, skip_prompt=not echo, skip_special_tokens=True)
    torch.manual_seed(sampling.seed)
    inputs = torch.tensor([ids], device=pretrained.device)
    with torch.inference_mode():
        output = model.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config,
                                streamer=streamer)
    return tokenizer.decode(output[0, len(ids):], skip_special_tokens=True)
