"""Data loaders beyond Detectron2 0.6's: one batched test loader, for evaluation and for
catalogue inference."""
from __future__ import annotations

from typing import Dict, Sequence, Union

import torch
from detectron2.data import DatasetCatalog
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.data.samplers import InferenceSampler


def build_batched_test_loader(dataset: Union[str, Sequence[Dict]], mapper, batch_size: int = 8,
                              num_workers: int = 0, *, sequential: bool = False
                              ) -> torch.utils.data.DataLoader:
    """Like ``build_detection_test_loader`` but ``batch_size`` mapped dicts per batch (a list).

    Detectron2 0.6 evaluates one image at a time; batching amortises the per-call overhead
    of the model (small 200 px galaxies make that overhead a large share of the time). The
    loader workers still do all reading and resizing.

    Args:
        dataset: a registered dataset name, or the list of dataset dicts / galaxy records.
        mapper: dict -> model input. The loader does not catch its errors: a mapper that
            must never raise (catalogue inference) catches them itself
            (:class:`clump_d2.inference.mapper.InferenceMapper`).
        batch_size: dicts per batch (the last batch may be smaller).
        num_workers: loader worker processes.
        sequential: False (evaluation): every dict exactly once over all processes, split by
            ``InferenceSampler``. True (catalogue inference): all of ``dataset``, in order, in
            this process: the records are a shard already assigned to it.
    """
    dicts = DatasetCatalog.get(dataset) if isinstance(dataset, str) else list(dataset)
    data = MapDataset(DatasetFromList(dicts, copy=False), mapper)
    sampler = (torch.utils.data.SequentialSampler(data) if sequential
               else InferenceSampler(len(data)))
    batch_sampler = torch.utils.data.BatchSampler(sampler, max(1, int(batch_size)),
                                                  drop_last=False)
    return torch.utils.data.DataLoader(data, num_workers=num_workers,
                                       batch_sampler=batch_sampler,
                                       collate_fn=trivial_batch_collator)
