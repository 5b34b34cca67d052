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

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        stream = self.make_stream()
        for first, ids, _labels in micro_batches(stream, self.layout, self.first_step, worker, workers):
            yield first, torch.from_numpy(ids.astype("int64"))
