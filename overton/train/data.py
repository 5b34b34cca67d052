"""The loader's stream as a torch ``IterableDataset``, for ``DataLoader`` with any number of workers.

Each worker opens its own :class:`~overton.train.loader.PackedStream` (file handles and caches are not
shared across processes) and yields every ``K``-th micro-batch of its rank; ``DataLoader`` (batch_size
None) takes them from the workers in turn, which restores the rank's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from overton.train.loader import Layout, PackedStream, micro_batches


class SequenceDataset(IterableDataset):
    def __init__(self, make_stream: Callable[[], PackedStream], layout: Layout, first_step: int):
        super().__init__()
        self.make_stream, self.layout, self.first_step = make_stream, layout, first_step

    def __iter__(self) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """(first sequence, {"input_ids", and "labels" when they are not the ids}): the chat task's labels are the
        ids with -100 on the prompts and the padding; the text task learns every token."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        stream = self.make_stream()
        for first, ids, labels in micro_batches(stream, self.layout, self.first_step, worker, workers):
            batch = {"input_ids": torch.from_numpy(ids.astype("int64"))}
            if labels is not ids:
                batch["labels"] = torch.from_numpy(labels.astype("int64"))
            yield first, batch
