"""Stage 5, infer: every blob's shape, every layer's parameters, MACs, connections and memory, before
any tensor exists.

Conventions (stated once): shapes include the batch axis; MACs are multiply-accumulates per sample (one
fused multiply-add is one MAC; additions, comparisons and nonlinearities are not counted); connections
are counted as LeCun et al. (1998) count them: for each output element, its inputs plus one for its
bias; memory is the float32 bytes of a layer's new tops for the whole batch (in-place tops add nothing).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import NetdefError, Problem, ShapeError
from .graph import Graph
from ..layers.base import numel

BYTES_PER_ELEMENT = 4


@dataclass
class LayerInfo:
    name: str
    type: str
    bottoms: list
    tops: list
    in_shapes: list
    shapes: list  # one per top
    param_shapes: dict  # blob name -> shape (learnable and stored)
    params: int  # learnable parameter count (shared blobs counted by their owner only)
    trainable: int  # params whose lr_mult is not 0
    macs: int  # per sample
    connections: int  # per sample
    memory: int  # bytes for the whole batch
    via: tuple = ()  # block instances this layer came from, innermost first


@dataclass
class NetInfo:
    graph: Graph
    layers: list = field(default_factory=list)
    blob_shapes: dict = field(default_factory=dict)

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.layers)

    @property
    def trainable_params(self) -> int:
        return sum(row.trainable for row in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(row.macs for row in self.layers)

    @property
    def total_memory(self) -> int:
        return sum(row.memory for row in self.layers)

    def row(self, name) -> LayerInfo:
        return next(r for r in self.layers if r.name == name)


def infer(graph: Graph, input_shapes: dict | None = None) -> NetInfo:
    """Shape-propagate a graph; raises NetdefError listing every layer whose inputs do not fit.
    `input_shapes` (blob -> shape) replaces the shapes that source layers (Input, Data, ...) declare,
    e.g. to build a net at batch 1 or a smaller resolution."""
    input_shapes = dict(input_shapes or {})
    unknown = sorted(set(input_shapes) - set(graph.inputs))
    if unknown:
        raise NetdefError(Problem(f"input_shapes names '{unknown[0]}', which is not an input of the net",
                                  expected=", ".join(graph.inputs) or "no inputs", found=unknown[0]))
    info = NetInfo(graph)
    shapes = info.blob_shapes
    shared = {}  # ParamSpec name -> (owner layer, shape)
    problems = []
    for spec in graph.layers:
        if any(b not in shapes for b in spec.bottoms):
            continue  # an upstream layer already failed; do not cascade
        in_shapes = [shapes[b] for b in spec.bottoms]
        try:
            outs = [tuple(int(d) for d in s) for s in spec.impl.infer(in_shapes)]
            if spec.impl.is_source:
                outs = [tuple(input_shapes.get(top, out)) for top, out in zip(spec.tops, outs)]
            blobs = spec.impl.param_shapes(in_shapes)
        except ShapeError as exc:
            # A shape rule that names no field is about the inputs: point at the bottoms.
            problems.append(spec.problem(exc.message, exc.path or ("bottom",), expected=exc.expected,
                                         found=exc.found))
            continue
        empty = [(top, shape) for top, shape in zip(spec.tops, outs) if any(d <= 0 for d in shape)]
        for top, shape in empty:
            source = f"the input {list(in_shapes[0])}" if in_shapes else "the input"
            problems.append(spec.problem(f"output '{top}' would be empty", ("top",), expected="positive sizes",
                                         found=f"shape {list(shape)}",
                                         hint=f"{source} is too small for this kernel/stride"))
        if empty:
            continue  # later layers would only repeat the problem
        params = trainable = 0
        learnable = spec.impl.learnable_blobs(in_shapes)
        for index, (blob, shape) in enumerate(blobs.items()):
            share = spec.param_specs[index]["name"] if index < len(spec.param_specs) else None
            if share:
                if share in shared:
                    owner, owner_shape = shared[share]
                    mode = spec.param_specs[index]["share_mode"]
                    if (tuple(shape) != tuple(owner_shape) if mode == "STRICT" else numel(shape) != numel(owner_shape)):
                        problems.append(spec.problem(
                            f"shared parameter '{share}' does not fit this layer's {blob}", ("param", index),
                            expected=f"shape {list(owner_shape)} (as in layer '{owner}')", found=f"shape {list(shape)}"))
                    continue  # counted by its owner
                shared[share] = (spec.name, shape)
            if blob in learnable:
                count = spec.impl.param_count(blob, shape)
                params += count
                if spec.param_specs[index]["lr_mult"] != 0:
                    trainable += count
        batch = outs[0][0] if outs and outs[0] else 1
        in_place = set(spec.tops) & set(spec.bottoms)
        info.layers.append(LayerInfo(
            spec.name, spec.type, spec.bottoms, spec.tops, in_shapes, outs, blobs, params, trainable,
            spec.impl.macs(in_shapes, outs) // max(batch, 1), spec.impl.connections(in_shapes, outs) // max(batch, 1),
            sum(numel(s) for t, s in zip(spec.tops, outs) if t not in in_place) * BYTES_PER_ELEMENT,
            spec.origin.via))
        shapes.update(zip(spec.tops, outs))
    if problems:
        raise NetdefError(problems)
    return info
