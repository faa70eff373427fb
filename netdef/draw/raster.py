"""PNG and PDF of a scene with matplotlib (its wheels bring their own FreeType and Agg: no system
library, no Graphviz). One scene unit is one point; large nets are scaled down to stay within the
pixel limit of PNG writers and the page-size limit of PDF viewers."""
from __future__ import annotations

from .scene import EDGE_COLOR, LABEL_HALO, TEXT_COLOR, octagon_points

MATPLOTLIB_FONT = "DejaVu Sans"  # shipped inside matplotlib, and the font the SVG asks for first
MAX_PIXELS = 16000  # longest PNG side
PNG_SCALE = 2.0  # pixels per unit when the net is small enough
MAX_PDF_POINTS = 14400  # 200 inches: the largest page Acrobat opens


def _patch(shape, scale):
    from matplotlib.patches import FancyBboxPatch, Polygon
    style = dict(facecolor=shape.fill, edgecolor=shape.stroke, linewidth=(2 if shape.bold else 1) * scale,
                 linestyle=(0, (4, 2)) if shape.dashed else "solid")
    if shape.kind == "octagon":
        return Polygon(octagon_points(shape), closed=True, **style)
    radius = 8 if shape.kind == "cluster" else 4
    return FancyBboxPatch((shape.x + radius, shape.y + radius), shape.w - 2 * radius, shape.h - 2 * radius,
                          boxstyle=f"round,pad={radius}", **style)


def natural_scale(scene, fmt: str) -> float:
    """Below 1, the scene is shrunk to fit a PNG's pixel limit or a PDF's page limit (its text with it)."""
    longest = max(scene.width, scene.height)
    if fmt == "pdf":
        return min(1.0, MAX_PDF_POINTS / longest)
    return min(1.0, MAX_PIXELS / (PNG_SCALE * longest))


def render(scene, output, fmt: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import PathPatch, Polygon
    from matplotlib.path import Path
    from matplotlib.patheffects import withStroke

    scale = natural_scale(scene, fmt) if fmt == "pdf" else 1.0
    dpi = 72 * (PNG_SCALE * natural_scale(scene, fmt) if fmt == "png" else 1.0)
    figure = plt.figure(figsize=(scene.width * scale / 72, scene.height * scale / 72), dpi=dpi)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, scene.width)
    axes.set_ylim(scene.height, 0)
    axes.axis("off")

    def text(t, **style):
        axes.text(t.x, t.y, t.text, fontsize=t.size * scale, fontweight="bold" if t.bold else "normal",
                  ha="center" if t.anchor == "middle" else "left", va="baseline", color=TEXT_COLOR, family=MATPLOTLIB_FONT,
                  **style)
    for shape, _ in scene.clusters:
        axes.add_patch(_patch(shape, scale))
    for curve in scene.curves:
        vertices, codes = [curve.start], [Path.MOVETO]
        for segment in curve.segments:
            vertices += list(segment)
            codes += [Path.CURVE4] * 3
        axes.add_patch(PathPatch(Path(vertices, codes), facecolor="none", edgecolor=EDGE_COLOR, linewidth=1.2 * scale))
        axes.add_patch(Polygon(curve.arrow, closed=True, facecolor=EDGE_COLOR, edgecolor="none"))
    for group in scene.groups:
        axes.add_patch(_patch(group.shape, scale))
        for t in group.texts:
            text(t)
    halo = [withStroke(linewidth=LABEL_HALO * scale, foreground="white")]
    for _, title in scene.clusters:  # over every node and edge, as in the SVG
        text(title, path_effects=halo, zorder=10)
    figure.savefig(output, format=fmt, dpi=dpi, facecolor="white")
    plt.close(figure)
