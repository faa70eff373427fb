"""SVG of a scene, and the self-contained HTML page around it (inline SVG, inline script: pan, zoom,
search, and every node's details on hover or click; nothing is fetched from the network)."""
from __future__ import annotations

import json
from html import escape

from .scene import EDGE_COLOR, FONT, LABEL_HALO, TEXT_COLOR, octagon_points


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _points(points) -> str:
    return " ".join(f"{_num(x)},{_num(y)}" for x, y in points)


def _shape(shape) -> str:
    style = f'fill="{shape.fill}" stroke="{shape.stroke}" stroke-width="{2 if shape.bold else 1}"'
    if shape.dashed:
        style += ' stroke-dasharray="4 2"'
    if shape.kind == "octagon":
        return f'<polygon points="{_points(octagon_points(shape))}" {style}/>'
    radius = 8 if shape.kind == "cluster" else 4
    return (f'<rect x="{_num(shape.x)}" y="{_num(shape.y)}" width="{_num(shape.w)}" height="{_num(shape.h)}" '
            f'rx="{radius}" {style}/>')


def _text(text, extra="") -> str:
    weight = ' font-weight="bold"' if text.bold else ""
    anchor = "" if text.anchor == "start" else f' text-anchor="{text.anchor}"'
    return (f'<text x="{_num(text.x)}" y="{_num(text.y)}" font-size="{_num(text.size)}"{weight}{anchor}{extra}>'
            f'{escape(text.text)}</text>')


def _curve(curve) -> str:
    path = f"M{_num(curve.start[0])},{_num(curve.start[1])}" + "".join(
        f" C{_points(segment)}" for segment in curve.segments)
    return (f'<path d="{path}" fill="none" stroke="{EDGE_COLOR}" stroke-width="1.2"/>'
            f'<polygon points="{_points(curve.arrow)}" fill="{EDGE_COLOR}"/>')


def to_svg(scene, standalone=True) -> str:
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if standalone else ""
    parts = [f'{head}<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_num(scene.width)} {_num(scene.height)}" '
             f'width="{_num(scene.width)}" height="{_num(scene.height)}" font-family="{FONT}" fill="{TEXT_COLOR}">',
             f"<title>{escape(scene.title)}</title>",
             f'<rect x="0" y="0" width="{_num(scene.width)}" height="{_num(scene.height)}" fill="white"/>',
             '<g class="clusters">']
    parts += [_shape(shape) for shape, _ in scene.clusters]
    parts.append('</g><g class="edges">')
    parts += [_curve(curve) for curve in scene.curves]
    parts.append('</g><g class="nodes">')
    for index, group in enumerate(scene.groups):
        parts.append(f'<g class="node" id="n{index}">' + _shape(group.shape) + "".join(_text(t) for t in group.texts)
                     + "</g>")
    # Block-frame labels go last, haloed, so that no node or edge of a neighbouring rank can hide them.
    parts.append(f'</g><g class="cluster-labels" stroke="white" stroke-width="{_num(LABEL_HALO)}" '
                 'paint-order="stroke" stroke-linejoin="round">')
    parts += [_text(text) for _, text in scene.clusters]
    parts.append("</g></svg>\n")
    return "\n".join(parts)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
