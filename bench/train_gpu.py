"""The steps of ``bench/train_gpu.sh``: GPT-J 6B fine-tuning on one GPU, overton against transformers' Trainer.

``prepare FOLDER``   a workspace with the bundled sample built into a dataset (streamed for as many epochs as
                     the steps need), a byte-level BPE trained on it, and GPT-J 6B's config.json written from
                     its known shape (``budget.GPTJ_6B``): random weights, no hub
``run FOLDER NAME``  one measured run, in its own process (fresh GPU memory statistics): ``overton-full``
                     (``[train] strategy = "auto"``: unsharded with activation checkpointing where it fits, FSDP
                     with CPU offload otherwise), ``overton-lora`` (``strategy = "lora"``) or ``trainer``
                     (transformers' ``Trainer`` on the same model, sequences, batch and precision)
``report FOLDER``    the table, the targets, and ``bench/results/train_gpu.json``

``--smoke`` runs the same steps on the CPU with a 2-layer GPT-J and 6 steps (what the tests can run).

Throughput is measured the same way for the three runs: a hook after every optimizer step
(``register_optimizer_step_post_hook``) synchronises the GPU and reads the clock at the end of step
``log_every`` and of the last step; tokens/s is the tokens of the steps in between over that time (the first
``log_every`` steps, with their warm-up, are left out). MFU is that throughput times the model FLOPs per token
(``budget.flops_per_token``: 6N + 12·L·d·s, 4N + ... for LoRA, whose base weights get no gradient) over the
card's peak. Peak memory is ``torch.cuda.max_memory_allocated`` of the run's process, against the dry run's
estimate for the same settings (``budget.plan``, as ``overton train --dry-run`` calls it).

overton's runs go through ``overton train``'s own ``Run`` with checkpoints and the export turned off: GPT-J
6B's checkpoint (72.6 GB) does not fit the 64 GiB disk of the machine this was written for, and writing it
is not what is measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from common import save_results

from overton.corpus.config import set_setting
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.demo import SAMPLE, sample_dir
from overton.pipelines.build import build
from overton.spiders.ingest import ingest
from overton.train.budget import GPTJ_6B, GPUS, ModelShape, flops_per_token, plan

RUNS = ("overton-full", "overton-lora", "trainer")
# [train] settings of the GPU run and of the CPU smoke run (TOML values). Sequences of 2,048 tokens, 16 a step
# (4 per micro-batch, 4 accumulated): 32,768 tokens a step; 12 steps, the last 8 measured.
SETTINGS = {
    "gpu": {"seq_len": "2048", "micro_batch": "4", "global_batch": "16", "steps": "12", "log_every": "4",
            "lr": "1e-5", "warmup_steps": "2", "precision": '"bf16"', "activation_checkpointing": "true",
            "offload": "true"},
    "smoke": {"seq_len": "128", "micro_batch": "2", "global_batch": "4", "steps": "6", "log_every": "2",
              "lr": "1e-3", "warmup_steps": "1", "precision": '"fp32"', "activation_checkpointing": "true",
              "offload": "false"},
}
SMOKE_SHAPE = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128}
TARGETS = {"mfu": 0.45, "speedup": 1.5, "memory_error": 0.15}


def workspace_of(folder: Path) -> Workspace:
    return Workspace.open(folder / "ws")


# ------------------------------------------------------------------------------------------ prepare


def prepare(folder: Path, smoke: bool) -> None:
    from overton.train.loader import Tokenizer
    from overton.train.tiny import train_tokenizer, write_gptj_config

    workspace = Workspace.init(folder / "ws")
    for filename, source, profile, licence in SAMPLE:
        ingest(workspace, [sample_dir() / filename], source, default_license=licence, profile=profile)
    version = build(workspace, jobs=1, progress=False).version
    texts = [row["text"] for batch in version.iter_batches("data", columns=["text"]) for row in batch.to_pylist()]
    tokenizer = train_tokenizer(workspace.root / "tokenizer", texts, vocab_size=400 if smoke else 8000)
    eos = Tokenizer(str(tokenizer)).eos_id
    if smoke:
        write_gptj_config(workspace.root / "gptj.json", vocab_size=400, eos_id=eos, **SMOKE_SHAPE)
    else:  # GPT-J 6B: EleutherAI/gpt-j-6b's config.json, written from the shape the budget knows
        s = GPTJ_6B
        write_gptj_config(workspace.root / "gptj.json", vocab_size=s.vocab_size, eos_id=eos, n_layer=s.n_layer,
                          n_embd=s.n_embd, n_head=s.n_head, n_positions=s.n_positions)
    text = workspace.settings_path.read_text(encoding="utf-8")
    values = {"tokenizer": '"tokenizer"', "from_config": '"gptj.json"', "eval_every": "0", "save_every": "1000",
              **SETTINGS["smoke" if smoke else "gpu"]}
    for key, value in values.items():
        text = set_setting(text, "train", key, value)
    workspace.settings_path.write_text(text, encoding="utf-8")
    documents = sum(entry["rows"] for entry in version.files("data"))
    print(f"prepared {workspace.root}: {documents} documents of the sample in {version.name}, streamed for as "
          f"many epochs as the steps take; model {'tiny GPT-J' if smoke else 'GPT-J 6B (random weights)'}")


# ------------------------------------------------------------------------------------------ measuring


class StepClock:
    """The clock after optimizer steps ``first`` and ``last`` (the GPU synchronised first), whatever optimizer.

    Steps are counted per optimizer object: accelerate (under the Trainer) wraps the optimizer in another
    ``Optimizer`` whose ``step`` calls the inner one's, and both report the same step.
    """

    def __init__(self, first: int, last: int, cuda: bool):
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.first, self.last, self.cuda = first, last, cuda
        self.steps: dict[int, int] = {}
        self.marks: dict[int, float] = {}
        self.handle = register_optimizer_step_post_hook(self._after_step)

    def _after_step(self, optimizer, _args, _kwargs) -> None:
        import torch

        step = self.steps[id(optimizer)] = self.steps.get(id(optimizer), 0) + 1
        if step in (self.first, self.last) and step not in self.marks:
            if self.cuda:
                torch.cuda.synchronize()
            self.marks[step] = time.perf_counter()

    def seconds(self) -> float:
        self.handle.remove()
        return self.marks[self.last] - self.marks[self.first]


def peak_memory(cuda: bool) -> dict[str, int]:
    import torch

    if cuda:
        return {"peak_allocated": torch.cuda.max_memory_allocated(), "peak_reserved": torch.cuda.max_memory_reserved()}
    return {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def device_card(settings) -> tuple[float | None, str | None]:
    """The card's peak bf16 FLOP/s (the trainer's own lookup) and the budget's name for it (by model and memory)."""
    import torch

    from overton.train.trainer import peak_flops

    if not torch.cuda.is_available():
        return None, None
    device = torch.device("cuda")
    name, memory = torch.cuda.get_device_name(device).upper(), torch.cuda.get_device_properties(device).total_memory
    cards = [key for key in GPUS if key.split("-")[0] in name]
    card = min(cards, key=lambda key: abs(GPUS[key].memory_bytes - memory)) if cards else None
    return peak_flops(settings, device), card


