"""DOT text (Graphviz) of a drawing, for users who have Graphviz and want its layout or its formats."""
from __future__ import annotations

from .scene import COLORS, FONT, STROKES


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node(node) -> str:
    shape = "octagon" if node.kind == "blob" else "box"
    style = "filled" if node.kind == "blob" else "filled,rounded" + (",dashed" if node.in_place else "")
    label = "\n".join([node.title] + node.lines)
    return (f"{_quote(node.id)} [shape={shape}, style={_quote(style)}, fillcolor={_quote(COLORS.get(node.kind, COLORS['other']))}, "
            f"color={_quote(STROKES.get(node.kind, '#555555'))}, label={_quote(label)}];")


def to_dot(drawing, rankdir="TB") -> str:
    lines = [f"digraph {_quote(drawing.name)} {{", f"  rankdir={rankdir};",
             f"  node [fontname={_quote(FONT.split(',')[0])}, fontsize=10];", "  edge [color=\"#5a5a5a\"];"]
    children = {}
    for cluster in drawing.clusters.values():
        children.setdefault(cluster.parent, []).append(cluster.id)
    members = {}
    for node in drawing.nodes.values():
        members.setdefault(node.clusters[-1] if node.clusters else None, []).append(node)

    def emit(cluster_id, indent):
        for child in children.get(cluster_id, []):
            lines.append(f"{indent}subgraph {_quote('cluster_' + child)} {{")
            lines.append(f"{indent}  label={_quote(drawing.clusters[child].title)}; style=\"rounded,filled\"; "
                         f"fillcolor=\"#f6f8fc\"; color=\"#8fa2c4\";")
            emit(child, indent + "  ")
            lines.append(f"{indent}}}")
        lines.extend(indent + _node(node) for node in members.get(cluster_id, []))
    emit(None, "  ")
    lines.extend(f"  {_quote(a)} -> {_quote(b)};" for a, b in drawing.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"
