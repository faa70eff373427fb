"""Batches of a data set too big to hold in memory: decoded (or read from a packed file) by DataLoader
worker processes while the net trains, in exactly the order an in-memory reader would serve them.

The order comes from an InMemoryReader over the sample indices (same seeded generator, same epoch
shuffles), so a streamed and an in-memory data set give identical batches, and the position saved in a
snapshot is that reader's state as of the last batch handed to the net (the loader runs ahead).
"""
from __future__ import annotations

import collections

import torch

from ..errors import NetdefError
from .images import collate
from .readers import InMemoryReader


class _PlannedBatches:
    """The DataLoader's batch sampler: the plan's next indices, forever; records each batch's plan state."""

    def __init__(self, reader):
        self.reader = reader

    def __iter__(self):
        while True:
            indices = self.reader.plan.next()[0]
            self.reader.pending.append((indices, self.reader.plan.state_dict()))
            yield indices.tolist()


class StreamReader:
    """Serves `labels` and the images of `dataset` (items (index, uint8 array or None, error)) in batches;
    the transform runs on the device after the pinned, non-blocking copy. `samples` name the images in
    errors (a decoding failure here is fatal: skip_bad data sets are verified before streaming)."""

    def __init__(self, dataset, labels: torch.Tensor, batch_size: int, *, shuffle: bool, seed: int, device,
                 transform, workers: int, samples=None, n_tops: int = 2, prefetch: int = 4):
        self.plan = InMemoryReader([torch.arange(len(dataset))], batch_size, shuffle=shuffle, seed=seed,
                                   device="cpu")
        self.dataset, self.labels, self.samples = dataset, labels, samples
        self.device = torch.device(device)
        self.transform = transform
        self.n_tops = n_tops
        self.workers, self.prefetch = workers, prefetch
        self.pending = collections.deque()
        self.state = self.plan.state_dict()
        self.batches = None

    def shard(self, rank: int, world: int) -> None:
        """Stream rank `rank`'s rows of each batch of `world` processes (InMemoryReader.shard)."""
        self.plan.shard(rank, world)
        self.transform.shard(rank, world)
        self.state = self.plan.state_dict()

    def _start(self):
        self.pending.clear()
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=_PlannedBatches(self), num_workers=self.workers, collate_fn=collate,
            pin_memory=self.device.type == "cuda", prefetch_factor=self.prefetch if self.workers else None)
        return iter(loader)

    def next(self) -> list:
        if self.batches is None:
            self.batches = self._start()
        images, failures = next(self.batches)
        indices, self.state = self.pending.popleft()
        if failures:
            raise NetdefError([self.samples[index].problem(error) for _, index, error in failures])
        images = self.transform(images.to(self.device, non_blocking=True))
        labels = self.labels[indices].to(self.device, non_blocking=True)
        return [images, labels][:self.n_tops]

    def state_dict(self) -> dict:
        state = dict(self.state)
        state["transform_generator"] = self.transform.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.plan.load_state_dict(state)
        self.state = self.plan.state_dict()
        if "transform_generator" in state:
            self.transform.generator.set_state(state["transform_generator"])
        self.batches = None  # restart the workers from the restored position