def prediction(workspace: Workspace, settings, card: str | None, lora: bool) -> dict[str, Any]:
    """The dry run's memory estimate of this run: ``budget.plan`` called as ``overton train --dry-run`` calls it."""
    from overton.train.dryrun import model_shape, selected_tokens
    from overton.train.sources import Sources

    paths = Sources.resolve(workspace, settings)
    shape, _ = model_shape(paths, None)
    tokens, _ = selected_tokens(paths, settings)
    report = plan(shape, tokens, seq_len=settings.seq_len, gpus=1, gpu_name=card or "H200-141GB",
                  micro_batch=settings.micro_batch, global_batch=settings.global_batch,
                  activation_checkpointing=settings.activation_checkpointing, strategy=settings.strategy,
                  offload=settings.offload, lora_rank=settings.lora.rank, lora_targets=settings.lora.target_modules)
    estimate = report.lora if lora else report.choice.memory
    return {"predicted_peak": estimate.total if estimate else None, "predicted_as": estimate.label if estimate else
            report.choice.reason}


def run(folder: Path, name: str, smoke: bool) -> dict[str, Any]:
    import torch

    workspace = workspace_of(folder)
    settings = workspace.config().train
    strategy = {"overton-full": "auto", "overton-lora": "lora", "trainer": "ddp"}[name]
    settings = settings.model_copy(update={"strategy": strategy, "output": f"out-{name}"})
    if name == "overton-lora":
        from overton.train.strategies import strategy_class

        try:
            strategy_class("lora")
        except (UserError, ImportError) as error:
            return {"skipped": f"strategy lora not available ({error})"}
    cuda = torch.cuda.is_available()
    peak, card = device_card(settings)
    clock = StepClock(settings.log_every, settings.steps, cuda)
    began = time.perf_counter()
    try:
        result = (run_trainer if name == "trainer" else run_overton)(workspace, settings)
    except (UserError, ImportError) as error:
        return {"skipped": f"strategy {strategy} not available ({error})"}
    seconds = clock.seconds()
    shape = ModelShape.from_gptj_config(json.loads((workspace.root / "gptj.json").read_text()))
    tokens = (settings.steps - settings.log_every) * settings.global_batch * settings.seq_len
    speed = tokens / seconds
    model_flops = flops_per_token(shape, settings.seq_len, lora=name == "overton-lora")
    return {**result, "seconds": time.perf_counter() - began, "measured_steps": settings.steps - settings.log_every,
            "tokens_per_s": speed, "flops_per_token": model_flops, "peak_flops": peak, "card": card,
            "mfu": speed * model_flops / peak if peak else None, **peak_memory(cuda),
            **prediction(workspace, settings, card, name == "overton-lora")}


