"""Batch serving for data layers: whole data sets held as tensors on the training device, and Caffe's
transform_param applied to a whole batch at once on that device.

A reader's position (epoch, cursor, the epoch's order and its generators' states) is part of every
snapshot, so that a resumed run sees exactly the batches the uninterrupted run would have seen.
Data-set backends (IDX files today) only have to produce (uint8 images N x C x H x W, labels N); the
batching and the transforms below are shared by all of them.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import NetdefError, ShapeError


class Transform:
    """Caffe's DataTransformer for a batch of uint8 images N x C x H x W -> float32 (caffe.md §g).

    Order as Caffe: crop (random offset per image in TRAIN, centre in TEST), mirror, mean subtraction,
    scale; netdef's `pad` zero-pads before cropping. Differs from Caffe in one respect: `mirror` flips
    only in TRAIN (Caffe also flips test images at random), so that test passes are deterministic.
    """

    def __init__(self, params: dict, phase: str, generator: torch.Generator):
        self.scale = params["scale"]
        self.pad = params["pad"]
        self.crop = params["crop_size"]
        self.random = phase == "TRAIN"
        self.mirror = params["mirror"] and self.random
        self.generator = generator
        self.rank, self.world = 0, 1
        device = generator.device
        means = params["mean_value"] or []  # one value for all channels or one per channel (checked at load)
        self.mean = torch.tensor(means, dtype=torch.float32, device=device).view(1, -1, 1, 1) if means else None

    def shard(self, rank: int, world: int) -> None:
        """Transform rank `rank`'s share of a batch spread over `world` processes (see InMemoryReader.shard)."""
        self.rank, self.world = rank, world

    def _per_image(self, draw, n: int) -> torch.Tensor:
        """`draw(count)`'s values for this rank's `n` images: every rank draws them for the whole batch of
        the `world` ranks and keeps its own rows, so that the generator stays in step with one process's."""
        if self.world == 1:
            return draw(n)
        return draw(n * self.world)[self.rank * n:(self.rank + 1) * n]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.pad:
            images = torch.nn.functional.pad(images, (self.pad,) * 4)
        if self.crop:
            images = self._random_crop(images) if self.random else self._centre_crop(images)
        if self.mirror:
            flip = self._per_image(lambda count: torch.rand(count, generator=self.generator, device=images.device),
                                   images.shape[0]) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        if self.mean is not None:
            return (images - self.mean) * self.scale
        return images * self.scale  # uint8 times a Python float is float32: one kernel

    def _centre_crop(self, images):
        top = (images.shape[-2] - self.crop) // 2
        left = (images.shape[-1] - self.crop) // 2
        return images[..., top:top + self.crop, left:left + self.crop]

    def _random_crop(self, images):
        """One offset per image, drawn on the device; every crop window is a view (unfold), and one
        gather picks each image's window (no loop over the batch)."""
        n, _, height, width = images.shape
        device = images.device
        tops = self._per_image(lambda count: torch.randint(0, height - self.crop + 1, (count,),
                                                           generator=self.generator, device=device), n)
        lefts = self._per_image(lambda count: torch.randint(0, width - self.crop + 1, (count,),
                                                            generator=self.generator, device=device), n)
        windows = images.unfold(2, self.crop, 1).unfold(3, self.crop, 1)  # N x C x H' x W' x crop x crop
        return windows[torch.arange(n, device=device), :, tops, lefts]


