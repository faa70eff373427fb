"""Train a net with a solver file, as `caffe train`: tests when due, logs in Caffe's format, writes
snapshots and TensorBoard events. --snapshot resumes a run exactly; --weights starts from another run's
weights (fine-tuning, copied by layer name). A fresh run refuses to start over snapshots of its prefix
unless --overwrite is given. SIGINT and SIGTERM stop after a snapshot, SIGHUP writes one and goes on."""
from pathlib import Path

from ..train.signals import SIGNAL_EFFECTS
from .common import add_level_stage_arguments, add_max_memory_argument, max_memory


def add_arguments(parser):
    parser.add_argument("solver", help="solver file (.yaml)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--snapshot", metavar="FILE", help="resume from a snapshot (<prefix>_iter_<N>.pt)")
    start.add_argument("--weights", metavar="FILE", help="initialise from a snapshot's or state_dict's weights, "
                                                         "copied by layer name (fine-tuning)")
    parser.add_argument("--net", help="train this net file instead of the solver's `net` (e.g. another VGG or "
                                      "ResNet depth with the same solver)")
    parser.add_argument("--device", help="override the solver's device (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh, or resume an older snapshot, even though (later) snapshots of this "
                             "prefix exist (they are overwritten as the run reaches their iterations)")
    add_level_stage_arguments(parser, "TRAIN net state")
    add_max_memory_argument(parser, "the device's memory (RAM on the CPU)")
    parser.add_argument("--sigint-effect", choices=SIGNAL_EFFECTS, default="stop",
                        help="on SIGINT (Ctrl-C): stop (after the closing snapshot), snapshot and go on, or "
                             "nothing (default stop)")
    parser.add_argument("--sighup-effect", choices=SIGNAL_EFFECTS, default="snapshot",
                        help="on SIGHUP: snapshot and go on, stop, or nothing (default snapshot)")


def run(args) -> int:
    from ..train.config import load_solver
    from ..train.solver import Solver  # imported here: `netdef --help` must not load torch
    from ..train.faults import check_fresh_prefix, check_later_snapshots, net_named_outputs
    from ..train.signals import SignalActions
    from ..train.snapshot import snapshot_prefix

    config, notes = load_solver(args.solver), []
    if args.net:
        print(f"net: {args.net} from the command line instead of the solver's {config.net_file}")
        config, named = net_named_outputs(config.replace(net=str(Path(args.net).resolve()), train_net=None))
        notes += named
    if not args.snapshot:
        check_fresh_prefix(snapshot_prefix(config), args.overwrite, config.pos("snapshot_prefix"), notes)
    if args.device is not None and args.device != config.device:
        notes.append(f"device: {config.device} in the solver file, {args.device} from the command line "
                     "(using the command line's)")
        config = config.replace(device=args.device)
    solver = Solver(config, level=args.level, stages=tuple(args.stage), notes=notes, max_memory=max_memory(args),
                    signals=SignalActions(args.sigint_effect, args.sighup_effect))
    if args.snapshot:
        solver.restore(args.snapshot)
        check_later_snapshots(solver.prefix, solver.iter, args.overwrite, config.pos("snapshot_prefix"), solver.notes)
    elif args.weights:
        solver.fine_tune(args.weights)
    solver.solve()
    return 0
