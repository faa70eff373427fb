"""Stage 5, infer: every blob's shape, every layer's parameters, MACs, connections and memory, before
any tensor exists.

Conventions (stated once): shapes include the batch axis; MACs are multiply-accumulates per sample (one
fused multiply-add is one MAC; additions, comparisons and nonlinearities count 0; a layer whose cost
netdef does not model, as LRN or BatchNorm, has None: not counted, and totals add the counted layers);
connections are counted as LeCun et al. (1998) count them: for each output element, its inputs plus one
for its bias; memory is the float32 bytes of a layer's new tops for the whole batch (in-place tops add
nothing). Layers give whole-batch costs; a layer's per-sample figures are those divided by its batch,
the first axis of its first bottom (netdef.layers.base states the contract).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import NetdefError, Problem, ShapeError
from .graph import Graph
from .limits import MAX_ELEMENTS
from ..layers.base import DATA, numel

BYTES_PER_ELEMENT = 4


@dataclass
class LayerInfo:
    name: str
    type: str
    bottoms: list
    tops: list
    in_shapes: list
    shapes: list  # one per top
    blobs: list  # BlobSpec of every stored blob (learnable or not), as the layer declares them
    params: int  # learnable parameter count (shared blobs counted by their owner only)
    trainable: int  # params whose lr_mult is not 0
    macs: int | None  # per sample; None: not counted
    connections: int | None  # per sample; None: not counted
    memory: int  # bytes for the whole batch
    via: tuple = ()  # block instances this layer came from, innermost first
    batch: int = 1  # what the per-sample figures were divided by: the first axis of the first bottom

    @property
    def param_shapes(self) -> dict:
        """Blob name -> shape (learnable and stored)."""
        return {blob.name: blob.shape for blob in self.blobs}


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
        """MACs per sample of the layers that count them."""
        return sum(row.macs for row in self.layers if row.macs is not None)

    @property
    def total_connections(self) -> int:
        return sum(row.connections for row in self.layers if row.connections is not None)

    @property
    def total_memory(self) -> int:
        return sum(row.memory for row in self.layers)

    def row(self, name) -> LayerInfo:
        return next(r for r in self.layers if r.name == name)


def _count_text(count) -> str:
    """A huge count briefly: 1.92e+46, or about 10^400 for an integer past what a float holds."""
    if isinstance(count, int) and count.bit_length() > 1000:
        return f"about 10^{int(math.log10(count))}"
    return f"{count:.3g}"


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
            if spec.impl.role == DATA:
                outs = [tuple(input_shapes.get(top, out)) for top, out in zip(spec.tops, outs)]
            blobs = list(spec.impl.blob_specs(in_shapes))
        except ShapeError as exc:
            # A shape rule that names no field is about the inputs: point at the bottoms.
            problems.append(spec.problem(exc.message, exc.path or ("bottom",), expected=exc.expected,
                                         found=exc.found))
            continue
        empty = [(top, shape) for top, shape in zip(spec.tops, outs) if any(d <= 0 for d in shape)]
        for top, shape in empty:
            source = f"the input {list(in_shapes[0])}" if in_shapes else "the input"
            problems.append(spec.problem(f"output '{top}' would be empty", spec.impl.output_size_field(),
                                         expected="positive sizes",
                                         found=f"shape {list(shape)}",
                                         hint=f"{source} is too small for this kernel/stride"))
        if empty:
            continue  # later layers would only repeat the problem
        huge = [(f"output '{top}'", numel(shape)) for top, shape in zip(spec.tops, outs)] + \
            [(f"blob '{blob.name}'", blob.count) for blob in blobs]
        huge = [(what, count) for what, count in huge if count > MAX_ELEMENTS]
        for what, count in huge:
            problems.append(spec.problem(f"{what} would have {_count_text(count)} elements, more than an int64 can "
                                         "count", spec.impl.output_size_field(), expected=f"at most {MAX_ELEMENTS:,}",
                                         found=_count_text(count)))
        if huge:
            continue
        params = trainable = 0
        for blob in blobs:
            param = spec.param_spec(blob.param_index)
            share = param["name"]
            if share:
                if share in shared:
                    owner, owner_shape = shared[share]
                    if (blob.shape != owner_shape if param["share_mode"] == "STRICT" else numel(blob.shape) != numel(owner_shape)):
                        problems.append(spec.problem(
                            f"shared parameter '{share}' does not fit this layer's {blob.name}", ("param", blob.param_index),
                            expected=f"shape {list(owner_shape)} (as in layer '{owner}')", found=f"shape {list(blob.shape)}"))
                    continue  # counted by its owner
                shared[share] = (spec.name, blob.shape)
            if blob.learnable:
                params += blob.count
                if param["lr_mult"] != 0:
                    trainable += blob.count
        batch = max(in_shapes[0][0], 1) if in_shapes and in_shapes[0] else 1
        macs, connections = spec.impl.macs(in_shapes, outs), spec.impl.connections(in_shapes, outs)
        in_place = set(spec.tops) & set(spec.bottoms)
        info.layers.append(LayerInfo(
            spec.name, spec.type, spec.bottoms, spec.tops, in_shapes, outs, blobs, params, trainable,
            None if macs is None else macs // batch, None if connections is None else connections // batch,
            sum(numel(s) for t, s in zip(spec.tops, outs) if t not in in_place) * BYTES_PER_ELEMENT,
            spec.origin.via, batch))
        shapes.update(zip(spec.tops, outs))
    if problems:
        raise NetdefError(problems)
    return info
