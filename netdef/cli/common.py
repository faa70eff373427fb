"""Arguments shared by several commands."""


def add_state_arguments(parser, default_phase="TRAIN"):
    parser.add_argument("--phase", default=default_phase, type=str.upper, choices=["TRAIN", "TEST"],
                        help=f"net phase (default {default_phase})")
    parser.add_argument("--level", type=int, default=0, help="net state level (Caffe's -level)")
    parser.add_argument("--stage", action="append", default=[], help="net state stage (repeatable)")


def state_kwargs(args) -> dict:
    return {"phase": args.phase, "level": args.level, "stages": tuple(args.stage)}
