"""Arguments shared by several commands."""
from ..errors import NetdefError, Problem


def add_level_stage_arguments(parser, what="net state"):
    """Caffe's -level and -stage: which layers of a net file a command takes (with its phase)."""
    parser.add_argument("--level", type=int, default=0, help=f"{what} level (Caffe's -level)")
    parser.add_argument("--stage", action="append", default=[], help=f"{what} stage (repeatable)")


def add_state_arguments(parser, default_phase="TRAIN"):
    parser.add_argument("--phase", default=default_phase, type=str.upper, choices=["TRAIN", "TEST"],
                        help=f"net phase (default {default_phase})")
    add_level_stage_arguments(parser)


def state_kwargs(args) -> dict:
    return {"phase": args.phase, "level": args.level, "stages": tuple(args.stage)}


def add_batch_argument(parser):
    parser.add_argument("--batch", type=int, help="batch size of every input (default: the net's)")


def check_batch(args):
    if args.batch is not None and args.batch < 1:
        raise NetdefError(Problem("--batch must be at least 1", found=str(args.batch)))


def batch_info(path, args):
    """The NetInfo of the net state the arguments name, with the batch axis of every input replaced by
    --batch when given (the file is read and expanded once)."""
    from ..api import read_net
    check_batch(args)
    net = read_net(path)
    info = net.info(**state_kwargs(args))
    if args.batch is None:
        return info
    shapes = {blob: (args.batch,) + tuple(info.blob_shapes[blob][1:]) for blob in info.graph.inputs}
    return net.info(**state_kwargs(args), input_shapes=shapes)


def add_max_memory_argument(parser, default_text):
    parser.add_argument("--max-memory", metavar="SIZE",
                        help="refuse a net whose estimated memory (parameters three times and tops twice to "
                             f"train, see the README's Reliability) exceeds SIZE, e.g. 8G; default {default_text}")


def max_memory(args) -> int | None:
    from ..tools.resources import parse_size
    return None if args.max_memory is None else parse_size(args.max_memory)
