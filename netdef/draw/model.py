"""What a drawing shows: layer (or collapsed block) nodes, blob nodes and edges, before any layout.

As in Caffe's draw_net.py, layers are boxes colored by kind and blobs are octagons, wired bottom blob ->
layer -> top blob; what a layer's box says (its type text and key fields) its class declares
(netdef.layers.base). An in-place layer (a rectifier on `conv1`) is drawn in the chain it modifies: a blob's
octagon appears where a layer other than the next in-place one reads it, and after the last write, so
`conv1 -> relu1 -> (conv1) -> pool1` reads as the net computes. Phases: ALL merges TRAIN and TEST, a
layer written once is one node, and phase-only layers are marked.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..text import human, shape_text
from ..tools.summary import block_rows

PHASES = ("TRAIN", "TEST")


@dataclass
class Node:
    id: str
    kind: str  # a layer kind (data, conv, pool, ip, neuron, norm, loss, metric, other), "block" or "blob"
    title: str
    lines: list  # label lines under the title
    details: dict  # everything known, for the HTML page's panel
    clusters: tuple = ()  # ids of the expanded block instances around it, outermost first
    in_place: bool = False
    phases: set = field(default_factory=set)


@dataclass
class Cluster:
    id: str
    title: str
    parent: str | None


@dataclass
class Drawing:
    name: str
    nodes: dict = field(default_factory=dict)  # id -> Node, in first-seen order
    edges: list = field(default_factory=list)  # (from id, to id), unique
    clusters: dict = field(default_factory=dict)  # id -> Cluster

    def add_edge(self, source, target):
        if source != target and (source, target) not in self._edge_set:
            self._edge_set.add((source, target))
            self.edges.append((source, target))

    def __post_init__(self):
        self._edge_set = set()


def key_parameters(spec) -> str:
    """The fields that say what a layer does (kernel, stride, pad, num_output, ...), compactly, as its
    class declares them."""
    return spec.impl.key_parameters()


def count(n: int, noun: str) -> str:
    """`1 layer`, `2 layers`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cost_text(params, macs) -> str:
    return " · ".join(part for part in (f"{human(params)} params" if params else "",
                                        f"{human(macs)} MACs" if macs else "") if part)


def _counted(value):
    return "not counted" if value is None else value


def _layer_id(spec) -> str:
    return f"layer:{spec.name}@{spec.origin.pos()}"


def _cluster_id(instance, pos) -> str:
    return f"block:{instance}@{pos}"


def _layer_node(spec, row, clusters) -> Node:
    key = key_parameters(spec)
    lines = [spec.impl.type_text()] + ([key] if key else []) + \
        [" ".join(shape_text(s) for s in row.shapes), _cost_text(row.params, row.macs)]
    details = {"name": spec.name, "type": spec.type, "bottoms": ", ".join(spec.bottoms), "tops": ", ".join(spec.tops),
               "input shapes": ", ".join(shape_text(s) for s in row.in_shapes),
               "output shapes": ", ".join(shape_text(s) for s in row.shapes),
               "params": row.params, "trainable": row.trainable, "MACs per sample": _counted(row.macs),
               "connections per sample": _counted(row.connections), "activation bytes": row.memory,
               "blocks": " > ".join(instance for _, instance, _ in reversed(row.via)), "defined at": str(spec.origin.pos()),
               **{k: v for k, v in spec.raw.items() if k.endswith("_param") or k in ("param", "loss_weight")}}
    details = {k: v for k, v in details.items() if v != ""}
    in_place = bool(set(spec.tops) & set(spec.bottoms))
    return Node(_layer_id(spec), spec.impl.kind, spec.name, [line for line in lines if line], details, clusters, in_place)


def _name_list(names, head=6, tail=2) -> str:
    """Names, shortened in the middle when there are many (a ResNet stage has hundreds of layers)."""
    if len(names) <= head + tail + 1:
        return ", ".join(names)
    return ", ".join(names[:head]) + f", ... ({len(names) - head - tail} more), " + ", ".join(names[-tail:])


