"""Print every layer's output shape, learnable parameters, MACs per sample, connections (LeCun's
count) and activation memory, with totals, computed before any tensor exists; --batch gives the shapes
and memory at another batch size."""
import json

from ..tools.summary import summary_dict, summary_table
from ..tools.resources import refuse_if_too_big
from .common import add_batch_argument, add_max_memory_argument, add_state_arguments, batch_info, max_memory


def add_arguments(parser):
    parser.add_argument("net", help="net file (.yaml)")
    add_state_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--blocks", action="store_true", help="one row per block instance instead of per layer")
    add_batch_argument(parser)
    add_max_memory_argument(parser, "no limit")


def run(args) -> int:
    info = batch_info(args.net, args)
    refuse_if_too_big(info, max_memory(args), training=info.graph.state.phase == "TRAIN", where="--max-memory")
    print(json.dumps(summary_dict(info), indent=2) if args.json else summary_table(info, blocks=args.blocks))
    return 0
