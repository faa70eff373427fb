"""Validate net and solver files and infer every shape; prints one line per file, or every problem
found (FILE:LINE:COL: ...) and exits with status 2."""
from pathlib import Path

from .. import expand_file, summarize
from ..api import net_state
from ..errors import NetdefError, Problem
from ..front.graph import build_graph
from ..front.load import load_yaml


def add_arguments(parser):
    parser.add_argument("files", nargs="+", help="net or solver files")


def is_solver(path) -> bool:
    data, _ = load_yaml(path)
    return isinstance(data, dict) and "layers" not in data and any(k in data for k in ("net", "train_net", "base_lr"))


def net_phases(path):
    """Summaries of the TRAIN and TEST phases that hold layers. Both phases are checked before any
    problem is raised; a problem both phases share (a layer in both) is reported once."""
    expanded = expand_file(path)
    infos, problems = [], []
    for phase in ("TRAIN", "TEST"):
        try:
            info = summarize(build_graph(expanded, net_state(phase)))
        except NetdefError as exc:
            reported = {problem.pos for problem in problems}
            problems += [problem for problem in exc.problems if problem.pos is None or problem.pos not in reported]
            continue
        if info.layers:
            infos.append(info)
    if problems:
        raise NetdefError(problems)
    return infos


def check_net(path) -> str:
    infos = net_phases(path)
    parts = [f"{info.graph.state.phase}: {len(info.layers)} layers, {info.total_params:,} params, "
             f"{info.total_macs:,} MACs" for info in infos]
    return f"{path}: ok ({'; '.join(parts)})"


def check_solver(path) -> str:
    from ..train.config import load_solver
    solver = load_solver(path)
    nets = [solver.net or solver.train_net] + list(solver.test_net or [])
    for net in nets:
        target = solver.resolve(net)
        if not Path(target).exists():
            raise NetdefError(Problem(f"net file not found: {net}", solver.origin.pos(("net",)),
                                      expected=f"a file at {target}"))
        net_phases(target)
    return f"{path}: ok (solver {solver.type}, lr_policy {solver.lr_policy}, {solver.max_iter} iterations, net {nets[0]})"


def run(args) -> int:
    problems = []
    for path in args.files:
        try:
            print(check_solver(path) if is_solver(path) else check_net(path))
        except NetdefError as exc:
            problems += exc.problems
    if problems:
        raise NetdefError(problems)
    return 0
