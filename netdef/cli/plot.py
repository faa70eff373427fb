"""Training curves of one or more runs (Caffe's plot_training_log.py): run folders, TensorBoard event
files, netdef logs or Caffe's glog training logs, side by side. The format follows the output's extension."""
from __future__ import annotations

from .. import errors


def add_arguments(parser):
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run folder (runs/<solver>/<N>), event file, or netdef or Caffe log")
    parser.add_argument("-o", "--output", required=True, help="curves.png, .svg, .pdf or .html (SVG inline)")
    parser.add_argument("--metric", help="comma-separated panels, e.g. loss,accuracy,lr "
                                         "(default: loss and every test output)")
    parser.add_argument("--x", default="iter", choices=["iter", "seconds", "epoch"], help="x axis (default iter)")


def run(args) -> int:
    from ..runs import read_run
    from ..runs.plot import write_plot
    metrics = [m.strip() for m in args.metric.split(",") if m.strip()] if args.metric else None
    if args.metric is not None and not metrics:
        raise errors.NetdefError(errors.Problem("--metric names no metric", expected="e.g. loss,accuracy,lr"))
    runs = [read_run(path) for path in args.runs]
    figure = write_plot(runs, args.output, metrics, args.x)
    panels = ", ".join(panel.get_ylabel() for panel in figure.axes)
    print(f"{args.output}: {len(runs)} run(s), panels {panels}, x {args.x}")
    return 0
