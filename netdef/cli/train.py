"""Train a net with a solver file, as `caffe train`: tests when due, logs in Caffe's format, writes
snapshots and TensorBoard events. --snapshot resumes a run exactly; --weights starts from another run's
weights (fine-tuning, copied by layer name). A fresh run refuses to start over snapshots of its prefix
unless --overwrite is given. SIGINT and SIGTERM stop after a snapshot, SIGHUP writes one and goes on.
Under torchrun (or with --nproc N / --gpus 0,1, which start torchrun) each process is one rank of a
data-parallel run (netdef.train.distributed)."""
import sys
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
    parallel = parser.add_mutually_exclusive_group()
    parallel.add_argument("--nproc", type=_positive, metavar="N",
                          help="train on N processes of this machine (data-parallel; torchrun --standalone "
                               "--nproc_per_node N); batch_size is per process")
    parallel.add_argument("--gpus", metavar="0,1",
                          help="Caffe's -gpu: one process per listed GPU (torchrun; implies --device cuda)")
    parser.add_argument("--collective-timeout", type=float, default=300.0, metavar="S",
                        help="with several processes: a rank that does not answer for S seconds stops the "
                             "others, which name it (default 300)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _launcher_argv(argv: list, gpus: str | None) -> list:
    """This command line without --nproc/--gpus, for the processes the launcher starts (--device cuda for
    --gpus unless a device is given)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--nproc", "--gpus"):
            skip = True
        elif not arg.startswith(("--nproc=", "--gpus=")):
            kept.append(arg)
    if gpus is not None and not any(arg == "--device" or arg.startswith("--device=") for arg in kept):
        kept += ["--device", "cuda"]
    return kept


def run(args) -> int:
    if args.nproc or args.gpus:
        return _launch(args)
    return _train(args)


def _launch(args) -> int:
    from ..errors import NetdefError, Problem
    from ..train.distributed import launch, world_from_env
    if world_from_env().distributed:
        raise NetdefError(Problem("--nproc and --gpus start torchrun; this process already runs under it",
                                  hint="leave --nproc and --gpus out of the command that torchrun runs"))
    _check_before_launch(args)
    gpus = args.gpus.replace(" ", "") if args.gpus else None
    nproc = len(gpus.split(",")) if gpus else args.nproc
    return launch(nproc, gpus, _launcher_argv(sys.argv[1:], gpus))


def _check_before_launch(args) -> None:
    """Bad input as one message here, not one per rank after torchrun has started them: the solver and the
    nets it trains (--net's instead of its own), and the files --snapshot and --weights name."""
    from ..paths import require_file
    from ..train.config import load_solver
    from .check import check_file
    if args.net:
        load_solver(args.solver)
        check_file(args.net)
    else:
        check_file(args.solver)
    for what, given in (("snapshot", args.snapshot), ("weights", args.weights)):
        if given:
            require_file(given, what)


def _train(args) -> int:
    from ..train.threads import choose_threads
    threads = choose_threads()  # before torch loads: OpenMP reads its settings once
    from ..train.config import load_solver
    from ..train.distributed import session, world_from_env
    from ..train.solver import Solver  # imported here: `netdef --help` must not load torch
    from ..train.faults import check_fresh_prefix, check_later_snapshots, net_named_outputs
    from ..train.signals import SignalActions
    from ..train.snapshot import snapshot_prefix

    config, notes = load_solver(args.solver), [threads] if threads else []
    if args.net and world_from_env().is_main:
        print(f"net: {args.net} from the command line instead of the solver's {config.net_file}")
    if args.net:
        config, named = net_named_outputs(config.replace(net=str(Path(args.net).resolve()), train_net=None))
        notes += named
    if not args.snapshot:
        check_fresh_prefix(snapshot_prefix(config), args.overwrite, config.pos("snapshot_prefix"), notes)
    if args.device is not None and args.device != config.device:
        notes.append(f"device: {config.device} in the solver file, {args.device} from the command line "
                     "(using the command line's)")
        config = config.replace(device=args.device)
    with session(config.device, args.collective_timeout) as world:
        solver = Solver(config, **config.train_net_state(args.level, args.stage), notes=notes,
                        max_memory=max_memory(args), signals=SignalActions(args.sigint_effect, args.sighup_effect),
                        world=world)
        if args.snapshot:
            solver.restore(args.snapshot)
            check_later_snapshots(solver.prefix, solver.iter, args.overwrite, config.pos("snapshot_prefix"),
                                  solver.notes)
        else:  # --weights, or the solver's own `weights` (Caffe's SolverParameter.weights), in order
            for weights in [args.weights] if args.weights else [config.resolve(w) for w in config.weights]:
                solver.fine_tune(weights)
        solver.solve()
    return 0
