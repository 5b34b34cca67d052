"""``overton train``: GPT-J causal-LM training that any stop can interrupt and the same command resumes.

One optimizer step takes ``global_batch`` sequences of the loader's global stream: each of the ``W``
processes (``torchrun``) takes ``global_batch / W`` of them in micro-batches, accumulating gradients.
Gradients are clipped by their global norm; AdamW's learning rate warms up linearly, then decays along a
cosine to ``lr * min_lr_ratio`` at the last step. Parameters stay fp32; with ``precision = "bf16"`` (the
default on GPUs that have it) the forward and backward passes compute in bf16. How the model is spread over
the processes (DDP, FSDP), what trains, and how its state is saved is the strategy's business
(:mod:`overton.train.strategies`); this loop is the same for all of them.

What makes it resumable:

* a checkpoint (``overton.train.checkpoint``: atomic, committed by a marker, rotated) holds the model and
  AdamW states (the strategy's, through DCP), the scheduler state, each rank's RNG states and the loader's
  state: the step (the position in
  the global stream is ``step * global_batch``) and the dataset segments read so far. Same command after
  a crash, a kill or a preemption: the newest committed checkpoint whose files match their checksums is
  loaded and the run goes on with the sequences an uninterrupted run would have seen next, on any number
  of processes with the same global batch;
* SIGTERM (what preemptible machines get before they stop) and SIGINT finish the current step, save a
  checkpoint and exit 0; every rank stops at the same step (the flag is reduced over ranks each step);
* the disk is checked before the first step (``K + 1`` checkpoints and the export must fit) and before
  each save, so a run refuses to start, with one line, instead of dying at 20 % with nothing to resume.

At the end the model is exported with ``save_pretrained`` (bf16 when trained in bf16) with its tokenizer,
and ``loss.png`` is drawn from ``metrics.jsonl``.
"""

from __future__ import annotations

import functools
import math
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from overton.corpus.config import CHAT_TEMPLATE, TrainConfig
from overton.corpus.errors import UserError
from overton.corpus.lifetime import worker_of
from overton.corpus.workspace import Workspace
from overton.train.budget import GPU, GPUS, ModelShape, choose_strategy, flops_per_token
from overton.train.checkpoint import CheckpointManager, file_digest, human_bytes
from overton.train.data import SequenceDataset
from overton.train.distributed import Distributed
from overton.train.loader import Layout, PackedStream, Tokenizer, eval_batches
from overton.train.metrics import Metrics, plot_loss
from overton.train.model import attention_implementation, load_model
from overton.train.sources import Sources, selection, task
from overton.train.strategies import strategy_class

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# ------------------------------------------------------------------------------------------ settings


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based): linear warmup, then cosine decay."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def peak_flops(settings: TrainConfig, device: torch.device) -> float | None:
    """Peak bf16 FLOP/s of one device: the setting, else the catalogue's for A100, H100, H200; None otherwise."""
    if settings.peak_tflops:
        return settings.peak_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).upper()
    big = torch.cuda.get_device_properties(device).total_memory > 60 * 2**30
    for key, card in (("H200", "H200-141GB"), ("H100", "H100-80GB"), ("A100", "A100-80GB" if big else "A100-40GB")):
        if key in name:
            return GPUS[card].peak_flops
    return None


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Diverged(RuntimeError):
    """The loss became NaN or infinite: ``overton train`` exits 1 with this message and saves nothing."""


