"""`netdef time`: Caffe's benchmark. Runs a compiled net layer by layer, forward then backward, timing
each layer (with torch.cuda.synchronize around every timing on a GPU), as `caffe time` does.

Each layer runs on detached copies of its inputs, so that its backward is one `torch.autograd.backward`
call on its own outputs: the time measured is that layer's backward alone (input and parameter
gradients), and its input gradients are handed on to the layers that produced them. Data layers are not
run: their tops are random tensors of the inferred shapes, and the tops a layer reads as class labels
(Layer.label_classes) are valid class indices.
"""
from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field

import torch

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
        self.forward_times, self.backward_times = [], []

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _clock(self) -> float:
        self._sync()
        return time.perf_counter()

    def forward(self, record: bool):
        """Runs every layer in order; returns (values by node, calls in order, loss or None)."""
        values, calls = {}, []
        for node in self.net.graph.nodes:
            if node.op == "placeholder":
                values[node] = self.inputs[next(b for b, n in self.net.input_names.items() if n == node.target)]
            elif node.op == "call_function" and node.target is operator.getitem:
                values[node] = values[node.args[0]][node.args[1]]
            elif node.op == "call_module":
                args = [values[a] for a in node.args]
                detached = [a.detach().requires_grad_() if a.requires_grad else None for a in args]
                start = self._clock()
                out = self.net.get_submodule(node.target)(*[d if d is not None else a for d, a in zip(detached, args)])
                if record:
                    self.layers[node].forward.append(self._clock() - start)
                values[node] = out
                calls.append(_Call(node, detached, out if isinstance(out, tuple) else (out,)))
            elif node.op == "output":
                outputs = {blob: values[n] for blob, n in node.args[0].items()}
        loss_grads = {blob: torch.full_like(outputs[blob], weight) for blob, weight in self.net.loss_weights.items()
                      if outputs[blob].requires_grad}
        return outputs, calls, loss_grads

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
            start = self._clock()
            torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
            if record:
                self.layers[call.node].backward.append(self._clock() - start)
            for arg, leaf in zip(call.node.args, call.inputs):
                if leaf is not None and leaf.grad is not None and arg.op != "placeholder":
                    add(arg, leaf.grad)

    def iteration(self, record=True) -> float | None:
        """One forward and backward; returns the loss (None without one)."""
        for parameter in self.net.parameters():
            parameter.grad = None
        start = self._clock()
        outputs, calls, loss_grads = self.forward(record)
        middle = self._clock()
        self.backward(outputs, calls, loss_grads, record)
        end = self._clock()
        if record:
            self.forward_times.append(middle - start)
            self.backward_times.append(end - middle)
        losses = [float((outputs[b].detach() * w).sum()) for b, w in self.net.loss_weights.items()]
        return sum(losses) if losses else None
