"""netdef draw: what is drawn (layers, blobs, in-place chains, phases, blocks), the layout, and every
output format, the HTML page checked in headless Chromium."""
import importlib.util
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from netdef.cli import main
from netdef.draw import build_drawing, write_drawing
from netdef.draw.scene import build_scene
from netdef.tools.summary import block_rows
from netdef import summarize

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "nets" / "lenet.yaml"
LENET_LAYERS = ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "accuracy", "loss"]
SVG = "{http://www.w3.org/2000/svg}"

_spec = importlib.util.spec_from_file_location("screenshot_html", ROOT / "tools" / "screenshot_html.py")
screenshot_html = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshot_html)

BLOCK_NET = """\
name: blocky
blocks:
  conv_relu:
    args: {num: null}
    layers:
      - {name: "${name}_conv", type: Convolution, bottom: "${bottom}", top: "${top}",
         convolution_param: {num_output: "${num}", kernel_size: 3, pad: 1}}
      - {name: "${name}_relu", type: ReLU, bottom: "${top}", top: "${top}"}
  pair:
    args: {num: null}
    layers:
      - {use: conv_relu, name: "${name}_x", bottom: "${bottom}", with: {num: "${num}"}}
      - {use: conv_relu, name: "${name}_y", bottom: "${name}_x", with: {num: "${num}"}}
      - {name: "${name}_sum", type: Eltwise, bottom: ["${name}_x", "${name}_y"], top: "${top}"}
layers:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [2, 3, 16, 16]}}}
  - {use: pair, name: stage, bottom: data, repeat: 2, with: {num: 8}}
  - {name: pool, type: Pooling, bottom: stage_2, top: pool, pooling_param: {pool: AVE, global_pooling: true}}
"""


def resnet152_like() -> str:
    """A ResNet-152-sized net (3-8-36-3 bottleneck units, conv/BN/scale/ReLU) written with blocks."""
    head = """\
name: resnet152_like
blocks:
  cbr:
    args: {num: null, k: 1, s: 1, relu: true}
    layers:
      - {name: "${name}", type: Convolution, bottom: "${bottom}", top: "${top}",
         convolution_param: {num_output: "${num}", kernel_size: "${k}", stride: "${s}", pad: "${k // 2}", bias_term: false}}
      - {name: "${name}_bn", type: BatchNorm, bottom: "${top}", top: "${top}"}
      - {name: "${name}_scale", type: Scale, bottom: "${top}", top: "${top}", scale_param: {bias_term: true}}
      - {name: "${name}_relu", type: ReLU, bottom: "${top}", top: "${top}", if: "${relu}"}
  unit:
    args: {mid: null, s: 1, proj: false}
    layers:
      - {use: cbr, name: "${name}_a", bottom: "${bottom}", with: {num: "${mid}", s: "${s}"}}
      - {use: cbr, name: "${name}_b", bottom: "${name}_a", with: {num: "${mid}", k: 3}}
      - {use: cbr, name: "${name}_c", bottom: "${name}_b", with: {num: "${mid * 4}", relu: false}}
      - {use: cbr, name: "${name}_proj", bottom: "${bottom}", with: {num: "${mid * 4}", s: "${s}", relu: false}, if: "${proj}"}
      - {name: "${name}_sum", type: Eltwise, bottom: ["${name}_c", "${name + '_proj' if proj else bottom}"], top: "${top}"}
      - {name: "${name}_relu", type: ReLU, bottom: "${top}", top: "${top}"}
layers:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 3, 224, 224]}}}
  - {use: cbr, name: conv1, bottom: data, with: {num: 64, k: 7, s: 2}}
  - {name: pool1, type: Pooling, bottom: conv1, top: pool1, pooling_param: {pool: MAX, kernel_size: 3, stride: 2}}
"""
    lines, previous = [], "pool1"
    for stage, units in enumerate((3, 8, 36, 3)):
        for i in range(units):
            name = f"res{stage + 2}_{i + 1}"
            lines.append(f"  - {{use: unit, name: {name}, bottom: {previous}, with: {{mid: {64 * 2 ** stage}, "
                         f"s: {2 if i == 0 and stage else 1}, proj: {'true' if i == 0 else 'false'}}}}}")
            previous = name
    lines.append(f"  - {{name: fc, type: InnerProduct, bottom: {previous}, top: fc, inner_product_param: {{num_output: 1000}}}}")
    return head + "\n".join(lines) + "\n"