def _block_node(row, node_id) -> Node:
    lines = [f"block {row['block']}", count(len(row['layers']), "layer"),
             " ".join(shape_text(s) for s in row["shapes"]), _cost_text(row["params"], row["macs"])]
    details = {"name": row["name"], "block": row["block"], "layers": _name_list(row["layers"]), "tops": ", ".join(row["tops"]),
               "output shapes": ", ".join(shape_text(s) for s in row["shapes"]), "params": row["params"], "trainable": row["trainable"],
               "MACs per sample": _counted(row["macs"]), "connections per sample": _counted(row["connections"]),
               "activation bytes": row["memory"]}
    return Node(node_id, "block", row["name"], [line for line in lines if line], details)


@dataclass
class _Version:
    """One value of a blob: written by one layer, read by later ones until the next in-place write."""
    blob: str
    shape: tuple
    writer: str  # display node id
    writer_layer: str  # layer node id (stable across collapsing and phases)
    writer_name: str
    readers: list = field(default_factory=list)  # display node ids
    reader_names: list = field(default_factory=list)
    next_writer: str | None = None


def add_phase(drawing: Drawing, info, collapse: bool):
    """Adds one phase's layers, blobs and edges to a drawing (nodes shared by phases merge by id)."""
    phase = info.graph.state.phase
    instances = {(row["name"], row["depth"]): row for row in block_rows(info)}
    display = {}  # layer name -> display node id
    cluster_paths = {}  # display node id -> cluster ids
    for spec in info.graph.layers:
        row = info.row(spec.name)
        chain = list(reversed(row.via))  # outermost first
        if collapse and chain:
            _, instance, pos = chain[0]
            node_id = _cluster_id(instance, pos)
            if node_id not in drawing.nodes:
                drawing.nodes[node_id] = _block_node(instances[(instance, 0)], node_id)
        else:
            node_id = _layer_id(spec)
            clusters = tuple(_cluster_id(instance, pos) for _, instance, pos in chain)
            for depth, (block, instance, pos) in enumerate(chain):
                drawing.clusters.setdefault(clusters[depth], Cluster(clusters[depth], f"{instance} ({block})",
                                                                     clusters[depth - 1] if depth else None))
            drawing.nodes.setdefault(node_id, _layer_node(spec, row, clusters))
        drawing.nodes[node_id].phases.add(phase)
        display[spec.name] = node_id
        cluster_paths[node_id] = drawing.nodes[node_id].clusters
    versions, current = [], {}
    for spec in info.graph.layers:
        node_id = display[spec.name]
        for blob in spec.bottoms:
            current[blob].readers.append(node_id)
            current[blob].reader_names.append(spec.name)
        for top in spec.tops:
            version = _Version(top, info.blob_shapes[top], node_id, _layer_id(spec), spec.name)
            if top in current:
                current[top].next_writer = node_id
            current[top] = version
            versions.append(version)
    for version in versions:
        _wire_version(drawing, version, cluster_paths, phase)


def _common_prefix(paths) -> tuple:
    paths = list(paths)
    prefix = paths[0]
    for path in paths[1:]:
        n = 0
        while n < min(len(prefix), len(path)) and prefix[n] == path[n]:
            n += 1
        prefix = prefix[:n]
    return tuple(prefix)


def _wire_version(drawing: Drawing, version: _Version, cluster_paths: dict, phase: str):
    outside = [r for r in dict.fromkeys(version.readers) if r != version.writer]
    others = [r for r in outside if r != version.next_writer]
    is_output = version.next_writer is None and not version.readers
    if not others and not is_output:
        if version.next_writer is not None:
            drawing.add_edge(version.writer, version.next_writer)
        return
    blob_id = f"blob:{version.blob}@{version.writer_layer}"
    if blob_id not in drawing.nodes:
        members = [version.writer] + outside
        drawing.nodes[blob_id] = Node(
            blob_id, "blob", version.blob, [shape_text(version.shape)],
            {"blob": version.blob, "shape": shape_text(version.shape), "written by": version.writer_name,
             "read by": ", ".join(dict.fromkeys(version.reader_names))},
            _common_prefix(cluster_paths[m] for m in members))
    drawing.nodes[blob_id].phases.add(phase)
    drawing.add_edge(version.writer, blob_id)
    for reader in outside:
        drawing.add_edge(blob_id, reader)


def mark_phases(drawing: Drawing, phases):
    """With both phases drawn, a layer of one phase only says so."""
    if len(phases) < 2:
        return
    for node in drawing.nodes.values():
        if node.kind != "blob" and len(node.phases) == 1:
            node.lines[0] += f" ({next(iter(node.phases))} only)"
        node.details["phases"] = ", ".join(sorted(node.phases))
