"""Plot a solver's learning-rate schedule (lr_policy) over its iterations: reads the solver file
alone, builds no net and reads no data. The image format follows the output's extension (.png, .svg,
.pdf)."""
from pathlib import Path

from ..errors import NetdefError, Problem

FORMATS = (".png", ".svg", ".pdf")


def add_arguments(parser):
    parser.add_argument("solver", help="solver file (.yaml)")
    parser.add_argument("-o", "--output", required=True, help="image to write: lr.png, lr.svg or lr.pdf")
    parser.add_argument("--iterations", type=int, help="iterations to plot (default: the solver's max_iter)")
    parser.add_argument("--log", action="store_true", help="logarithmic learning-rate axis")


def plot_schedule(config, iterations: int, output, title: str, log: bool = False):
    """Draws lr(iteration) for iterations 0..iterations-1 into `output` with matplotlib (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..train.lr_policy import schedule
    rates = schedule(config, iterations)
    plt.rcParams["svg.fonttype"] = "none"  # SVG text stays text: searchable and selectable
    figure, axes = plt.subplots(figsize=(7, 4), layout="constrained")
    axes.plot(range(iterations), rates, drawstyle="steps-post", color="#1f6fb2", linewidth=1.5)
    axes.set(xlabel="iteration", ylabel="learning rate", xlim=(0, max(iterations - 1, 1)))
    axes.set_title(title, fontsize=10)
    if log:
        axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return rates


def _policy_text(config) -> str:
    """`lr_policy inv: base_lr 0.01, gamma 0.0001, power 0.75`: the policy and the fields it reads."""
    from ..train.lr_policy import LR_POLICIES
    needs = LR_POLICIES[config.lr_policy].needs
    details = ", ".join(f"{name} {_show(getattr(config, name))}" for name in needs)
    return f"lr_policy {config.lr_policy}: base_lr {config.base_lr}" + (f", {details}" if details else "")


def _show(value) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def run(args) -> int:
    from ..train.config import load_solver
    solver = load_solver(args.solver)
    iterations = args.iterations if args.iterations is not None else solver.max_iter
    if iterations < 1:
        raise NetdefError(Problem("nothing to plot: the schedule has no iterations",
                                  solver.pos("max_iter"), expected="--iterations N (N >= 1) or max_iter >= 1",
                                  found=str(iterations)))
    if Path(args.output).suffix.lower() not in FORMATS:
        raise NetdefError(Problem(f"unknown image format for {args.output}", expected=" or ".join(FORMATS)))
    rates = plot_schedule(solver, iterations, args.output, f"{Path(args.solver).name}\n{_policy_text(solver)}", args.log)
    print(f"{args.output}: {iterations} iterations, lr {rates[0]:g} at 0 to {rates[-1]:g} at {iterations - 1}")
    return 0
