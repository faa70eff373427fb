"""Stage 6, build: compile a shape-checked graph to a CompiledNet, a torch.fx GraphModule that knows its net.

The generated forward takes the net's input blobs as keyword arguments and returns a dict of the net's
output blobs (plus every top that carries a loss weight). Submodules are named after layers, so the
parameters read `conv1.weight`, `conv1.bias` as in a Caffe model. `print(net.code)` shows the forward.
"""
from __future__ import annotations

import copy
import keyword
import operator
import re

import torch
import torch.fx as fx
import torch.nn as nn

from .front.graph import Graph
from .front.infer import NetInfo


def module_name(layer_name: str) -> str:
    """A layer name as a submodule name: dots would read as nesting, so they become underscores."""
    return layer_name.replace(".", "_")


def _identifier(name: str, used: set) -> str:
    base = re.sub(r"\W", "_", name)
    if not base or base[0].isdigit() or keyword.iskeyword(base):
        base = "b_" + base
    candidate, k = base, 1
    while candidate in used:
        k += 1
        candidate = f"{base}_{k}"
    used.add(candidate)
    return candidate


class CompiledNet(fx.GraphModule):
    """One phase of a net as a module, with what the solver, `netdef time` and export need to know of it:

    - `input_names`: input blob -> keyword argument of forward (blob names made identifiers);
    - `outputs`: the blobs forward returns, in order;
    - `loss_weights`: loss top -> weight (the net's loss is their weighted sum, `weighted_loss`);
    - `param_lr`: parameter qualified name -> (lr_mult, decay_mult), for parameters that train;
    - `phase`: TRAIN or TEST.

    torch.fx's GraphModule keeps only its own attributes through copy.deepcopy and rebuilds a plain
    GraphModule when unpickled; this class carries the attributes above through both, so a compiled net
    can be deep-copied, saved whole with torch.save, and wrapped by DistributedDataParallel.
    """
    NET_ATTRIBUTES = ("input_names", "outputs", "loss_weights", "param_lr", "phase")

    def _net_attributes(self) -> dict:
        return {name: getattr(self, name) for name in self.NET_ATTRIBUTES}

    def __deepcopy__(self, memo):
        copied = super().__deepcopy__(memo)
        for name, value in self._net_attributes().items():
            setattr(copied, name, copy.deepcopy(value, memo))
        return copied

    def __reduce__(self):
        return (_restore_compiled_net, (super().__reduce__(), self._net_attributes()))


def _restore_compiled_net(graph_module_reduce, attributes) -> CompiledNet:
    rebuild, arguments = graph_module_reduce
    plain = rebuild(*arguments)
    net = CompiledNet(plain, plain.graph, class_name=type(plain).__name__)
    for name, value in attributes.items():
        setattr(net, name, value)
    net.train(plain.training)
    return net


def compile_graph(graph: Graph, info: NetInfo, share_with: nn.Module | None = None) -> CompiledNet:
    """Build the PyTorch module of a graph. With `share_with` (another compiled net, e.g. the TRAIN net
    when compiling the TEST net), parameters and statistics of equally named layers are shared, as
    Caffe's test net shares the train net's blobs."""
    root = nn.Module()
    fx_graph = fx.Graph()
    env, used = {}, set()
    input_names = {}
    for blob in graph.inputs:
        input_names[blob] = _identifier(blob, used)
        env[blob] = fx_graph.placeholder(input_names[blob])
    owners = {}  # ParamSpec name -> Parameter
    lr = {}
    for spec in graph.layers:
        if not spec.impl.compiled():
            continue  # data layers: their tops are the forward's arguments
        row = info.row(spec.name)
        module = spec.impl.build(row.in_shapes)
        name = module_name(spec.name)
        root.add_module(name, module)
        _bind_params(spec, row.blobs, module, name, owners, lr)
        if share_with is not None and hasattr(share_with, name):
            _share(module, getattr(share_with, name))
        node = fx_graph.call_module(name, tuple(env[b] for b in spec.bottoms))
        if len(spec.tops) == 1:
            env[spec.tops[0]] = node
        else:
            for j, top in enumerate(spec.tops):
                env[top] = fx_graph.call_function(operator.getitem, (node, j))
    loss_weights = {top: w for spec in graph.layers for top, w in zip(spec.tops, spec.loss_weights) if w}
    outputs = list(dict.fromkeys(graph.outputs + list(loss_weights)))
    fx_graph.output({blob: env[blob] for blob in outputs if blob in env})
    net = CompiledNet(root, fx_graph, class_name=re.sub(r"\W", "_", graph.name) or "Net")
    net.input_names = input_names
    net.outputs = [blob for blob in outputs if blob in env]
    net.loss_weights = loss_weights
    net.param_lr = lr  # parameter qualified name -> (lr_mult, decay_mult)
    net.phase = graph.state.phase
    net.train(graph.state.phase == "TRAIN")
    return net


def _bind_params(spec, blobs, module, name, owners, lr):
    """Apply `param:` entries to the module's parameters, each by the `param:` index its BlobSpec names
    (as infer counts them): shared names reuse the first owner's tensor; lr_mult/decay_mult recorded."""
    for blob in blobs:
        tensor = getattr(module, blob.name, None)
        if not isinstance(tensor, nn.Parameter):
            continue  # stored, not learnt (BatchNorm's statistics are buffers)
        param_spec = spec.param_spec(blob.param_index)
        share = param_spec["name"]
        if share and share in owners:
            setattr(module, blob.name, owners[share])
            continue
        if share:
            owners[share] = tensor
        if param_spec["lr_mult"] == 0:
            tensor.requires_grad_(False)
        lr[f"{name}.{blob.name}"] = (param_spec["lr_mult"], param_spec["decay_mult"])


def _share(module: nn.Module, owner: nn.Module):
    if type(module) is not type(owner):
        return
    for sub_name, sub in module.named_modules():
        other = owner.get_submodule(sub_name) if sub_name else owner
        for key, value in list(sub._parameters.items()):
            mine = other._parameters.get(key)
            if value is not None and mine is not None and mine.shape == value.shape:
                sub._parameters[key] = mine
        for key, value in list(sub._buffers.items()):
            mine = other._buffers.get(key)
            if value is not None and mine is not None and mine.shape == value.shape:
                sub._buffers[key] = mine


def weighted_loss(outputs: dict, loss_weights: dict) -> torch.Tensor:
    """The net's loss: every loss top times its loss_weight, summed (Caffe's Net::ForwardBackward)."""
    total = None
    for blob, weight in loss_weights.items():
        term = outputs[blob].sum() * weight if weight != 1 else outputs[blob].sum()
        total = term if total is None else total + term
    return total
