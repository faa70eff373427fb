"""Validate net and solver files and infer every shape; prints one line per file, or every problem
found (FILE:LINE:COL: ...) and exits with status 2."""
import os

from ..api import Net, read_net
from ..errors import NetdefError, Problem
from ..fields import as_list
from ..front.load import load_yaml
from ..paths import exists
from ..tools.resources import refuse_if_too_big
from .common import add_max_memory_argument, max_memory


def add_arguments(parser):
    parser.add_argument("files", nargs="+", help="net or solver files")
    add_max_memory_argument(parser, "no limit")


def is_solver(data) -> bool:
    """A loaded file is a solver when it has solver keys and no layers."""
    return isinstance(data, dict) and "layers" not in data and any(k in data for k in ("net", "train_net", "base_lr"))


def net_phases(net, limit=None):
    """Summaries of the TRAIN and TEST phases of `net` (a path or a netdef.Net) that hold layers. Both
    phases are checked before any problem is raised; a problem both phases share (a layer in both) is
    reported once."""
    net = net if isinstance(net, Net) else read_net(net)
    infos, problems = [], []
    for phase, stages in _states(net):
        try:
            info = net.info(phase, stages=stages)
        except NetdefError as exc:
            reported = {problem.pos for problem in problems}
            problems += [problem for problem in exc.problems if problem.pos is None or problem.pos not in reported]
            continue
        if info.layers:
            refuse_if_too_big(info, limit, training=phase == "TRAIN", where="--max-memory")
            infos.append(info)
    if problems:
        raise NetdefError(problems)
    return infos


def _states(net: Net) -> list:
    """(phase, stages) to check: each phase once; where its include rules name stages, once per stage set
    they name (Caffe's mnist_autoencoder has TEST data layers for the stages test-on-train and test-on-test
    only), and without stages too when a rule names a `not_stage` (the ImageNet nets' TEST data and
    accuracy layers are `not_stage: deploy`, their deploy form `stage: deploy`)."""
    states = []
    for phase in ("TRAIN", "TEST"):
        rules = [rule for layer in net.expanded.layers for rule in as_list(layer.get("include"))
                 if isinstance(rule, dict) and rule.get("phase") in (None, phase)]
        staged = {tuple(as_list(rule.get("stage"))) for rule in rules if rule.get("stage")}
        unstaged = not staged or any(rule.get("not_stage") for rule in rules)
        states += [(phase, ())] * unstaged + [(phase, stages) for stages in sorted(staged)]
    return states


def _state_name(state) -> str:
    return state.phase + (f" (stage {', '.join(state.stages)})" if state.stages else "")


def check_net(path, net: Net, limit=None) -> str:
    infos = net_phases(net, limit)
    parts = [f"{_state_name(info.graph.state)}: {len(info.layers)} layers, {info.total_params:,} params, "
             f"{info.total_macs:,} MACs" for info in infos]
    notes = dict.fromkeys(f"\n  note: {note}" for info in infos for note in info.graph.notes)
    return f"{path}: ok ({'; '.join(parts)})" + "".join(notes)


def check_solver(path, data, source, limit=None) -> str:
    """A loaded solver file, then each of its nets (a file named twice is checked once)."""
    from ..train.config import solver_from_yaml
    solver = solver_from_yaml(data, source, path)
    nets = [solver.net_file] + list(solver.test_net)
    checked = set()
    for net in nets:
        target = solver.resolve(net)
        if os.path.normpath(target) in checked:
            continue
        checked.add(os.path.normpath(target))
        if not exists(target) and "#" not in net:  # FILE#net_param: a solver's inline net
            raise NetdefError(Problem(f"net file not found: {net}", solver.pos("net"), expected=f"a file at {target}"))
        net_phases(target, limit)
    return f"{path}: ok (solver {solver.type}, lr_policy {solver.lr_policy}, {solver.max_iter} iterations, net {nets[0]})"


def check_file(path, limit=None) -> str:
    """Read a file once and check it as what it holds: a solver or a net."""
    data, source = load_yaml(path)
    if is_solver(data):
        return check_solver(path, data, source, limit)
    return check_net(path, Net.from_yaml(data, source), limit)


def run(args) -> int:
    limit = max_memory(args)
    problems = []
    for path in args.files:
        try:
            print(check_file(path, limit))
        except NetdefError as exc:
            problems += exc.problems
    if problems:
        raise NetdefError(problems)
    return 0
