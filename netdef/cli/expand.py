"""Print a net file with every block instance replaced by its layers: a flat Caffe-style net that is
valid netdef input again. Written to another folder (-o), its relative paths (data sources, mean files,
every field its layer class marks as a path) are rebased so that they still name the same files."""
import dataclasses
import sys
from pathlib import Path

from .. import expand_file
from ..front.expand import dump_net, rebased_layers


def add_arguments(parser):
    parser.add_argument("net", help="net file (.yaml)")
    parser.add_argument("-o", "--output", help="write to this file instead of standard output; relative paths "
                                               "in the net are rewritten to be relative to its folder")


def run(args) -> int:
    expanded = expand_file(args.net)
    if not args.output:
        sys.stdout.write(dump_net(expanded))
        return 0
    old_dir, new_dir = Path(args.net).resolve().parent, Path(args.output).resolve().parent
    moved = dataclasses.replace(expanded, layers=rebased_layers(expanded.layers, old_dir, new_dir))
    new_dir.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(dump_net(moved), encoding="utf-8")
    return 0
