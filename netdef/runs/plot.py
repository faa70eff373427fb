"""Curves of runs (`netdef plot`): one panel per metric; train curves as lines (the displayed loss, which the
solver averaged over its `average_loss` iterations, as Caffe's display does), test outputs as points; the
legend names each run by its folder and the solver fields that differ between the runs."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import NetdefError, Problem
from .model import LEARNING_RATE, TRAIN_LOSS, TRAIN_OUTPUTS, is_test_tag

FORMATS = (".png", ".svg", ".pdf", ".html")
X_AXES = {"iter": "iteration", "seconds": "seconds", "epoch": "epoch"}
LOG_SPAN = 20  # a loss or rate panel spanning more than this factor has a log axis
LEGEND_FIELDS = 4  # differing solver fields named in a legend entry, at most


@dataclass
class Curve:
    run: object
    tag: str
    xs: list
    ys: list

    @property
    def is_test(self) -> bool:
        return is_test_tag(self.tag)


def metric_tags(run, metric: str) -> list:
    """The tags a metric names: `loss` is the displayed train loss and each test net's loss, `lr` the rate,
    any other name the test outputs (and train outputs) of that blob."""
    if metric == "lr":
        return [LEARNING_RATE] if LEARNING_RATE in run.series else []
    tags = [TRAIN_LOSS] if metric == "loss" and TRAIN_LOSS in run.series else []
    if metric != "loss":
        tags += [tag for tag in run.series if tag == TRAIN_OUTPUTS + metric]
    return tags + [tag for tag in run.test_tags() if tag.split("/", 1)[1] == metric]


def default_metrics(runs) -> list:
    """loss, then every test output of any run (accuracy, ...)."""
    metrics = ["loss"]
    for run in runs:
        for tag in run.test_tags():
            blob = tag.split("/", 1)[1]
            if blob not in metrics:
                metrics.append(blob)
    return metrics


def x_values(run, points, x: str) -> list:
    if x == "iter":
        return [point.iteration for point in points]
    if x == "seconds":
        if any(point.seconds is None for point in points):
            raise NetdefError(Problem(f"{run.name} does not tell the time of its points", expected="--x iter"))
        return [point.seconds for point in points]
    if not run.epoch_size or not run.samples_per_iteration:
        raise NetdefError(Problem(f"{run.name} does not tell its epoch size", expected="--x iter or --x seconds",
                                  hint="netdef's run folders and logs carry it in their 'Epoch: N samples' line"))
    return [point.iteration * run.samples_per_iteration / run.epoch_size for point in points]


def curves(runs, metrics, x: str = "iter") -> dict:
    """metric -> [Curve]; a metric that no run has is an error naming what the runs have."""
    found = {}
    for metric in metrics:
        found[metric] = [Curve(run, tag, x_values(run, run.series[tag], x), [p.value for p in run.series[tag]])
                         for run in runs for tag in metric_tags(run, metric)]
        if not found[metric]:
            have = sorted({tag.split("/", 1)[1] for run in runs for tag in run.series} | {"lr"})
            raise NetdefError(Problem(f"no run has the metric '{metric}'", expected=", ".join(have)))
    return found


def differing_fields(runs) -> dict:
    """run -> 'base_lr 0.01, type Adam': the solver fields whose values differ between runs that have one."""
    solvers = [run.solver for run in runs if run.solver]
    if len(solvers) < 2:
        return {}
    keys = [key for key in solvers[0] if any(s.get(key) != solvers[0].get(key) for s in solvers[1:])]
    keys += [key for s in solvers[1:] for key in s if key not in solvers[0] and key not in keys]
    return {id(run): ", ".join(f"{key} {run.solver.get(key)}" for key in keys[:LEGEND_FIELDS])
            for run in runs if run.solver}


def label(curve: Curve, differences: dict) -> str:
    fields = differences.get(id(curve.run))
    what = "train" if curve.tag in (TRAIN_LOSS, LEARNING_RATE) or curve.tag.startswith(TRAIN_OUTPUTS) \
        else curve.tag.split("/", 1)[0]
    return f"{curve.run.name}{f' ({fields})' if fields else ''}: {what}"


def figure_of(runs, metrics=None, x: str = "iter"):
    """A matplotlib Figure: a panel per metric, a colour per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams["svg.fonttype"] = "none"  # SVG text stays text
    found = curves(runs, metrics or default_metrics(runs), x)
    differences = differing_fields(runs)
    colours = {id(run): f"C{i % 10}" for i, run in enumerate(runs)}
    figure, panels = plt.subplots(len(found), 1, figsize=(8, 2.6 * len(found) + 0.6), layout="constrained",
                                  squeeze=False, sharex=True)
    for panel, (metric, metric_curves) in zip(panels[:, 0], found.items()):
        for curve in metric_curves:
            style = dict(marker="o", markersize=4, linestyle=":", linewidth=0.8) if curve.is_test \
                else dict(linewidth=1.3)
            panel.plot(curve.xs, curve.ys, color=colours[id(curve.run)], label=label(curve, differences), **style)
        panel.set_ylabel(metric)
        values = [y for c in metric_curves for y in c.ys if math.isfinite(y)]
        if metric in ("loss", "lr") and values and min(values) > 0 and max(values) > LOG_SPAN * min(values):
            panel.set_yscale("log")  # a loss falling by decades
        panel.grid(True, alpha=0.3)
        panel.legend(fontsize=7, loc="best")
    panels[-1, 0].set_xlabel(X_AXES[x])
    return figure


def svg_text(figure) -> str:
    """The figure as SVG markup, without the XML prolog (to inline it in a page)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def html_page(title: str, body: str) -> str:
    from html import escape
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:1em}svg{max-width:100%;height:auto}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>\n")


def write_plot(runs, output, metrics=None, x: str = "iter"):
    """Draws the runs' curves into `output` (.png, .svg, .pdf, or .html: one page with the SVG inline)."""
    import matplotlib.pyplot as plt
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise NetdefError(Problem(f"unknown image format for {output}", expected=" or ".join(FORMATS),
                                  found=suffix or "no extension"))
    figure = figure_of(runs, metrics, x)
    try:
        if suffix == ".html":
            title = "Training curves: " + ", ".join(run.name for run in runs)
            Path(output).write_text(html_page(title, svg_text(figure)), encoding="utf-8")
        else:
            figure.savefig(output, dpi=110)
    finally:
        plt.close(figure)
    return figure
