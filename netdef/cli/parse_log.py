"""Caffe's tools/extra/parse_log.py: a training log (netdef's or Caffe's, or a run folder) as one CSV
table, one row per display iteration (phase `train`) and per test pass (`test`, `test1`, ...)."""
from __future__ import annotations

import sys


def add_arguments(parser):
    parser.add_argument("log", help="a netdef or Caffe training log, or a netdef run folder")
    parser.add_argument("-o", "--output", help="CSV file to write (default: standard output)")


def run(args) -> int:
    from ..runs import read_run
    from ..runs.table import write_csv
    run_ = read_run(args.log)
    count = write_csv(run_, args.output or sys.stdout)
    if args.output:
        print(f"{args.output}: {count} rows from {run_.kind} {args.log}")
    return 0