html, body {{ margin: 0; height: 100%; font-family: {font}; font-size: 13px; color: #1a1a1a; }}
body {{ display: flex; flex-direction: column; }}
header {{ display: flex; gap: 12px; align-items: center; padding: 6px 12px; border-bottom: 1px solid #ccc;
          background: #fafafa; }}
header h1 {{ font-size: 15px; margin: 0; }}
header .summary {{ color: #555; flex: 1; }}
main {{ flex: 1; display: flex; min-height: 0; }}
#view {{ flex: 1; overflow: hidden; cursor: grab; background: white; }}
#view.dragging {{ cursor: grabbing; }}
#view svg {{ width: 100%; height: 100%; display: block; }}
#panel {{ width: 330px; overflow: auto; border-left: 1px solid #ccc; padding: 8px 12px; background: #fcfcfc; }}
#panel table {{ border-collapse: collapse; width: 100%; }}
#panel td {{ vertical-align: top; padding: 2px 4px; border-bottom: 1px solid #eee; word-break: break-word; }}
#panel td:first-child {{ color: #555; white-space: nowrap; }}
#panel pre {{ margin: 0; white-space: pre-wrap; font-size: 12px; }}
.legend span {{ display: inline-block; padding: 1px 6px; margin: 2px; border: 1px solid #999; border-radius: 3px; }}
g.node {{ cursor: pointer; }}
g.node:hover > :first-child, g.node.pinned > :first-child {{ stroke: #d00; stroke-width: 2.5; }}
</style>
</head>
<body data-ready="0">
<header><h1>{title}</h1><span class="summary">{summary}</span>
<input id="search" placeholder="find a layer or blob" size="22"> <button id="fit">fit</button>
<button id="actual">100%</button></header>
<main><div id="view">{svg}</div>
<aside id="panel"><p>Hover over a node for its details; click to keep them. Drag to pan, wheel to zoom.</p>
<div class="legend">{legend}</div><div id="details"></div></aside></main>
<script type="application/json" id="node-data">{data}</script>
<script>
(function () {{
  "use strict";
  const svg = document.querySelector("#view svg");
  const view = document.getElementById("view");
  const nodes = JSON.parse(document.getElementById("node-data").textContent);
  const panel = document.getElementById("details");
  const full = {{ x: 0, y: 0, w: svg.viewBox.baseVal.width, h: svg.viewBox.baseVal.height }};
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  let box = Object.assign({{}}, full);
  let pinned = null;

  function apply() {{ svg.setAttribute("viewBox", [box.x, box.y, box.w, box.h].join(" ")); }}
  function unitsPerPixel() {{
    const r = view.getBoundingClientRect();
    return Math.max(box.w / Math.max(r.width, 1), box.h / Math.max(r.height, 1));
  }}
  function atScale(scale, x, y) {{
    const r = view.getBoundingClientRect();
    box = {{ w: r.width / scale, h: r.height / scale, x: 0, y: 0 }};
    box.x = x === undefined ? (full.w - box.w) / 2 : x - box.w / 2;
    box.y = y === undefined ? 0 : y - box.h / 2;
    apply();
  }}
  function fit() {{ box = Object.assign({{}}, full); apply(); }}
  function toUser(event) {{
    const p = new DOMPoint(event.clientX, event.clientY);
    return p.matrixTransform(svg.getScreenCTM().inverse());
  }}
  view.addEventListener("wheel", function (event) {{
    event.preventDefault();
    const p = toUser(event);
    const factor = event.deltaY > 0 ? 1.15 : 1 / 1.15;
    box = {{ x: p.x - (p.x - box.x) * factor, y: p.y - (p.y - box.y) * factor, w: box.w * factor, h: box.h * factor }};
    apply();
  }}, {{ passive: false }});
  let drag = null;
  view.addEventListener("mousedown", function (event) {{
    drag = {{ x: event.clientX, y: event.clientY, box: Object.assign({{}}, box), moved: false }};
    view.classList.add("dragging");
  }});
  window.addEventListener("mousemove", function (event) {{
    if (!drag) return;
    const k = unitsPerPixel();
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    box.x = drag.box.x - dx * k;
    box.y = drag.box.y - dy * k;
    apply();
  }});
  window.addEventListener("mouseup", function () {{ view.classList.remove("dragging"); setTimeout(function () {{ drag = null; }}, 0); }});

  function cell(value) {{
    if (value !== null && typeof value === "object") {{
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(value, null, 1);
      return pre;
    }}
    return document.createTextNode(typeof value === "number" ? value.toLocaleString("en-US") : String(value));
  }}
  function show(id) {{
    const info = nodes[id];
    const table = document.createElement("table");
    Object.keys(info).forEach(function (key) {{
      const row = table.insertRow();
      row.insertCell().textContent = key;
      row.insertCell().appendChild(cell(info[key]));
    }});
    panel.replaceChildren(table);
  }}
  function pin(group) {{
    if (pinned) pinned.classList.remove("pinned");
    pinned = group;
    if (group) {{ group.classList.add("pinned"); show(group.id); }} else {{ panel.replaceChildren(); }}
  }}
  document.querySelectorAll("g.node").forEach(function (group) {{
    group.addEventListener("mouseenter", function () {{ if (!pinned) show(group.id); }});
    group.addEventListener("click", function (event) {{
      event.stopPropagation();
      if (!drag || !drag.moved) pin(pinned === group ? null : group);
    }});
  }});
  view.addEventListener("click", function () {{ if (!drag || !drag.moved) pin(null); }});
  document.getElementById("fit").addEventListener("click", fit);
  document.getElementById("actual").addEventListener("click", function () {{ atScale(1); }});
  function find(wanted) {{
    // a layer (or block) before a blob of the same name; exact names before partial ones
    const ids = Object.keys(nodes).sort(function (a, b) {{ return ("blob" in nodes[a]) - ("blob" in nodes[b]); }});
    const name = function (k) {{ return String(nodes[k].name || nodes[k].blob).toLowerCase(); }};
    return ids.find(function (k) {{ return name(k) === wanted; }}) ||
      ids.find(function (k) {{ return name(k).includes(wanted); }});
  }}
  function focus(wanted) {{
    const id = wanted && find(wanted.trim().toLowerCase());
    if (!id) return false;
    const group = document.getElementById(id);
    const b = group.getBBox();
    atScale(1, b.x + b.width / 2, b.y + b.height / 2);
    pin(group);
    return true;
  }}
  document.getElementById("search").addEventListener("keydown", function (event) {{
    if (event.key === "Enter") focus(event.target.value);
  }});
  // page.html#conv2 opens with layer conv2 centred and its details shown; otherwise the whole net fits
  if (!focus(decodeURIComponent(location.hash.slice(1)))) fit();
  document.body.dataset.ready = "1";
}})();
</script>
</body>
</html>
"""


def to_html(scene, details: list, summary: str, legend: dict) -> str:
    """The page: `details` holds one dict per scene group (same order), `legend` kind -> color."""
    data = json.dumps({f"n{i}": d for i, d in enumerate(details)}, separators=(",", ":"))
    legend_html = "".join(f'<span style="background:{color}">{escape(kind)}</span>' for kind, color in legend.items())
    return PAGE.format(title=escape(scene.title), font=FONT, summary=escape(summary), svg=to_svg(scene, False),
                       legend=legend_html, data=data.replace("</", "<\\/"))
