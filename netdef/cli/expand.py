"""Print a net file with every block instance replaced by its layers: a flat Caffe-style net that is
valid netdef input again."""
import sys

from .. import expand_file
from ..front.expand import dump_net


def add_arguments(parser):
    parser.add_argument("net", help="net file (.yaml)")
    parser.add_argument("-o", "--output", help="write to this file instead of standard output")


def run(args) -> int:
    text = dump_net(expand_file(args.net))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0