class InMemoryReader:
    """Serves batches from tensors that share their first axis (images, labels), cycling forever.

    TRAIN (`shuffle`) draws a new order at every epoch from a CPU torch.Generator seeded with the
    solver's seed; TEST reads in file order. A batch that runs past the end of an epoch continues into the
    next one, as Caffe's cursor wraps. Indexing happens on the device; nothing is read back to the host.
    """

    def __init__(self, tensors: list, batch_size: int, *, shuffle: bool, seed: int, device, transform=None):
        self.tensors = [t.to(device) for t in tensors]
        self.size = self.tensors[0].shape[0]
        if self.size == 0:
            raise ValueError("the data set is empty")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.device = torch.device(device)
        self.transform = transform
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.position = 0
        self.rank, self.world = 0, 1
        self.order = self._draw_order()

    def shard(self, rank: int, world: int) -> None:
        """Serve rank `rank`'s share of a batch spread over `world` processes: the order, the cursor and the
        generators move by the whole batch of `world` x batch_size rows, of which this reader returns rows
        [rank x batch_size, (rank + 1) x batch_size). `world` ranks at batch B therefore see, at every
        iteration, exactly the rows one process at batch world x B sees, and the position (saved in a
        snapshot) is the same on every rank and for any number of ranks."""
        self.rank, self.world = rank, world
        if self.transform is not None:
            self.transform.shard(rank, world)

    def _draw_order(self):
        if not self.shuffle:
            return None
        return torch.randperm(self.size, generator=self.generator).to(self.device)

    def _next_indices(self):
        """This rank's rows of the next batch as index pieces: slices for in-order reading, index tensors
        when shuffled."""
        pieces = self._next_pieces(self.batch_size * self.world)
        return pieces if self.world == 1 else _rows_of(pieces, self.rank * self.batch_size, self.batch_size)

    def _next_pieces(self, wanted: int):
        pieces = []
        while wanted:
            take = min(wanted, self.size - self.position)
            start = self.position
            pieces.append(slice(start, start + take) if self.order is None else self.order[start:start + take])
            wanted -= take
            self.position += take
            if self.position == self.size:
                self.epoch += 1
                self.position = 0
                self.order = self._draw_order()
        return pieces

    def _gather(self, tensor, pieces):
        # index_select of rows of a flat view: on CPU, index_select of a 4-D uint8 tensor is ~20x slower
        rows = tensor.reshape(tensor.shape[0], -1)
        parts = [tensor[p] if isinstance(p, slice) else rows.index_select(0, p).view((-1,) + tensor.shape[1:])
                 for p in pieces]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def next(self) -> list:
        """One batch: a tensor per top (images transformed to float32, labels as int64)."""
        pieces = self._next_indices()
        batch = [self._gather(t, pieces) for t in self.tensors]
        if self.transform is not None:
            batch[0] = self.transform(batch[0])
        return batch

    def state_dict(self) -> dict:
        state = {"size": self.size, "epoch": self.epoch, "position": self.position,
                 "generator": self.generator.get_state(),
                 "order": None if self.order is None else self.order.cpu()}
        if self.transform is not None:
            state["transform_generator"] = self.transform.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != self.size:
            raise ValueError(f"the snapshot's reader served {state['size']} samples, this data set has {self.size}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.generator.set_state(state["generator"])
        self.order = None if state["order"] is None else state["order"].to(self.device)
        if self.transform is not None and "transform_generator" in state:
            self.transform.generator.set_state(state["transform_generator"])



def _rows_of(pieces: list, start: int, count: int) -> list:
    """Rows [start, start + count) of the batch that `pieces` (slices and index tensors) spell, as pieces."""
    rows = []
    for piece in pieces:
        length = piece.stop - piece.start if isinstance(piece, slice) else piece.numel()
        if start >= length:
            start -= length
            continue
        take = min(count, length - start)
        rows.append(slice(piece.start + start, piece.start + start + take) if isinstance(piece, slice)
                    else piece[start:start + take])
        count -= take
        start = 0
        if not count:
            break
    return rows


class DataFeed:
    """The readers of a net's source layers: `next()` gives the keyword inputs of the compiled net. With
    `world` (rank, size: netdef.train.distributed.World) of several processes, every reader that can serves
    this rank's shard of each batch (readers without `shard`, e.g. DummyData's, fill each rank's batch)."""

    def __init__(self, graph, input_names: dict, phase: str, seed: int, device, world=None):
        self.sources = []  # (layer name, reader, the net's argument name for each top)
        for spec in graph.layers:
            if spec.impl.compiled():
                continue
            try:
                reader = spec.impl.reader(phase, seed, device)
            except NotImplementedError:
                raise NetdefError(spec.problem(f"{spec.type} layers are fed by the caller; a net that is trained "
                                               "or tested reads its data from Data layers", ("type",))) from None
            except ShapeError as exc:
                raise NetdefError(spec.problem(exc.message, exc.path, expected=exc.expected, found=exc.found)) from None
            if world is not None and world.distributed and hasattr(reader, "shard"):
                reader.shard(world.rank, world.size)
            self.sources.append((spec.name, reader, [input_names[top] for top in spec.tops]))

    def next(self) -> dict:
        inputs = {}
        for _, reader, names in self.sources:
            inputs.update(zip(names, reader.next()))
        return inputs

    def state_dict(self) -> dict:
        return {name: reader.state_dict() for name, reader, _ in self.sources}

    def load_state_dict(self, state: dict) -> list:
        """Restore every reader found in `state`; returns a line per reader that could not be restored."""
        problems = []
        for name, reader, _ in self.sources:
            if name not in state:
                problems.append(f"data layer '{name}': not in the snapshot, starts from the beginning")
                continue
            try:
                reader.load_state_dict(state[name])
            except ValueError as exc:
                problems.append(f"data layer '{name}': {exc}; starts from the beginning")
        return problems
