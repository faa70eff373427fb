"""A run as rows (Caffe's parse_log.py, in one table): one row per display iteration (phase `train`) and
one per test pass (`test`, `test1`, ... per TEST net), with the iteration, the seconds, the rate and
every output; `write_csv` writes them with a phase column."""
from __future__ import annotations

import csv

from .model import ITERS_PER_SECOND, LEARNING_RATE, TRAIN_LOSS, TRAIN_OUTPUTS

FIXED = ["phase", "iteration", "seconds", "lr"]
TRAIN_COLUMNS = {TRAIN_LOSS: "smoothed_loss", ITERS_PER_SECOND: "iters_per_second"}


def column_of(tag: str) -> tuple:
    """(phase, column) of a tag: train/loss -> (train, smoothed_loss), train_outputs/loss -> (train, loss),
    test1/accuracy -> (test1, accuracy)."""
    if tag in TRAIN_COLUMNS:
        return "train", TRAIN_COLUMNS[tag]
    if tag.startswith(TRAIN_OUTPUTS):
        return "train", tag[len(TRAIN_OUTPUTS):]
    phase, _, blob = tag.partition("/")
    return phase, blob


def rate_at(rates, iteration: int):
    """The rate of the last lr line at or before `iteration` (Caffe logs it on display iterations)."""
    earlier = [point.value for point in rates if point.iteration <= iteration]
    return earlier[-1] if earlier else None


def rows(run) -> tuple:
    """(columns, rows as dicts), train rows before test rows, each in iteration order. An output with
    several elements (Accuracy's per-class top) gets one column per element: blob, blob#1, ..."""
    grouped, columns = {}, list(FIXED)
    for tag, points in run.series.items():
        if tag == LEARNING_RATE:
            continue
        phase, column = column_of(tag)
        seen = {}
        for point in points:
            element = seen.get(point.iteration, 0)
            seen[point.iteration] = element + 1
            name = column if element == 0 else f"{column}#{element}"
            if name not in columns:
                columns.append(name)
            row = grouped.setdefault((phase != "train", phase, point.iteration),
                                     {"phase": phase, "iteration": point.iteration, "seconds": point.seconds})
            row[name] = point.value
            if point.seconds is not None and (row["seconds"] is None or point.seconds < row["seconds"]):
                row["seconds"] = point.seconds
    rates = run.series.get(LEARNING_RATE, [])
    table = [grouped[key] for key in sorted(grouped)]
    for row in table:
        row["lr"] = rate_at(rates, row["iteration"])
    return columns, table


def write_csv(run, output) -> int:
    """Writes the rows to `output` (a path or an open text file); returns how many."""
    columns, table = rows(run)
    if hasattr(output, "write"):
        return _write(output, columns, table)
    with open(output, "w", newline="", encoding="utf-8") as file:
        return _write(file, columns, table)


def _write(file, columns, table) -> int:
    writer = csv.DictWriter(file, columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return len(table)


def _cell(value):
    return f"{value:.6g}" if isinstance(value, float) else ("" if value is None else value)