def _inputs(batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and labels of a micro-batch: a tensor of ids (labels are the ids: every token is learned), or a
    mapping with ``input_ids`` and optional ``labels`` (-100 where no loss is taken, e.g. a prompt)."""
    if isinstance(batch, torch.Tensor):
        ids = batch.to(device, non_blocking=True)
        return ids, ids
    ids = batch["input_ids"].to(device, non_blocking=True)
    labels = batch.get("labels")
    return ids, ids if labels is None else labels.to(device, non_blocking=True)


def _loader_worker(parent: int, _worker: int) -> None:
    """Loader workers ignore Ctrl-C: the training process finishes its step (it needs their batches) and saves.
    They end with the training process, however it ends (torch's own check notices only within 5 s)."""
    worker_of(parent)


@dataclass(frozen=True)
class Outcome:
    step: int  # optimizer steps done
    last_step: int
    stopped_by: str | None  # the signal's name when a signal stopped the run
    resumed_from: int | None
    export: Path | None
    loss: float | None  # the last logged training loss


# ------------------------------------------------------------------------------------------ the run


class Run:
    """One training process (a rank); ``run()`` trains from the latest committed checkpoint to the end."""

    def __init__(self, workspace: Workspace, settings: TrainConfig, progress: bool = True):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.settings, self.progress = settings, progress
        self.paths = Sources.resolve(workspace, settings)
        self.dist = Distributed.start()
        s, d = settings, self.dist
        per_step = s.micro_batch * d.world
        if s.global_batch % per_step:
            raise UserError(f"[train] global_batch {s.global_batch} must be a multiple of micro_batch x processes "
                            f"= {s.micro_batch} x {d.world}")
        self.layout = Layout(d.world, d.rank, s.micro_batch, s.global_batch // per_step)
        self.tokenizer = Tokenizer(self.paths.tokenizer)
        self.cache = self.paths.output / "cache"
        if s.follow and not s.epochs:
            raise UserError("[train] follow needs epochs >= 1: the passes over the current version before "
                            "training on what newer versions add")
        self.make_stream = functools.partial(PackedStream, self.paths.dataset, self.tokenizer, s.seq_len, s.seed,
                                             self.cache, selection(s), epochs=s.epochs or None, follow=s.follow,
                                             poll_seconds=s.follow_poll_seconds, task=task(s))
        count = self._on_main(lambda: self.make_stream().count())  # rank 0 builds the token index first
        self.stream = self.make_stream()
        self.last_step = s.steps if count is None else min(s.steps, count // s.global_batch)
        if self.last_step == 0:
            raise UserError(f"the selected data holds {count} sequences of {s.seq_len} tokens, fewer than one "
                            f"global batch of {s.global_batch}")
        self.bf16 = s.precision == "bf16" or (s.precision == "auto" and d.device.type == "cuda"
                                              and torch.cuda.is_bf16_supported())
        self.attention = attention_implementation(d.device, self.bf16)
        model = load_model(self.paths.model, self.paths.from_config, s.seed, self.tokenizer.backend.get_vocab_size(),
                           self.attention)
        if s.seq_len > model.config.n_positions:
            raise UserError(f"[train] seq_len {s.seq_len} is longer than the model's {model.config.n_positions} "
                            "positions")
        if s.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        if s.compile:  # block by block, before any wrapping (as FSDP2 wants it)
            for block in model.transformer.h:
                block.compile()
        shape = ModelShape.from_gptj_config(model.config.to_dict())
        self.flops_per_token = flops_per_token(shape, s.seq_len)
        self.peak = peak_flops(s, d.device)
        name, offload, self.strategy_line = self._choose_strategy(shape)
        self.strategy = strategy_class(name)(d, s.model_copy(update={"offload": offload}), self.bf16)
        self.strategy.prepare(model)
        self.optimizer = self.strategy.optimizer
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(lr_factor, warmup=s.warmup_steps, total=self.last_step,
                                              min_ratio=s.min_lr_ratio))
        self.manager = CheckpointManager(self.paths.checkpoints, keep=s.keep)

    def _choose_strategy(self, shape: ModelShape) -> tuple[str, bool, str | None]:
        """``[train] strategy``, or for ``auto`` what ``budget.choose_strategy`` (the dry run's planner) takes on
        the GPUs present; whether to offload; and the line that says why (None: as set, and it fits)."""
        s, d = self.settings, self.dist
        if d.device.type != "cuda":
            if s.strategy == "auto":
                return "ddp", False, "strategy auto takes ddp (on CPUs: no GPU memory to plan for)"
            return s.strategy, s.offload, None
        properties = torch.cuda.get_device_properties(d.device)
        card = GPU(properties.name, properties.total_memory, self.peak or 0.0)
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        choice = choose_strategy(shape, s.seq_len, s.micro_batch, d.world, card, strategy=s.strategy,
                                 offload=s.offload, checkpointing=s.activation_checkpointing, host_ram_bytes=host)
        if choice.memory is None and choice.name is not None:  # a strategy the planner does not price (lora)
            return choice.name, False, None
        if choice.name is None:
            raise UserError(f"[train] strategy auto: full fine-tuning fits no strategy here ({choice.reason}); set "
                            "[train] strategy to try one anyway")
        taken = "takes" if s.strategy == "auto" else "runs"
        return choice.name, choice.offload, f"strategy {s.strategy} {taken} {choice.way} ({choice.reason})"

    def _on_main(self, function):
        """``function()`` on rank 0 only; its result is shared with every rank, its UserError raised on all."""
        result, error = None, None
        if self.dist.main:
            try:
                result = function()
            except UserError as exc:
                error = str(exc)
        result, error = self.dist.share((result, error))
        if error:
            raise UserError(error)
        return result

    # ---------------------------------------------------------------------------- checkpoints

    def _meta(self, step: int) -> dict[str, Any]:
        s = self.settings
        self.stream.locate(max(0, step * s.global_batch - 1))  # the segments up to the position (follow)
        return {"step": step, "position": step * s.global_batch, "global_batch": s.global_batch,
                "seq_len": s.seq_len, "seed": s.seed, "dataset": self.paths.dataset,
                "tokenizer": self.tokenizer.fingerprint, "task": s.task, "chat_template": s.chat_template,
                "segments": self.stream.state_segments(), "selection": self._selection_settings(),
                "processes": self.dist.world}

    def _selection_settings(self) -> dict[str, Any]:
        """The settings that choose and weigh the documents: a change moves the run to another stream."""
        keys = ("sources", "since", "until", "speakers", "weights", "eval_fraction", "eval_since", "epochs")
        return {key: getattr(self.settings, key) for key in keys}

    def save(self, step: int) -> Path:
        def begin() -> str:
            self.manager.preflight(self.strategy.checkpoint_bytes, self.strategy.export_bytes)
            return str(self.manager.begin(step))

        tmp = Path(self._on_main(begin))
        rng = tmp / f"rng-rank{self.dist.rank}.pt"
        torch.save(_rng_state(), rng)
        written = [rng, *self.strategy.save(tmp)]  # every rank its part of the model and optimizer state
        if self.dist.main:  # hashed as it is written
            with self.manager.open(tmp / "scheduler.pt") as handle:
                torch.save(self.scheduler.state_dict(), handle)
        # each rank hashes what it wrote (in its page cache); rank 0 commits once every rank has reported
        reports = self.dist.gather({str(path): (path.stat().st_size, file_digest(path)) for path in written})
        return Path(self._on_main(lambda: str(self.manager.commit(
            tmp, step, self._meta(step), {path: value for report in reports for path, value in report.items()}))))

    def resume(self) -> int | None:
        """Load the newest committed checkpoint whose checksums match; its step, or None on a fresh start.

        Rank 0 alone lists and verifies the checkpoints (reading the newest back, once) and sends every
        rank the folder to load and its meta, so the ranks cannot load different ones.
        """
        def find() -> tuple[str, dict] | None:
            removed = self.manager.clean_stale()
            for path, reason in self.manager.broken():
                print(f"skipping checkpoint {path.name}: {reason}")
            if removed:
                print(f"removed {len(removed)} unfinished checkpoint folder(s) of an interrupted save")
            began = time.perf_counter()
            checkpoint, lines = self.manager.newest_sound()
            for line in lines:
                print(line)
            if checkpoint is None:
                return None
            if checkpoint.checksummed:
                print(f"{checkpoint.path.name}: checksums verified ({human_bytes(checkpoint.bytes)} in "
                      f"{time.perf_counter() - began:.1f} s)")
            return str(checkpoint.path), checkpoint.meta

        found = self._on_main(find)
        if found is None:
            return None
        path, meta = Path(found[0]), found[1]
        s = self.settings
        # what makes the sequences: another value would continue a different stream (checkpoints from before
        # chat training were text, with the one template there was)
        recorded = {"task": "text", "chat_template": CHAT_TEMPLATE, **meta}
        for key, now in (("global_batch", s.global_batch), ("seq_len", s.seq_len), ("seed", s.seed),
                         ("tokenizer", self.tokenizer.fingerprint), ("task", s.task),
                         ("chat_template", s.chat_template if s.task == "chat" else recorded["chat_template"])):
            if recorded[key] != now:
                raise UserError(f"{path}: the checkpoint was trained with {key} {recorded[key]!r}, the settings say "
                                f"{now!r}; resuming needs the same value (or another [train] output for a new run)")
        if self.dist.main and meta.get("selection", self._selection_settings()) != self._selection_settings():
            print(f"note: the document selection changed since {path.name} (sources, dates, speakers, weights, "
                  "held-out split or epochs): the run goes on at the same position of the new selection's stream")
        self.strategy.load(path)
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location=self.dist.device,
                                                  weights_only=True))
        rng = path / f"rng-rank{self.dist.rank}.pt"
        if rng.is_file():
            _set_rng_state(torch.load(rng, weights_only=True))
        else:  # a rank the saving run did not have (elastic resume)
            torch.manual_seed(s.seed + 1000 * self.dist.rank + meta["step"])
        self.make_stream = functools.partial(self.make_stream, segments=meta["segments"])
        self.stream = self.make_stream()
        return int(meta["step"])

    # ---------------------------------------------------------------------------- evaluation

    def evaluate(self, stream: PackedStream) -> tuple[float, int]:
        """Mean loss over the held-out sequences (at most ``eval_batches`` micro-batches per rank)."""
        model = self.strategy.module
        model.eval()
        total, batches = torch.zeros((), dtype=torch.float64, device=self.dist.device), 0
        limit = self.settings.eval_batches or None
        with torch.no_grad(), self.strategy.autocast():
            for ids, labels in eval_batches(stream, self.dist.world, self.dist.rank, self.settings.micro_batch):
                ids, labels = (torch.from_numpy(a.astype("int64")).to(self.dist.device) for a in (ids, labels))
                total += model(input_ids=ids, labels=labels).loss.double()
                batches += 1
                if batches == limit:
                    break
        model.train()
        return self.dist.mean(total / max(batches, 1)), batches * self.settings.micro_batch * self.dist.world

    def _refuse_diverged(self, loss: float, step: int) -> None:
        """Stop, saving nothing, when the loss is NaN or infinite: a checkpoint of diverged weights is worthless."""
        if not math.isfinite(loss):
            latest = self.manager.latest()
            where = f"run again: it resumes from {latest}" if latest else "run again"
            raise Diverged(f"the loss is {loss} at step {step}: training diverged, nothing saved; lower [train] lr "
                           f"or raise warmup_steps, and {where}")

    def _evaluation_stream(self, metrics: Metrics) -> PackedStream | None:
        s = self.settings
        if not s.eval_every:
            return None
        if not (s.eval_fraction or s.eval_since):
            metrics.say("no evaluation: set [train] eval_fraction or eval_since to hold documents out")
            return None
        stream = PackedStream(self.paths.dataset, self.tokenizer, s.seq_len, s.seed, self.cache, selection(s),
                              evaluation=True, task=task(s))
        if stream.count() < s.micro_batch * self.dist.world:
            metrics.say(f"no evaluation: the held-out documents fill {stream.count()} sequences, fewer than "
                        f"micro_batch x processes = {s.micro_batch * self.dist.world}")
            return None
        return stream

    # ---------------------------------------------------------------------------- training

    def run(self) -> Outcome:
        s, d = self.settings, self.dist
        preflight = self._on_main(lambda: self.manager.preflight(self.strategy.checkpoint_bytes,
                                                                 self.strategy.export_bytes))
        resumed = self.resume()
        start = resumed or 0
        metrics = Metrics(self.paths.output, start, self.last_step, enabled=d.main, tensorboard=s.tensorboard,
                          progress=self.progress)
        if preflight:
            metrics.say(preflight.summary())
        if self.strategy_line:
            metrics.say(self.strategy_line)
        metrics.say(f"{'resuming at step ' + str(start) if resumed is not None else 'starting'}: "
                    f"{self.last_step} steps of {s.global_batch} sequences x {s.seq_len} tokens; {d.world} "
                    f"process(es) x micro-batch {s.micro_batch} x {self.layout.accumulation} accumulation; "
                    f"{'bf16' if self.bf16 else 'fp32'} on {d.device.type}; {self.strategy.describe()}; attention "
                    f"{self.attention}{'; blocks compiled' if s.compile else ''}")
        if s.task == "chat":
            metrics.say(self.stream.describe())
        evaluation = self._evaluation_stream(metrics)
        # its own generator: iter() draws the workers' base seed from it, not from the global RNG that a resume
        # restores (one draw there would shift every dropout mask after a resume)
        loader = DataLoader(SequenceDataset(self.make_stream, self.layout, start), batch_size=None,
                            num_workers=s.loader_workers, pin_memory=d.device.type == "cuda",
                            worker_init_fn=functools.partial(_loader_worker, os.getpid()),
                            generator=torch.Generator().manual_seed(s.seed))
        batches = iter(loader)
        stop: dict[str, str | None] = {"signal": None}

        def on_signal(number, _frame) -> None:
            stop["signal"] = signal.Signals(number).name

        previous = {number: signal.signal(number, on_signal) for number in STOP_SIGNALS}
        step, last_loss = start, None
        window_loss = torch.zeros((), dtype=torch.float64, device=d.device)
        window_steps, window_seconds = 0, 0.0
        try:
            strategy = self.strategy
            strategy.model.train()
            while step < self.last_step:
                began = time.perf_counter()
                lr = self.scheduler.get_last_lr()[0]
                for m in range(self.layout.accumulation):
                    _first, batch = next(batches)
                    ids, labels = _inputs(batch, d.device)
                    with strategy.accumulate(last=m == self.layout.accumulation - 1):
                        with strategy.autocast():
                            loss = strategy.model(input_ids=ids, labels=labels).loss
                        (loss / self.layout.accumulation).backward()
                    window_loss += loss.detach().double() / self.layout.accumulation
                grad_norm = strategy.clip(s.clip)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                step += 1
                window_steps += 1
                window_seconds += time.perf_counter() - began
                metrics.advance()
                if step % s.log_every == 0 or step in (start + 1, self.last_step):  # throughput from the start
                    last_loss = d.mean(window_loss / window_steps)
                    self._refuse_diverged(last_loss, step)
                    tokens = window_steps * self.layout.micro_batch * self.layout.accumulation * s.seq_len
                    speed = tokens / window_seconds
                    metrics.log({"step": step, "steps": self.last_step, "loss": last_loss, "lr": lr,
                                 "grad_norm": float(grad_norm), "tokens_per_s_per_device": speed,
                                 "mfu": None if self.peak is None else speed * self.flops_per_token / self.peak,
                                 "sequences": step * s.global_batch})
                    window_loss.zero_()
                    window_steps, window_seconds = 0, 0.0
                if evaluation and (step % s.eval_every == 0 or step == self.last_step):
                    loss, sequences = self.evaluate(evaluation)
                    metrics.log({"step": step, "eval_loss": loss, "eval_perplexity": math.exp(min(loss, 700)),
                                 "eval_sequences": sequences})
                stopping = d.any(stop["signal"] is not None)
                if stopping or step % s.save_every == 0 or step == self.last_step:
                    self._refuse_diverged(d.mean(window_loss), step)  # the steps since the last log
                    self.save(step)
                if stopping:
                    metrics.say(f"stopped by {stop['signal'] or 'another process'} at step {step}: checkpoint "
                                "saved; run the same command to resume")
                    return Outcome(step, self.last_step, stop["signal"] or "peer", resumed, None, last_loss)
            exported = None
            if resumed == self.last_step and self._on_main(self.paths.export.is_dir):
                exported = self.paths.export if d.main else None
                metrics.say(f"already done: {step} steps; the model is in {self.paths.export}")
            else:
                exported = strategy.export(self.paths.export, self.paths.tokenizer)  # every rank: FSDP gathers
                if d.main:
                    plot_loss(metrics.path, self.paths.output / "loss.png")
                metrics.say(f"done: {step} steps; model exported to {exported}")  # the strategy's folder
            d.barrier()
            return Outcome(step, self.last_step, None, resumed, exported, last_loss)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            metrics.close()
            del batches

    def close(self) -> None:
        self.dist.close()


def train(workspace: Workspace, settings: TrainConfig, progress: bool = True) -> Outcome:
    run = Run(workspace, settings, progress)
    try:
        outcome = run.run()
        # every rank done before the process group goes: tearing gloo down under a rank still in a collective
        # aborts that rank's process ("terminate called without an active exception")
        run.dist.barrier()
        return outcome
    finally:
        run.close()