def run_overton(workspace: Workspace, settings) -> dict[str, Any]:
    """``overton train``'s run, without checkpoints or export; its mean loss, its strategy and its own log."""
    from overton.train.metrics import read_metrics
    from overton.train.trainer import Run

    class Unsaved(Run):
        def save(self, step: int) -> None:  # the run measures training steps, not checkpoint writes
            return None

    run = Unsaved(workspace, settings, progress=False)
    run.manager.free_bytes = lambda _root: 1 << 62  # no checkpoint is written: the disk check has nothing to check
    run.strategy.export = lambda _folder, _tokenizer: None
    try:
        run.run()
    finally:
        run.close()
    logs = [r for r in read_metrics(run.paths.output / "metrics.jsonl") if "loss" in r]
    steps = [r["step"] - p["step"] for p, r in zip([{"step": 0}, *logs], logs, strict=False)]
    return {"strategy": run.strategy.describe(), "strategy_line": run.strategy_line,
            "mean_loss": sum(r["loss"] * n for r, n in zip(logs, steps, strict=True)) / sum(steps),
            "logged_tokens_per_s": logs[-1]["tokens_per_s_per_device"]}


def run_trainer(workspace: Workspace, settings) -> dict[str, Any]:
    """transformers' Trainer: the same seeded GPT-J, the same sequences in the same order, the same batch,
    bf16 autocast over fp32 weights, activation checkpointing, fused AdamW on a GPU, no checkpoint."""
    import tempfile

    import torch
    from transformers import Trainer, TrainingArguments

    from overton.train.loader import PackedStream, Tokenizer
    from overton.train.model import attention_implementation, load_model
    from overton.train.sources import Sources, selection

    paths = Sources.resolve(workspace, settings)
    tokenizer = Tokenizer(paths.tokenizer)
    cuda = torch.cuda.is_available()
    bf16 = settings.precision == "bf16"
    model = load_model("", paths.from_config, settings.seed, tokenizer.backend.get_vocab_size(),
                       attention_implementation(torch.device("cuda" if cuda else "cpu"), bf16))
    stream = PackedStream(paths.dataset, tokenizer, settings.seq_len, settings.seed, paths.output / "cache",
                          selection(settings))

    class Sequences(torch.utils.data.IterableDataset):  # overton's global order, read in sequence (no sampler)
        def __iter__(self):
            for g in range(settings.steps * settings.global_batch):
                ids = torch.from_numpy(stream.sequence(g).astype("int64"))
                yield {"input_ids": ids, "labels": ids}

    with tempfile.TemporaryDirectory() as output:
        args = TrainingArguments(
            output_dir=output, max_steps=settings.steps, per_device_train_batch_size=settings.micro_batch,
            gradient_accumulation_steps=settings.global_batch // settings.micro_batch, learning_rate=settings.lr,
            warmup_steps=settings.warmup_steps, lr_scheduler_type="cosine", weight_decay=settings.weight_decay,
            adam_beta1=settings.adam_beta1, adam_beta2=settings.adam_beta2, max_grad_norm=settings.clip,
            bf16=bf16, gradient_checkpointing=settings.activation_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            optim="adamw_torch_fused" if cuda else "adamw_torch", use_cpu=not cuda, save_strategy="no",
            logging_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0, seed=settings.seed)
        metrics = Trainer(model=model, args=args, train_dataset=Sequences()).train().metrics
    return {"strategy": "transformers Trainer", "mean_loss": metrics["train_loss"]}


# ------------------------------------------------------------------------------------------ report


def gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def flop(n: float) -> str:
    return f"{n / 1e9:.2f} GFLOP" if n >= 1e8 else f"{n / 1e6:.2f} MFLOP"


