"""`netdef time`: Caffe's benchmark. Runs a compiled net layer by layer, forward then backward, timing
each layer (with torch.cuda.synchronize around every timing on a GPU), as `caffe time` does.

Each layer runs on detached copies of its inputs, so that its backward is one `torch.autograd.backward`
call on its own outputs: the time measured is that layer's backward alone (input and parameter
gradients), and its input gradients are handed on to the layers that produced them. Source layers
(Data, Input, DummyData) are not run: their tops are random tensors of the inferred shapes, and labels
are valid class indices for the layer that reads them.
"""
from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field

import torch

from ..build import module_name
from ..front.infer import NetInfo

FLOPS_PER_MAC = 2
# Layers that read class labels: bottom index of the labels, parameter block with the class axis.
LABEL_READERS = {"SoftmaxWithLoss": (1, "softmax_param"), "Accuracy": (1, "accuracy_param")}


def random_inputs(info: NetInfo, device, seed: int = 0) -> dict:
    """A tensor for every net input: class indices where a loss or accuracy reads it as labels, else
    standard normal values."""
    generator = torch.Generator().manual_seed(seed)
    classes = {}
    for spec in info.graph.layers:
        if spec.type in LABEL_READERS:
            index, block = LABEL_READERS[spec.type]
            scores = info.blob_shapes[spec.bottoms[0]]
            axis = spec.params[block]["axis"] % len(scores)
            classes[spec.bottoms[index]] = scores[axis]
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
    flops: int  # forward FLOPs for the whole batch (2 per MAC)
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
        names = {module_name(spec.name): spec for spec in info.graph.layers}
        self.layers = {}
        for node in net.graph.nodes:
            if node.op == "call_module":
                spec = names[node.target]
                row = info.row(spec.name)
                batch = row.shapes[0][0] if row.shapes and row.shapes[0] else 1
                self.layers[node] = LayerTime(spec.name, spec.type, FLOPS_PER_MAC * row.macs * batch)
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
