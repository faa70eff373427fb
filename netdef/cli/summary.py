"""Print every layer's output shape, learnable parameters, MACs per sample, connections (LeCun's
count) and activation memory, with totals, computed before any tensor exists."""
import json

from .. import summarize
from ..tools.summary import summary_dict, summary_table
from .common import add_state_arguments, state_kwargs


def add_arguments(parser):
    parser.add_argument("net", help="net file (.yaml)")
    add_state_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--blocks", action="store_true", help="one row per block instance instead of per layer")


def run(args) -> int:
    info = summarize(args.net, **state_kwargs(args))
    print(json.dumps(summary_dict(info), indent=2) if args.json else summary_table(info, blocks=args.blocks))
    return 0
