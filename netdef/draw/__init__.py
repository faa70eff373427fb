"""Drawing nets (`netdef draw`): what Caffe's draw_net.py draws, plus shapes and costs on every node,
laid out in pure Python, written as SVG, a self-contained HTML page, DOT, PNG or PDF.

    from netdef.draw import draw_file
    draw_file("nets/lenet.yaml", "lenet.html", rankdir="TB", phase="ALL")
"""
from __future__ import annotations

from pathlib import Path

from ..errors import NetdefError, Problem
from ..text import human
from .model import PHASES, Drawing, add_phase, count, mark_phases

FORMATS = ("svg", "html", "dot", "png", "pdf")
RANKDIRS = ("TB", "LR", "BT", "RL")


def build_drawing(path, phase="ALL", collapse_blocks=False, level=0, stages=()) -> Drawing:
    """The nodes and edges of one phase of a net file (a path, or a netdef.Net read already), or of both
    merged (phase ALL)."""
    from ..api import Net, read_net
    net = path if isinstance(path, Net) else read_net(path)
    phases = PHASES if phase == "ALL" else (phase,)
    infos = [info for info in (net.info(p, level, stages) for p in phases) if info.layers]
    drawing = Drawing(infos[0].graph.name if infos else Path(net.path or "net").stem)
    for info in infos:
        add_phase(drawing, info, collapse_blocks)
    mark_phases(drawing, [info.graph.state.phase for info in infos])
    drawing.summaries = [f"{info.graph.state.phase}: {count(len(info.layers), 'layer')}, {human(info.total_params)} params, "
                         f"{human(info.total_macs)} MACs per sample" for info in infos]
    return drawing


def format_of(output, fmt=None) -> str:
    fmt = (fmt or Path(output).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise NetdefError(Problem(f"cannot tell the drawing format of '{output}'",
                                  expected=f"--format or an extension: {', '.join(FORMATS)}", found=fmt or "none"))
    return fmt


def write_drawing(drawing: Drawing, output, fmt: str, rankdir="TB"):
    from .scene import COLORS, build_scene
    if fmt == "dot":
        from .dot import to_dot
        Path(output).write_text(to_dot(drawing, rankdir), encoding="utf-8")
        return
    scene = build_scene(drawing, rankdir)
    if fmt in ("png", "pdf"):
        from .raster import render
        render(scene, output, fmt)
    elif fmt == "svg":
        from .svg import to_svg
        Path(output).write_text(to_svg(scene), encoding="utf-8")
    else:
        from .svg import to_html
        kinds = {node.kind for node in drawing.nodes.values()}
        legend = {kind: color for kind, color in COLORS.items() if kind in kinds}
        details = [drawing.nodes[group.id].details for group in scene.groups]
        Path(output).write_text(to_html(scene, details, "; ".join(drawing.summaries), legend), encoding="utf-8")


def too_large_to_read(scene, fmt: str) -> bool:
    """A PNG or PDF so large that it would be scaled down below its natural text size (a full ResNet-152
    is 289 x 16000 pixels of unreadable text and takes minutes to render)."""
    from .raster import natural_scale
    return fmt in ("png", "pdf") and natural_scale(scene, fmt) < 1.0


def draw_file(path, output, fmt=None, rankdir="TB", phase="ALL", collapse_blocks=False, level=0, stages=(),
              notes=None) -> Drawing:
    """Draws a net file into `output`. A PNG or PDF too large to read is drawn with its blocks collapsed
    when the net has any; `notes` (a list) receives a sentence saying so."""
    fmt = format_of(output, fmt)
    drawing = build_drawing(path, phase, collapse_blocks, level, stages)
    if not collapse_blocks and drawing.clusters and fmt in ("png", "pdf"):
        from .scene import build_scene
        scene = build_scene(drawing, rankdir)
        if too_large_to_read(scene, fmt):
            full = f"{round(scene.width)} x {round(scene.height)}"
            drawing = build_drawing(path, phase, True, level, stages)
            if notes is not None:
                notes.append(f"{output}: {count(layer_nodes(drawing), 'node')} with blocks collapsed (--collapse-blocks): "
                             f"the full drawing ({full} points) is too large for a readable {fmt.upper()}; "
                             f"use .html or .svg for every layer")
    write_drawing(drawing, output, fmt, rankdir)
    return drawing


def layer_nodes(drawing) -> int:
    """How many layer (or collapsed block) nodes a drawing has, blobs not counted."""
    return sum(node.kind != "blob" for node in drawing.nodes.values())