def svg_texts(path):
    root = ET.parse(path).getroot()
    return root, ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_svg_names_every_layer_and_blob(tmp_path):
    out = tmp_path / "lenet.svg"
    result = subprocess.run([sys.executable, "-m", "netdef", "draw", str(LENET), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    root, texts = svg_texts(out)
    assert root.tag == f"{SVG}svg"
    for name in LENET_LAYERS + ["data", "label"]:
        assert name in texts, name
    assert texts.count("mnist") == 2  # one Data layer per phase, as the file has
    assert "Accuracy (TEST only)" in texts and "Data (TRAIN only)" in texts
    assert "out 20 k5 s1" in texts and "Pooling MAX" in texts and "k2 s2 p0" in texts  # key parameters
    assert "64x20x24x24" in texts and "520 params · 288k MACs" in texts  # shape, params and MACs of conv1
    drawing = build_drawing(LENET)
    octagons = list(root.iter(f"{SVG}polygon"))
    assert sum(len(p.get("points").split()) == 8 for p in octagons) == sum(n.kind == "blob" for n in drawing.nodes.values())


def test_in_place_layers_sit_in_the_chain_they_modify():
    drawing = build_drawing(LENET, phase="TRAIN")
    titles = {node.id: node.title for node in drawing.nodes.values()}
    edges = {(titles[a], titles[b]) for a, b in drawing.edges}
    assert ("ip1", "relu1") in edges  # layer ip1 straight into the in-place ReLU...
    assert ("relu1", "ip1") in edges and ("ip1", "ip2") in edges  # ...then blob ip1, read by ip2
    relu = next(node for node in drawing.nodes.values() if node.title == "relu1")
    assert relu.in_place and relu.kind == "neuron"
    assert sum(node.title == "ip1" for node in drawing.nodes.values()) == 2  # the layer and its (final) blob
    assert [n.title for n in drawing.nodes.values() if n.kind != "blob"] == [n for n in LENET_LAYERS if n != "accuracy"]


def test_collapsed_blocks_sum_their_layers(tmp_path):
    net = tmp_path / "blocky.yaml"
    net.write_text(BLOCK_NET)
    collapsed = build_drawing(net, collapse_blocks=True)
    blocks = [node for node in collapsed.nodes.values() if node.kind == "block"]
    assert [node.title for node in blocks] == ["stage_1", "stage_2"]
    rows = {row["name"]: row for row in block_rows(summarize(net)) if row["depth"] == 0}
    for node in blocks:
        assert node.details["params"] == rows[node.title]["params"] > 0
        assert node.details["MACs per sample"] == rows[node.title]["macs"] > 0
    blobs = sorted(node.title for node in collapsed.nodes.values() if node.kind == "blob")
    assert blobs == ["data", "pool", "stage_1", "stage_2"]  # blobs inside an instance are not drawn

    expanded = build_drawing(net)
    assert {c.title for c in expanded.clusters.values()} == {
        "stage_1 (pair)", "stage_2 (pair)", "stage_1_x (conv_relu)", "stage_1_y (conv_relu)",
        "stage_2_x (conv_relu)", "stage_2_y (conv_relu)"}
    inner = next(n for n in expanded.nodes.values() if n.title == "stage_2_y_conv")
    assert [expanded.clusters[c].title for c in inner.clusters] == ["stage_2 (pair)", "stage_2_y (conv_relu)"]
    out = tmp_path / "blocky.svg"
    write_drawing(expanded, out, "svg")
    _, texts = svg_texts(out)
    assert "stage_2_y (conv_relu)" in texts and "block pair" not in texts


def test_dot_text_declares_every_node_and_nests_clusters(tmp_path):
    net = tmp_path / "blocky.yaml"
    net.write_text(BLOCK_NET)
    out = tmp_path / "blocky.dot"
    assert main(["draw", str(net), "-o", str(out), "--rankdir", "LR"]) == 0
    text = out.read_text()
    assert text.startswith('digraph "blocky" {') and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}") and "rankdir=LR;" in text
    declared = set(re.findall(r'^\s*("(?:[^"\\]|\\.)*") \[shape=', text, re.M))
    edges = re.findall(r'^\s*("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*");$', text, re.M)
    drawing = build_drawing(net)
    assert len(declared) == len(drawing.nodes) and len(edges) == len(drawing.edges)
    assert all(a in declared and b in declared for a, b in edges)
    outer = text.index('subgraph "cluster_block:stage_1@')
    assert outer < text.index('subgraph "cluster_block:stage_1_x@') < text.index("}", outer)


def test_png_and_pdf_are_valid_files(tmp_path):
    png, pdf = tmp_path / "lenet.png", tmp_path / "lenet.pdf"
    assert main(["draw", str(LENET), "-o", str(png), "--phase", "TEST"]) == 0
    assert main(["draw", str(LENET), "-o", str(pdf), "--rankdir", "LR"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.load()
        assert image.height > image.width > 100  # TB: a tall picture
        colors = image.convert("RGB").getcolors(1 << 16)
        assert colors is None or len(colors) > 20  # boxes, text and edges, not a blank page
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.read_bytes().rstrip().endswith(b"%%EOF")


@pytest.mark.parametrize("rankdir", ["TB", "BT", "LR", "RL"])
def test_rankdir_turns_the_flow(rankdir):
    drawing = build_drawing(LENET, phase="TEST")
    scene = build_scene(drawing, rankdir)
    centers = {g.id: (g.shape.x + g.shape.w / 2, g.shape.y + g.shape.h / 2) for g in scene.groups}
    by_title = {drawing.nodes[i].title: c for i, c in centers.items() if drawing.nodes[i].kind != "blob"}
    axis, sign = {"TB": (1, 1), "BT": (1, -1), "LR": (0, 1), "RL": (0, -1)}[rankdir]
    flow = [sign * by_title[name][axis] for name in ("conv1", "pool1", "conv2", "ip1", "ip2", "loss")]
    assert flow == sorted(flow)
    boxes = [(g.shape.x, g.shape.y, g.shape.x + g.shape.w, g.shape.y + g.shape.h) for g in scene.groups]
    for i, a in enumerate(boxes):  # no two nodes overlap
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    assert all(0 <= x0 and x1 <= scene.width and 0 <= y0 and y1 <= scene.height for x0, y0, x1, y1 in boxes)


def test_resnet152_sized_net_lays_out_in_seconds(tmp_path):
    net = tmp_path / "resnet152_like.yaml"
    net.write_text(resnet152_like())
    start = time.perf_counter()
    drawing = build_drawing(net, phase="TEST")
    scene = build_scene(drawing)
    elapsed = time.perf_counter() - start
    layers = sum(node.kind != "blob" for node in drawing.nodes.values())
    assert layers == 669 and len(scene.groups) == len(drawing.nodes)  # 1 + 4 + 1 + 50 units x 13 + 4 x 3 + 1
    assert elapsed < 10, f"{elapsed:.1f} s"  # about 1 s on an idle CI core
    collapsed = build_drawing(net, phase="TEST", collapse_blocks=True)
    assert sum(node.kind == "block" for node in collapsed.nodes.values()) == 51  # conv1 + 50 units


def test_unknown_format_is_a_clear_error(tmp_path, capsys):
    assert main(["draw", str(LENET), "-o", str(tmp_path / "lenet.gif")]) == 2
    assert "cannot tell the drawing format" in capsys.readouterr().err


@pytest.fixture(scope="module")
def chromium():
    if screenshot_html.find_chromium() is None:
        pytest.skip("no chromium on PATH: .ci/run installs Debian's chromium (apt-get install chromium) as root")


def test_html_page_runs_in_chromium_without_console_messages(tmp_path, chromium):
    page = tmp_path / "lenet.html"
    assert main(["draw", str(LENET), "-o", str(page)]) == 0
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html  # self-contained
    dom, console = screenshot_html.run_chromium(page, anchor="conv2")
    assert console == []
    assert 'data-ready="1"' in dom  # the script ran to its end
    details = re.search(r'<div id="details">(.*?)</div>', dom, re.S).group(1)
    assert "conv2" in details and "1,600,000" in details  # conv2's MACs per sample, pinned by #conv2
    shot = tmp_path / "lenet_page.png"
    _, console = screenshot_html.run_chromium(page, screenshot=shot, size=(1000, 700))
    assert console == []
    with Image.open(shot) as image:
        assert image.size == (1000, 700) and len(image.convert("RGB").getcolors(1 << 20)) > 50


def test_what_a_node_shows_is_declared_by_its_layer_class():
    """The type text and key fields on a box come from the layer class (drawn_fields, drawn_always,
    type_text): every declared field is one of the class's own, and Pooling's method joins its type."""
    from netdef.layers import LAYERS
    for name, cls in LAYERS.items():
        fields = {field for block in cls.blocks.values() for field in block}
        assert set(cls.drawn_fields) <= fields, name
        first = next(iter(cls.blocks.values()), {})
        assert set(cls.drawn_always) <= set(cls.drawn_fields) & set(first), name
    drawing = build_drawing(LENET, phase="TEST")
    pool = next(node for node in drawing.nodes.values() if node.title == "pool1")
    conv = next(node for node in drawing.nodes.values() if node.title == "conv1")
    assert pool.lines[:2] == ["Pooling MAX", "k2 s2 p0"] and conv.lines[:2] == ["Convolution", "out 20 k5 s1"]


def test_a_png_too_large_to_read_collapses_its_blocks_and_says_so(tmp_path, capsys):
    net = tmp_path / "resnet152_like.yaml"
    net.write_text(resnet152_like())
    png = tmp_path / "resnet.png"
    assert main(["draw", str(net), "-o", str(png), "--phase", "TEST"]) == 0
    out, err = capsys.readouterr()
    assert "with blocks collapsed (--collapse-blocks)" in err and "too large for a readable PNG" in err
    assert out.startswith(f"{png}: 54 layer nodes")  # conv1 and 50 units collapsed, data, pool1, fc
    with Image.open(png) as image:  # 54 boxes at about their natural size, not a 289-pixel strip of 669
        assert max(image.size) <= 16000 and image.width > 300
    svg = tmp_path / "resnet.svg"  # SVG and HTML zoom: every layer stays
    assert main(["draw", str(net), "-o", str(svg), "--phase", "TEST"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith(f"{svg}: 669 layer nodes")


def test_counts_of_one_are_singular(tmp_path, capsys):
    net = tmp_path / "one.yaml"
    net.write_text("""\
name: one
blocks:
  single:
    layers:
      - {name: "${name}", type: ReLU, bottom: "${bottom}", top: "${top}"}
layers:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 3]}}}
  - {use: single, name: act, bottom: data}
""")
    drawing = build_drawing(net, phase="TEST", collapse_blocks=True)
    block = next(node for node in drawing.nodes.values() if node.kind == "block")
    assert "1 layer" in block.lines and drawing.summaries[0].startswith("TEST: 2 layers")
    assert main(["draw", str(net), "-o", str(tmp_path / "one.svg"), "--collapse-blocks", "--phase", "TEST"]) == 0
    assert re.search(r"\b1 (layers|blobs|edges|layer nodes)\b", capsys.readouterr().out) is None
    texts = " | ".join(svg_texts(tmp_path / "one.svg")[1])
    assert "1 layers" not in texts


def test_block_frame_labels_are_drawn_over_every_node(tmp_path):
    net = tmp_path / "blocky.yaml"
    net.write_text(BLOCK_NET)
    svg = tmp_path / "blocky.svg"
    assert main(["draw", str(net), "-o", str(svg)]) == 0
    root, _ = svg_texts(svg)
    layers = [g.get("class") for g in root.findall(f"{SVG}g")]
    assert layers == ["clusters", "edges", "nodes", "cluster-labels"]  # painted in this order: labels last
    labels = ["".join(t.itertext()) for t in root.find(f"{SVG}g[@class='cluster-labels']")]
    assert sorted(labels) == sorted(c.title for c in build_drawing(net).clusters.values())
    assert root.find(f"{SVG}g[@class='clusters']").find(f"{SVG}text") is None


def test_html_page_first_view_fits_the_whole_net(tmp_path, chromium):
    net = tmp_path / "resnet152_like.yaml"
    net.write_text(resnet152_like())
    page = tmp_path / "resnet.html"
    assert main(["draw", str(net), "-o", str(page), "--phase", "TEST"]) == 0
    scene = build_scene(build_drawing(net, phase="TEST"))
    dom, console = screenshot_html.run_chromium(page, size=(1000, 700))
    assert console == [] and 'data-ready="1"' in dom
    view_box = [float(v) for v in re.search(r'<svg[^>]* viewBox="([^"]+)"', dom).group(1).split()]
    assert view_box == pytest.approx([0, 0, scene.width, scene.height], abs=0.1)  # all of it, not its top
