"""The layer contract and the registry: one class per Caffe layer type, registered by its type name.

A layer class declares its parameter blocks (tables of fields), how many bottoms and tops it takes,
its learnable blobs in Caffe order, and implements its shape rule, its cost and its PyTorch builder.
"""
from __future__ import annotations

import math
from typing import ClassVar

from ..errors import ShapeError  # noqa: F401  (layers raise it from their shape rules)

LAYERS: dict = {}


def register(cls):
    """Class decorator: files a layer class under its Caffe type name (the class name)."""
    name = cls.__name__
    if name in LAYERS:
        raise RuntimeError(f"layer type {name} registered twice")
    LAYERS[name] = cls
    return cls


def numel(shape) -> int:
    return math.prod(shape)


class Layer:
    """Base of every layer type. Subclasses override the class attributes and the methods they need."""

    blocks: ClassVar[dict] = {}  # Caffe parameter key (e.g. "convolution_param") -> {field: Field}
    bottoms: ClassVar[tuple] = (1, 1)  # (min, max); max None = any number
    tops: ClassVar[tuple] = (1, 1)
    blobs: ClassVar[tuple] = ()  # Caffe blob order, e.g. ("weight", "bias"); `param:` entries map to these
    is_loss: ClassVar[bool] = False  # top[0] carries loss_weight 1 unless told otherwise
    is_source: ClassVar[bool] = False  # produces net inputs (data, Input): not part of the compiled module
    kind: ClassVar[str] = "other"  # drawing family: data, conv, pool, ip, neuron, norm, loss, other
    summary: ClassVar[str] = ""  # one line for the README's layer table

    def __init__(self, spec):
        self.spec = spec
        self.params = spec.params
        self.name = spec.name

    @property
    def p(self) -> dict:
        """The first (main) parameter block."""
        return self.params[next(iter(self.blocks))] if self.blocks else {}

    # ---- validation before shapes ----
    def check(self):
        """Cross-field rules; yields (path inside the layer, message, expected, found)."""
        return ()

    def learnable_blobs(self, shapes=None) -> tuple:
        """Names of the blobs that are trainable parameters (a subset of `blobs`)."""
        return self.blobs

    # ---- inference ----
    def infer(self, shapes: list) -> list:
        """Output shapes (with batch) from input shapes. Default: shape-preserving, one top per bottom."""
        return [tuple(s) for s in shapes]

    def param_shapes(self, shapes: list) -> dict:
        """Learnable (and stored) blob name -> shape, in Caffe blob order."""
        return {}

    def param_count(self, blob: str, shape: tuple) -> int:
        """Learnable values in one blob (less than its size when part of it is fixed, e.g. masked)."""
        return numel(shape)

    def macs(self, shapes: list, outs: list) -> int:
        """Multiply-accumulates for the whole batch (the summary divides by the batch size)."""
        return 0

    def connections(self, shapes: list, outs: list) -> int:
        """LeCun's count for the whole batch: each output element's inputs, plus one for its bias."""
        bias = numel(outs[0]) if "bias" in self.param_shapes(shapes) else 0
        return self.macs(shapes, outs) + bias

    # ---- data sources (is_source layers) ----
    def reader(self, phase: str, seed: int, device):
        """A batch server for a source layer: an object with `next() -> [tensor per top]`,
        `state_dict()` and `load_state_dict(state)` (its position, so that a resumed run continues
        with exactly the batches it would have seen). Sources fed by the caller (Input) have none."""
        raise NotImplementedError(f"{type(self).__name__} layers are fed by the caller")

    # ---- building ----
    def build(self, shapes: list):
        """A torch.nn.Module whose forward takes the bottoms in order and returns the top(s)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be compiled")
