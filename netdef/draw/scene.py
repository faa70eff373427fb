"""A laid-out drawing as a few primitives (boxes, octagons, curves, arrowheads, text) that the SVG and
the matplotlib (PNG, PDF) writers both render, so that every format shows the same picture."""
from __future__ import annotations

from dataclasses import dataclass, field

from .layout import layered_layout

FONT = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"
TITLE_SIZE = 12.0
LINE_SIZE = 10.5
LINE_GAP = 3.0
PAD_X, PAD_Y = 9.0, 6.0
CHAR_WIDTH = 0.62  # of the font size: DejaVu Sans' mean advance over digits and lower case
BOLD_CHAR_WIDTH = 0.69
ARROW = 7.0
CLUSTER_PAD = 9.0
CLUSTER_LABEL = 14.0
LABEL_HALO = 3.0  # white outline under block-frame labels, which are drawn over everything else
EDGE_COLOR = "#5a5a5a"
TEXT_COLOR = "#1a1a1a"
# Fill per layer kind; Caffe's draw_net hues (conv red, pooling orange, inner product purple, neurons
# green), lightened so that the labels stay readable.
COLORS = {"data": "#9fd3f0", "conv": "#ff8f87", "pool": "#ffc069", "ip": "#d7a1f9", "neuron": "#a8e6a3",
          "norm": "#fff09a", "loss": "#b4bfd0", "metric": "#8fd9cf", "other": "#a9c0f2", "block": "#f4f4f4",
          "blob": "#e0e0e0"}
STROKES = {"block": "#444444", "blob": "#9a9a9a"}
CLUSTER_FILL, CLUSTER_STROKE = "#f6f8fc", "#8fa2c4"
DIRECTIONS = {"TB": (0, 1), "BT": (0, -1), "LR": (1, 0), "RL": (-1, 0)}


def text_width(text: str, size: float, bold=False) -> float:
    return len(text) * size * (BOLD_CHAR_WIDTH if bold else CHAR_WIDTH)


@dataclass
class Shape:
    kind: str  # "box", "octagon" or "cluster"
    x: float  # left
    y: float  # top
    w: float
    h: float
    fill: str
    stroke: str
    dashed: bool = False
    bold: bool = False


@dataclass
class Text:
    x: float  # anchor point (middle, or start for cluster titles)
    y: float  # baseline
    text: str
    size: float
    bold: bool = False
    anchor: str = "middle"


@dataclass
class Curve:
    start: tuple
    segments: list  # [(control1, control2, end)], cubic Bezier
    arrow: list  # the arrowhead triangle


@dataclass
class Group:
    """One node's shapes and text (the HTML page's unit of hover and click)."""
    id: str
    shape: Shape
    texts: list


@dataclass
class Scene:
    width: float
    height: float
    title: str
    clusters: list = field(default_factory=list)  # (Shape, Text), outermost first; labels drawn last
    curves: list = field(default_factory=list)
    groups: list = field(default_factory=list)


def node_size(node) -> tuple:
    width = max([text_width(node.title, TITLE_SIZE, True)] + [text_width(t, LINE_SIZE) for t in node.lines])
    height = TITLE_SIZE + len(node.lines) * (LINE_SIZE + LINE_GAP)
    extra = 2 * PAD_X + (14 if node.kind == "blob" else 0)  # octagon corners need room
    return width + extra, height + 2 * PAD_Y


def _node_group(node, center, size) -> Group:
    (cx, cy), (w, h) = center, size
    shape = Shape("octagon" if node.kind == "blob" else "box", cx - w / 2, cy - h / 2, w, h,
                  COLORS.get(node.kind, COLORS["other"]), STROKES.get(node.kind, "#555555"),
                  dashed=node.in_place, bold=node.kind == "block")
    y = cy - h / 2 + PAD_Y + TITLE_SIZE * 0.85
    texts = [Text(cx, y, node.title, TITLE_SIZE, bold=True)]
    for line in node.lines:
        y += LINE_SIZE + LINE_GAP
        texts.append(Text(cx, y, line, LINE_SIZE))
    return Group(node.id, shape, texts)