def report(folder: Path, smoke: bool, seconds: float) -> None:
    runs = {}
    for name in RUNS:
        path = folder / f"{name}.json"
        status = folder / f"{name}.status"
        if path.is_file():
            runs[name] = json.loads(path.read_text())
        else:
            code = status.read_text().strip() if status.is_file() else "?"
            why = "timed out" if code in ("124", "137") else f"exit {code}"
            runs[name] = {"failed": f"{why}: the run's output above says why"}
    settings = workspace_of(folder).config().train
    shape = ModelShape.from_gptj_config(json.loads((workspace_of(folder).root / "gptj.json").read_text()))
    lines = [f"{shape.describe()}; sequences of {settings.seq_len} tokens, {settings.global_batch} a step "
             f"({settings.micro_batch} per micro-batch), {settings.steps} steps, the last "
             f"{settings.steps - settings.log_every} measured; {settings.precision}, activation checkpointing "
             f"{'on' if settings.activation_checkpointing else 'off'}",
             f"model FLOPs per token at {settings.seq_len}: {flop(flops_per_token(shape, settings.seq_len))} "
             f"(6N + 12*L*d*s; at 1024: {flop(flops_per_token(shape, 1024))}); LoRA "
             f"{flop(flops_per_token(shape, settings.seq_len, lora=True))} (4N + 12*L*d*s)",
             f"{'run':<14} {'strategy':<22} {'tokens/s':>10} {'MFU':>7} {'peak memory':>12} {'predicted':>10} "
             f"{'error':>7} {'mean loss':>9}"]
    memory_key = "peak_rss" if smoke else "peak_allocated"
    for name, r in runs.items():
        if "tokens_per_s" not in r:
            lines.append(f"{name:<14} {r.get('skipped') or r.get('failed')}")
            continue
        predicted, measured = r.get("predicted_peak"), r.get(memory_key)
        r["memory_error"] = (predicted - measured) / measured if predicted and measured else None
        mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
        error = "n/a" if r["memory_error"] is None else f"{r['memory_error']:+.0%}"
        lines.append(f"{name:<14} {r['strategy'].split(' (')[0]:<22} {r['tokens_per_s']:>10,.0f} {mfu:>7} "
                     f"{gib(measured):>12} {gib(predicted):>10} {error:>7} {r['mean_loss']:>9.4f}")
    full, trainer = runs["overton-full"], runs["trainer"]
    speedup = full["tokens_per_s"] / trainer["tokens_per_s"] if "tokens_per_s" in full and \
        "tokens_per_s" in trainer else None
    checks = {
        "mfu": (full.get("mfu"), TARGETS["mfu"], lambda v, t: v >= t, "MFU of overton's full fine-tune"),
        "speedup": (speedup, TARGETS["speedup"], lambda v, t: v >= t, "overton full / Trainer tokens/s"),
        "memory_error": (full.get("memory_error"), TARGETS["memory_error"], lambda v, t: abs(v) <= t,
                         "dry run's predicted peak against measured (overton full)"),
    }
    verdicts = {}
    for key, (value, target, ok, what) in checks.items():
        verdict = "n/a" if value is None or smoke else ("met" if ok(value, target) else "NOT met")
        shown = "n/a" if value is None else (f"{value:.2f}x" if key == "speedup" else f"{value:+.1%}"
                                               if key == "memory_error" else f"{value:.1%}")
        lines.append(f"target {what}: {shown} (target {'>=' if key != 'memory_error' else 'within'} "
                     f"{f'{target}x' if key == 'speedup' else f'{target:.0%}'}): {verdict}")
        verdicts[key] = {"value": value, "target": target, "verdict": verdict}
    if smoke:
        lines.append("smoke run on the CPU: it checks that the benchmark runs end to end and judges no target; a tiny "
                     "model's step is mostly fixed overhead, and peak memory is the process's RSS, runtime included")
    print("\n".join(lines))
    save_results("train_gpu-smoke" if smoke else "train_gpu", ["--smoke"] if smoke else [],
                 {"seconds": seconds, "smoke": smoke, "settings": {k: getattr(settings, k) for k in SETTINGS["gpu"]},
                  "model": shape.describe(), "runs": runs, "speedup": speedup, "targets": verdicts,
                  "lines": lines})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["prepare", "run", "report"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("name", nargs="?", choices=RUNS)
    parser.add_argument("--smoke", action="store_true", help="the tiny model on the CPU")
    parser.add_argument("--seconds", type=float, default=0.0, help="report: the whole benchmark's wall time")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.folder, args.smoke)
    elif args.step == "run":
        if args.smoke:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the smoke run stays on the CPU even on a GPU machine
        result = run(args.folder, args.name, args.smoke)
        (args.folder / f"{args.name}.json").write_text(json.dumps(result, indent=2))
        speed = result.get("tokens_per_s")
        print(f"{args.name}: {result.get('skipped') or f'{speed:,.0f} tokens/s'}")
    else:
        report(args.folder, args.smoke, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
