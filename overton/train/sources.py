"""What a training run reads and where it writes, from the ``[train]`` settings (torch-free: the dry run uses it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from overton.corpus.config import TrainConfig
from overton.corpus.errors import UserError
from overton.corpus.workspace import Workspace
from overton.train.loader import Selection, Task


def _day(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


def selection(settings: TrainConfig) -> Selection:
    return Selection(sources=tuple(settings.sources), since=_day(settings.since), until=_day(settings.until),
                     speakers=tuple(settings.speakers), weights=dict(settings.weights),
                     eval_fraction=settings.eval_fraction, eval_since=_day(settings.eval_since))


def task(settings: TrainConfig) -> Task:
    return Task(settings.task, settings.chat_template)


def _local(workspace: Workspace, value: str) -> str:
    """``value`` inside the workspace when it names something there; else as given (a URL, a hub name)."""
    if "://" in value or Path(value).is_absolute() or not (workspace.root / value).exists():
        return value
    return str(workspace.root / value)


@dataclass(frozen=True)
class Sources:
    """Where the run reads from and writes to, resolved against the workspace."""

    dataset: str
    tokenizer: str
    model: str
    from_config: str
    output: Path

    @classmethod
    def resolve(cls, workspace: Workspace, settings: TrainConfig, *, tokenizer_required: bool = True) -> Sources:
        """The run's paths; ``tokenizer_required=False`` (the dry run, which estimates tokens) leaves it empty."""
        if tokenizer_required and not settings.tokenizer:
            raise UserError("set [train] tokenizer: a tokenizer folder (or a hub name on a connected machine)")
        dataset = settings.dataset or str(workspace.dataset_dir(workspace.config().dataset.name))
        if "://" not in dataset:  # a dataset path is relative to the workspace, whether it exists yet or not
            dataset = str(workspace.root / dataset)
        return cls(dataset=dataset,
                   tokenizer=_local(workspace, settings.tokenizer) if settings.tokenizer else "",
                   model=_local(workspace, settings.model) if settings.model else "",
                   from_config=str(workspace.root / settings.from_config) if settings.from_config else "",
                   output=workspace.root / settings.output)

    @property
    def checkpoints(self) -> Path:
        return self.output / "checkpoints"

    @property
    def export(self) -> Path:
        return self.output / "model"
