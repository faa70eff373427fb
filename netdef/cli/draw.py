"""Draw a net as Caffe's draw_net.py does (layers as boxes colored by kind, blobs as octagons, in-place
layers dashed), with each layer's key parameters, output shape, parameters and MACs. Formats: SVG, a
self-contained HTML page (pan, zoom, details on hover), DOT, PNG, PDF; all without Graphviz."""
import sys

from ..draw import FORMATS, RANKDIRS, draw_file, layer_nodes
from ..draw.model import count
from .common import add_level_stage_arguments


def add_arguments(parser):
    parser.add_argument("net", help="net file (.yaml)")
    parser.add_argument("-o", "--output", required=True, help="file to write; its extension picks the format")
    parser.add_argument("--format", choices=FORMATS, help="svg, html, dot, png or pdf (default: from the extension)")
    parser.add_argument("--rankdir", default="TB", type=str.upper, choices=RANKDIRS,
                        help="direction of the data flow: TB (default), LR, BT, RL")
    parser.add_argument("--phase", default="ALL", type=str.upper, choices=["TRAIN", "TEST", "ALL"],
                        help="layers of one phase, or of both (ALL, the default, as Caffe)")
    parser.add_argument("--collapse-blocks", action="store_true",
                        help="draw each outermost block instance as one node (parameters and MACs summed); a PNG or PDF too "
                             "large to read is drawn so without it")
    add_level_stage_arguments(parser)


def run(args) -> int:
    notes = []
    drawing = draw_file(args.net, args.output, args.format, args.rankdir, args.phase, args.collapse_blocks,
                        args.level, tuple(args.stage), notes)
    for note in notes:
        print(note, file=sys.stderr)
    layers = layer_nodes(drawing)
    blobs = len(drawing.nodes) - layers
    print(f"{args.output}: {count(layers, 'layer node')}, {count(blobs, 'blob')}, {count(len(drawing.edges), 'edge')}")
    return 0
