"""The Python API: what the CLI calls, and what a notebook calls.

    import netdef
    info = netdef.summarize("nets/lenet.yaml", phase="TEST")
    net = netdef.load_net("nets/lenet.yaml", phase="TRAIN")
    outputs = net(data=images, label=labels)
"""
from __future__ import annotations

from .front.expand import ExpandedNet, expand
from .front.graph import Graph, NetState, build_graph
from .front.infer import NetInfo, infer
from .front.load import load_yaml


def expand_file(path) -> ExpandedNet:
    """Load, validate and expand a net file (blocks replaced by their layers)."""
    data, source = load_yaml(path)
    return expand(data, source)


def net_state(phase="TRAIN", level=0, stages=()) -> NetState:
    return NetState(phase.upper(), level, tuple(stages))


def load_graph(path, phase="TRAIN", level=0, stages=()) -> Graph:
    """The wired layer graph of one phase of a net file."""
    return build_graph(expand_file(path), net_state(phase, level, stages))


def summarize(path_or_graph, phase="TRAIN", level=0, stages=(), input_shapes=None) -> NetInfo:
    """Shapes, parameters, MACs and connections of every layer, without building anything.
    `input_shapes` ({blob: shape}) overrides the shapes the net's source layers declare."""
    graph = path_or_graph if isinstance(path_or_graph, Graph) else load_graph(path_or_graph, phase, level, stages)
    return infer(graph, input_shapes)


def compile_info(info: NetInfo, share_with=None):
    from .build import compile_graph
    return compile_graph(info.graph, info, share_with)


def load_net(path, phase="TRAIN", level=0, stages=(), share_with=None, input_shapes=None):
    """A torch.fx GraphModule for one phase of a net file; forward(**input_blobs) -> {blob: tensor}."""
    return compile_info(summarize(path, phase, level, stages, input_shapes), share_with)
