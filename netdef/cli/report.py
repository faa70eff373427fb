"""One self-contained HTML page of a training run (no network: curves and drawing inline): the resolved
solver and net, the summary table, the drawing, the curves, final and best test figures, iterations/s,
peak memory and the snapshots; with a second run, both side by side and the differences of their configs."""
from __future__ import annotations

from pathlib import Path

from ..errors import NetdefError, Problem


def add_arguments(parser):
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folder (or a netdef or Caffe log); two to compare")
    parser.add_argument("-o", "--output", required=True, help="the page to write (report.html)")


def run(args) -> int:
    from ..runs import read_run
    from ..runs.report import report_page
    if len(args.runs) > 2:
        raise NetdefError(Problem("netdef report shows one run or two side by side", expected="RUN [RUN_B]",
                                  found=f"{len(args.runs)} runs", hint="netdef plot draws the curves of any number"))
    runs = [read_run(path) for path in args.runs]
    Path(args.output).write_text(report_page(runs), encoding="utf-8")
    print(f"{args.output}: report of {' and '.join(args.runs)}")
    return 0