def _curve(points, rankdir) -> Curve:
    dx, dy = DIRECTIONS[rankdir]
    *rest, end = points
    base = (end[0] - dx * ARROW, end[1] - dy * ARROW)
    points = rest + [base]
    segments = []
    for p, q in zip(points, points[1:]):
        if dx:
            mid = (p[0] + q[0]) / 2
            segments.append(((mid, p[1]), (mid, q[1]), q))
        else:
            mid = (p[1] + q[1]) / 2
            segments.append(((p[0], mid), (q[0], mid), q))
    half = ARROW / 2
    arrow = [end, (base[0] + dy * half, base[1] + dx * half), (base[0] - dy * half, base[1] - dx * half)]
    return Curve(points[0], segments, arrow)


def _cluster_boxes(drawing, boxes) -> list:
    """A box around every expanded block instance: its nodes and its inner instances, padded."""
    members = {cid: [] for cid in drawing.clusters}
    for node in drawing.nodes.values():
        if node.clusters:
            members[node.clusters[-1]].append(boxes[node.id])
    depth = {}
    for cid, cluster in drawing.clusters.items():
        d, parent = 0, cluster.parent
        while parent:
            d, parent = d + 1, drawing.clusters[parent].parent
        depth[cid] = d
    found = {}
    for cid in sorted(drawing.clusters, key=lambda c: -depth[c]):
        inner = members[cid]
        if not inner:
            continue
        left, top = min(b[0] for b in inner) - CLUSTER_PAD, min(b[1] for b in inner) - CLUSTER_PAD - CLUSTER_LABEL
        right, bottom = max(b[2] for b in inner) + CLUSTER_PAD, max(b[3] for b in inner) + CLUSTER_PAD
        found[cid] = (left, top, right, bottom)
        parent = drawing.clusters[cid].parent
        if parent:
            members[parent].append(found[cid])
    result = []
    for cid in sorted(found, key=lambda c: depth[c]):
        left, top, right, bottom = found[cid]
        shape = Shape("cluster", left, top, right - left, bottom - top, CLUSTER_FILL, CLUSTER_STROKE)
        result.append((shape, Text(left + 6, top + CLUSTER_LABEL - 3, drawing.clusters[cid].title, LINE_SIZE,
                                   anchor="start")))
    return result


def build_scene(drawing, rankdir="TB") -> Scene:
    sizes = {node_id: node_size(node) for node_id, node in drawing.nodes.items()}
    layout = layered_layout(sizes, drawing.edges, rankdir)
    scene = Scene(layout.width, layout.height, drawing.name)
    boxes = {}
    for node_id, node in drawing.nodes.items():
        group = _node_group(node, layout.centers[node_id], sizes[node_id])
        s = group.shape
        boxes[node_id] = (s.x, s.y, s.x + s.w, s.y + s.h)
        scene.groups.append(group)
    scene.clusters = _cluster_boxes(drawing, boxes)
    scene.curves = [_curve(layout.routes[edge], rankdir) for edge in drawing.edges]
    if scene.clusters:  # cluster padding may reach past the layout's margin
        left = min(0.0, min(s.x for s, _ in scene.clusters) - 4)
        top = min(0.0, min(s.y for s, _ in scene.clusters) - 4)
        right = max(s.x + s.w for s, _ in scene.clusters) + 4
        bottom = max(s.y + s.h for s, _ in scene.clusters) + 4
        _shift(scene, -left, -top)
        scene.width = max(scene.width, right) - left
        scene.height = max(scene.height, bottom) - top
    return scene


def _shift(scene, dx, dy):
    if not dx and not dy:
        return

    def moved(p):
        return (p[0] + dx, p[1] + dy)
    for shape, text in scene.clusters:
        shape.x, shape.y, text.x, text.y = shape.x + dx, shape.y + dy, text.x + dx, text.y + dy
    for group in scene.groups:
        group.shape.x, group.shape.y = group.shape.x + dx, group.shape.y + dy
        for text in group.texts:
            text.x, text.y = text.x + dx, text.y + dy
    for curve in scene.curves:
        curve.start = moved(curve.start)
        curve.segments = [tuple(moved(p) for p in segment) for segment in curve.segments]
        curve.arrow = [moved(p) for p in curve.arrow]


def octagon_points(shape: Shape) -> list:
    cut = min(shape.h / 3.2, 9.0)
    x0, y0, x1, y1 = shape.x, shape.y, shape.x + shape.w, shape.y + shape.h
    return [(x0 + cut, y0), (x1 - cut, y0), (x1, y0 + cut), (x1, y1 - cut), (x1 - cut, y1), (x0 + cut, y1),
            (x0, y1 - cut), (x0, y0 + cut)]
