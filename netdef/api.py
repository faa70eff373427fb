"""The Python API: what the CLI calls, and what a notebook calls.

    import netdef
    net = netdef.read_net("nets/lenet.yaml")        # read, validated and expanded once
    info = net.info("TEST")                          # shapes, parameters, MACs of one phase
    model = net.compile("TRAIN")                     # a CompiledNet: model(data=images, label=labels)
    netdef.api.set_input_arrays("data", images, labels)  # what a memory-fed data layer named "data" serves

Each stage takes the previous one's value: load -> validate -> expand (ExpandedNet) -> graph (Graph, one
per net state) -> infer (NetInfo) -> build (CompiledNet). `Net` holds one file's expansion and derives
every state's graph and info from it, so a command reads and expands each file exactly once. The
path-taking functions below are conveniences over it.
"""
from __future__ import annotations

from pathlib import Path

from .data.memory import set_input_arrays  # noqa: F401  (part of the API: pycaffe's net.set_input_arrays)
from .front.expand import ExpandedNet, dump_net, expand
from .front.graph import Graph, NetState, build_graph
from .front.infer import NetInfo, infer
from .front.load import load_yaml


def net_state(phase="TRAIN", level=0, stages=()) -> NetState:
    return NetState(phase.upper(), level, tuple(stages))


class Net:
    """One net file, expanded once; the graph and shape info of each net state are computed on demand
    and kept (they are immutable values of the file)."""

    def __init__(self, expanded: ExpandedNet, path=None):
        self.expanded = expanded
        self.path = Path(path) if path is not None else None
        self._graphs: dict = {}
        self._infos: dict = {}

    @classmethod
    def from_yaml(cls, data, source) -> Net:
        """From a loaded YAML document (netdef.front.load.load_yaml's value)."""
        return cls(expand(data, source), source.file)

    @property
    def name(self) -> str:
        return self.expanded.name

    def graph(self, phase="TRAIN", level=0, stages=()) -> Graph:
        state = net_state(phase, level, stages)
        if state not in self._graphs:
            self._graphs[state] = build_graph(self.expanded, state)
        return self._graphs[state]

    def info(self, phase="TRAIN", level=0, stages=(), input_shapes=None) -> NetInfo:
        """Shapes, parameters, MACs and connections of every layer; `input_shapes` ({blob: shape})
        overrides the shapes the net's source layers declare (not kept: it is a what-if)."""
        graph = self.graph(phase, level, stages)
        if input_shapes:
            return infer(graph, input_shapes)
        if graph.state not in self._infos:
            self._infos[graph.state] = infer(graph)
        return self._infos[graph.state]

    def compile(self, phase="TRAIN", level=0, stages=(), share_with=None, input_shapes=None):
        """A CompiledNet of one state: forward(**input_blobs) -> {blob: tensor}."""
        return compile_info(self.info(phase, level, stages, input_shapes), share_with)

    def yaml(self) -> str:
        """The net with its blocks expanded, as YAML: a flat net that is valid netdef input again."""
        return dump_net(self.expanded)


def read_net(path) -> Net:
    """Load, validate and expand a net file."""
    return Net.from_yaml(*load_yaml(path))


def expand_file(path) -> ExpandedNet:
    """Load, validate and expand a net file (blocks replaced by their layers)."""
    return read_net(path).expanded


def load_graph(path, phase="TRAIN", level=0, stages=()) -> Graph:
    """The wired layer graph of one phase of a net file."""
    return read_net(path).graph(phase, level, stages)


def summarize(net, phase="TRAIN", level=0, stages=(), input_shapes=None) -> NetInfo:
    """Shapes, parameters, MACs and connections of every layer, without building anything. `net` is a
    path, a Net or a Graph; `input_shapes` ({blob: shape}) overrides the shapes the source layers declare."""
    if isinstance(net, Graph):
        return infer(net, input_shapes)
    net = net if isinstance(net, Net) else read_net(net)
    return net.info(phase, level, stages, input_shapes)


def compile_info(info: NetInfo, share_with=None):
    """Build the CompiledNet of a NetInfo (imports torch)."""
    from .build import compile_graph
    return compile_graph(info.graph, info, share_with)


def load_net(path, phase="TRAIN", level=0, stages=(), share_with=None, input_shapes=None):
    """A CompiledNet for one phase of a net file; forward(**input_blobs) -> {blob: tensor}."""
    return read_net(path).compile(phase, level, stages, share_with, input_shapes)
