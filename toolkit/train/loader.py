"""Torch DataLoaders over the numpy ``SegmentationDataset``, deterministic given (seed, epoch)."""

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from edgeseg.data.dataset import SegmentationDataset, collate

TENSOR_KEYS = ("img", "cls", "bboxes", "batch_idx", "masks")


def collate_tensors(samples: list[dict]) -> dict:
    """``edgeseg.data.dataset.collate`` with the array fields as torch tensors (img stays uint8)."""
    batch = collate(samples)
    for key in TENSOR_KEYS:
        batch[key] = torch.from_numpy(np.ascontiguousarray(batch[key]))
    return batch


def _quiet_worker(_: int) -> None:
    """Keep each loader worker single-threaded so workers and the training step share the cores."""
    cv2.setNumThreads(0)
    torch.set_num_threads(1)


def train_loader(
    dataset: SegmentationDataset, batch: int, workers: int, seed: int, epoch: int, rank: int = -1, world_size: int = 1
) -> DataLoader:
    """A shuffled loader for one epoch: the order depends only on (seed, epoch).

    With ``rank >= 0`` each of ``world_size`` processes gets its own share (DistributedSampler)
    and ``batch`` is the per-process batch.
    """
    dataset.set_epoch(epoch)
    if rank >= 0:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_tensors,
        drop_last=False,
        persistent_workers=False,
        worker_init_fn=_quiet_worker if workers > 0 else None,
        multiprocessing_context="fork" if workers > 0 else None,
    )
