"""Training logs: a progress bar and one line per log step on the console, ``metrics.jsonl``, TensorBoard, loss PNG.

``metrics.jsonl`` holds one JSON object per logged step (``loss``, ``lr``, ``grad_norm``,
``tokens_per_s_per_device``, ``mfu``...) or evaluation (``eval_loss``, ``eval_perplexity``). A resumed run
first drops the records after its checkpoint's step, which the killed run had logged but whose training
is redone, so the file (and the curve drawn from it) never shows a step twice. TensorBoard's
``purge_step`` does the same for its event files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm

from overton.corpus.atomic import atomic_path
from overton.corpus.errors import UserError


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _format(record: dict[str, Any]) -> str:
    if "eval_loss" in record:
        return (f"step {record['step']}: eval loss {record['eval_loss']:.4f}, "
                f"perplexity {record['eval_perplexity']:.2f} on {record['eval_sequences']} sequences")
    mfu = "n/a" if record["mfu"] is None else f"{record['mfu']:.1%}"
    return (f"step {record['step']}/{record['steps']}: loss {record['loss']:.4f}, lr {record['lr']:.3g}, "
            f"grad norm {record['grad_norm']:.3f}, {record['tokens_per_s_per_device']:,.0f} tokens/s per device, "
            f"MFU {mfu}")


class Metrics:
    """Rank 0's logs; on other ranks every method does nothing."""

    def __init__(self, folder: Path, resumed_step: int, steps: int, *, enabled: bool, tensorboard: bool,
                 progress: bool):
        self.enabled = enabled
        self.path = folder / "metrics.jsonl"
        self.writer = self.bar = None
        if not enabled:
            return
        folder.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if r["step"] <= resumed_step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        self.handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("[train] tensorboard = true needs the tensorboard package: "
                                "pip install tensorboard") from None
            self.writer = SummaryWriter(str(folder / "tensorboard"), purge_step=resumed_step + 1)
        if progress:
            self.bar = tqdm(total=steps, initial=resumed_step, unit="step", dynamic_ncols=True)

    def say(self, line: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar else print)(line)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        if self.writer:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.writer.add_scalar(key, value, record["step"])
        self.say(_format(record))
        if self.bar and "loss" in record:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)

    def advance(self) -> None:
        if self.enabled and self.bar:
            self.bar.update(1)

    def close(self) -> None:
        if not self.enabled:
            return
        self.handle.close()
        if self.writer:
            self.writer.close()
        if self.bar:
            self.bar.close()


def plot_loss(metrics: Path, png: Path) -> Path:
    """Training loss per logged step, and evaluation loss where measured, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evaluation = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss", linewidth=1.2)
    if evaluation:
        axes.plot(*zip(*evaluation, strict=True), "o-", label="evaluation loss", linewidth=1.2)
    finite = [v for _, v in train + evaluation if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        axes.set_yscale("log")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_path(png) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return png
