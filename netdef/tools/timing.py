"""`netdef time`: Caffe's benchmark. Runs a compiled net layer by layer, forward then backward, timing
each layer (with torch.cuda.synchronize around every timing on a GPU), as `caffe time` does.

The forward is a torch.fx.Interpreter over the compiled net's graph that times every layer (call_module
node) and runs it on detached copies of its inputs, so that its backward is one `torch.autograd.backward`
call on its own outputs: the time measured is that layer's backward alone (input and parameter
gradients), and its input gradients are handed on to the layers that produced them. Data layers are not
run: their tops are random tensors of the inferred shapes, and the tops a layer reads as class labels
(Layer.label_classes) are valid class indices.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from ..build import module_name
from ..front.infer import NetInfo

FLOPS_PER_MAC = 2


def label_classes(info: NetInfo) -> dict:
    """Blob -> number of classes, for every blob a layer reads as class labels (the fewest classes when
    several layers read it)."""
    classes = {}
    for spec, row in zip(info.graph.layers, info.layers):
        for index, count in spec.impl.label_classes(row.in_shapes).items():
            blob = spec.bottoms[index]
            classes[blob] = min(count, classes.get(blob, count))
    return classes


def random_inputs(info: NetInfo, device, seed: int = 0) -> dict:
    """A tensor for every net input: class indices where a layer reads it as labels, else standard
    normal values."""
    generator = torch.Generator().manual_seed(seed)
    classes = label_classes(info)
    inputs = {}
    for blob in info.graph.inputs:
        shape = info.blob_shapes[blob]
        tensor = (torch.randint(classes[blob], shape, generator=generator) if blob in classes
                  else torch.randn(shape, generator=generator))
        inputs[blob] = tensor.to(device)
    return inputs


@dataclass
class LayerTime:
    name: str
    type: str
    flops: int | None  # forward FLOPs for the whole batch (2 per MAC); None: MACs not counted
    forward: list = field(default_factory=list)  # seconds, one per iteration
    backward: list = field(default_factory=list)


@dataclass
class _Call:
    """One layer's forward in an iteration: what its backward needs."""
    node: object
    inputs: list  # detached inputs (None where the argument needs no gradient)
    outputs: tuple


class _LayerByLayer(fx.Interpreter):
    """Runs the compiled net's graph, timing each layer's forward on detached copies of its inputs and
    keeping, per layer, what its own backward needs."""

    def __init__(self, bench: Benchmark):
        super().__init__(bench.net)
        self.bench, self.record, self.calls, self.node = bench, False, [], None

    def run_node(self, node):
        self.node = node
        return super().run_node(node)

    def call_module(self, target, args, kwargs):
        detached = [a.detach().requires_grad_() if isinstance(a, torch.Tensor) and a.requires_grad else None
                    for a in args]
        args = tuple(d if d is not None else a for d, a in zip(detached, args))
        start = self.bench.clock()
        out = super().call_module(target, args, kwargs)
        if self.record:
            self.bench.layers[self.node].forward.append(self.bench.clock() - start)
        self.calls.append(_Call(self.node, detached, out if isinstance(out, tuple) else (out,)))
        return out


class Benchmark:
    """Times a compiled net (netdef.load_net) on random inputs, layer by layer."""

    def __init__(self, net, info: NetInfo, device="cpu", seed=0):
        self.net, self.info, self.device = net.to(device), info, torch.device(device)
        self.inputs = random_inputs(info, self.device, seed)
        rows = {module_name(row.name): row for row in info.layers}
        self.layers = {}
        for node in net.graph.nodes:
            if node.op == "call_module":
                row = rows[node.target]
                flops = None if row.macs is None else FLOPS_PER_MAC * row.macs * row.batch
                self.layers[node] = LayerTime(row.name, row.type, flops)
        blobs = {name: blob for blob, name in net.input_names.items()}
        self.arguments = [self.inputs[blobs[node.target]] for node in net.graph.nodes if node.op == "placeholder"]
        self.interpreter = _LayerByLayer(self)
        self.forward_times, self.backward_times = [], []

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def clock(self) -> float:
        self._sync()
        return time.perf_counter()

    def forward(self, record: bool):
        """Runs every layer in order; returns (outputs by blob, calls in order, loss gradients by blob)."""
        self.interpreter.record, self.interpreter.calls = record, []
        outputs = self.interpreter.run(*self.arguments)
        loss_grads = {blob: torch.full_like(outputs[blob], weight) for blob, weight in self.net.loss_weights.items()
                      if outputs[blob].requires_grad}
        return outputs, self.interpreter.calls, loss_grads

    def backward(self, outputs, calls, loss_grads, record: bool):
        """Each layer's backward in reverse order, fed by the gradients its consumers produced."""
        output_node = next(n for n in self.net.graph.nodes if n.op == "output")
        grads = {}  # (call_module node, output index) -> gradient

        def add(node, grad):
            key = (node.args[0], node.args[1]) if node.op == "call_function" else (node, 0)
            grads[key] = grad if key not in grads else grads[key] + grad
        for blob, grad in loss_grads.items():
            add(output_node.args[0][blob], grad)
        for call in reversed(calls):
            pairs = [(out, grads.pop((call.node, i))) for i, out in enumerate(call.outputs)
                     if (call.node, i) in grads and out.requires_grad]
            if not pairs:
                if record:
                    self.layers[call.node].backward.append(0.0)
                continue  # nothing downstream needs this layer's gradient, as Caffe skips it
            start = self.clock()
            torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
            if record:
                self.layers[call.node].backward.append(self.clock() - start)
            for arg, leaf in zip(call.node.args, call.inputs):
                if leaf is not None and leaf.grad is not None and arg.op != "placeholder":
                    add(arg, leaf.grad)

    def iteration(self, record=True) -> float | None:
        """One forward and backward; returns the loss (None without one)."""
        for parameter in self.net.parameters():
            parameter.grad = None
        start = self.clock()
        outputs, calls, loss_grads = self.forward(record)
        middle = self.clock()
        self.backward(outputs, calls, loss_grads, record)
        end = self.clock()
        if record:
            self.forward_times.append(middle - start)
            self.backward_times.append(end - middle)
        losses = [float((outputs[b].detach() * w).sum()) for b, w in self.net.loss_weights.items()]
        return sum(losses) if losses else None
