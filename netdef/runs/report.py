"""`netdef report`: one self-contained HTML page (no network: the curves and the drawing are inline) of a
run, or of two side by side with the differences of their configurations. What a run folder holds is read
back: solver.yaml and the nets as resolved, the log file (snapshots, peak memory), the events (curves)."""
from __future__ import annotations

import difflib
import re
import statistics
import tempfile
from html import escape
from pathlib import Path

from ..errors import NetdefError
from .model import ITERS_PER_SECOND
from .plot import figure_of, svg_text

SNAPSHOT = re.compile(r"Snapshotting to (?:binary proto file )?(\S+)")
PEAK_MEMORY = re.compile(r"Peak memory: (.*)")
RESOLVED_FROM = re.compile(r"# .* with its blocks expanded; relative paths are relative to (.*)$")  # train/run_folder.py
STYLE = """body{font-family:sans-serif;margin:1em;color:#222}h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.4em}
.runs{display:grid;gap:1em;grid-template-columns:repeat(var(--runs),minmax(0,1fr))}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
pre{background:#f6f6f6;padding:6px;overflow:auto;max-height:30em;font-size:12px}
iframe{width:100%;height:640px;border:1px solid #ccc}svg{max-width:100%;height:auto}
.add{color:#0a6b0a}.del{color:#a31515}.missing{color:#888}"""


def net_file(run) -> Path | None:
    """The TRAIN net as the run folder keeps it: <stem of the solver's net>.yaml."""
    written = (run.solver or {}).get("net") or (run.solver or {}).get("train_net")
    if run.folder is None or not written:
        return None
    path = run.folder / (Path(str(written)).stem + ".yaml")
    return path if path.is_file() else None


def test_figures(run) -> list:
    """(tag, final iteration, final value, best iteration, best value): best is the lowest of a loss, else
    the highest."""
    rows = []
    for tag in run.test_tags():
        points = run.series[tag]
        pick = min if "loss" in tag else max
        best = pick(points, key=lambda point: point.value)
        rows.append((tag, points[-1].iteration, points[-1].value, best.iteration, best.value))
    return rows


def facts(run) -> list:
    """(what, value) rows: the kind of source, iterations, speed, peak memory."""
    rows = [("read from", run.kind)]
    iterations = [p.iteration for points in run.series.values() for p in points]
    if iterations:
        rows.append(("last iteration", str(max(iterations))))
    speeds = [p.value for p in run.series.get(ITERS_PER_SECOND, [])]
    if speeds:
        rows.append(("iterations/s (median of display lines)", f"{statistics.median(speeds):.4g}"))
    peak = [m.group(1) for line in run.log_lines if (m := PEAK_MEMORY.search(line))]
    rows.append(("peak memory", peak[-1] if peak else "not recorded (a log without netdef's closing line)"))
    return rows


def snapshots(run) -> list:
    """(path as logged, whether it is still there) of every snapshot the log says it wrote."""
    paths = [m.group(1) for line in run.log_lines if (m := SNAPSHOT.search(line))]
    return [(path, Path(path).is_file()) for path in dict.fromkeys(paths)]


def html_table(header, rows) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def resolved_net(path: Path, run_folder: Path):
    """The run folder's copy of a net, read as the run read it: the copy keeps the paths of the original
    (its first line names the original's folder, relative to where the run started), so they are rebased
    from there to the copy's folder. Where that folder is not found (the run started elsewhere, the files
    moved), the copy is read as it is."""
    import dataclasses
    from ..api import Net, read_net
    from ..front.expand import rebased_layers
    net = read_net(path)
    with path.open(encoding="utf-8") as stream:
        match = RESOLVED_FROM.match(stream.readline().rstrip("\n"))
    if not match:
        return net
    written = Path(match.group(1))
    # relative to the folder the run started in: here, or above the default run folder runs/<stem>/<N>
    candidates = [written] if written.is_absolute() else [written, run_folder.parent.parent.parent / written]
    origin = next((folder for folder in candidates if folder.is_dir()), None)
    if origin is None or origin.resolve() == path.parent.resolve():
        return net
    layers = rebased_layers(net.expanded.layers, origin.resolve(), path.parent.resolve())
    return Net(dataclasses.replace(net.expanded, layers=layers), path)


def summary_and_drawing(run) -> tuple:
    """(summary table text, the drawing page) of the run's TRAIN net, or a line saying why not."""
    from ..draw import build_drawing, write_drawing
    from ..tools.summary import summary_table
    path = net_file(run)
    if path is None:
        return None, None
    try:
        net = resolved_net(path, run.folder)
        summary = summary_table(net.info("TRAIN"))
        with tempfile.TemporaryDirectory(prefix="netdef-report-") as folder:
            page = Path(folder) / "net.html"
            write_drawing(build_drawing(net), page, "html")
            drawing = page.read_text(encoding="utf-8")
    except NetdefError as exc:
        return f"{path} cannot be read back: {exc}", None
    return summary, drawing


def config_texts(run) -> dict:
    """name -> text of the resolved solver and TRAIN net in the run folder."""
    texts = {}
    for path in filter(None, [run.folder / "solver.yaml" if run.folder else None, net_file(run)]):
        if path.is_file():
            texts[path.name] = path.read_text(encoding="utf-8")
    return texts


def run_column(run) -> str:
    parts = [f"<h2>{escape(run.name)}</h2>", html_table(["", ""], facts(run))]
    figures = test_figures(run)
    parts.append("<h3>Test outputs</h3>" + (html_table(["output", "final at", "final", "best at", "best"],
                 [(t, i, f"{v:.6g}", bi, f"{bv:.6g}") for t, i, v, bi, bv in figures]) if figures else
                 "<p class=missing>no test outputs</p>"))
    listed = snapshots(run)
    parts.append("<h3>Snapshots</h3>" + (html_table(["file", "present"], [(p, "yes" if there else "no")
                 for p, there in listed]) if listed else "<p class=missing>none written</p>"))
    summary, drawing = summary_and_drawing(run)
    parts.append("<h3>Summary (TRAIN)</h3>" + (f"<pre>{escape(summary)}</pre>" if summary else
                 "<p class=missing>no resolved net: not a netdef run folder</p>"))
    if drawing:
        parts.append(f"<h3>Net</h3><iframe title=\"net drawing\" srcdoc=\"{escape(drawing, quote=True)}\"></iframe>")
    for name, text in config_texts(run).items():
        parts.append(f"<details><summary>{escape(name)} as resolved</summary><pre>{escape(text)}</pre></details>")
    return "<div class=run>" + "".join(parts) + "</div>"


def config_diff(first, second) -> str:
    """Unified diffs of the solver and net texts of two runs, or a line saying they are the same."""
    a, b = config_texts(first), config_texts(second)
    if not a or not b:
        return "<p class=missing>only run folders keep their configuration</p>"
    lines = []
    for (name_a, text_a), (name_b, text_b) in zip(a.items(), b.items()):
        lines += list(difflib.unified_diff(text_a.splitlines(), text_b.splitlines(), f"{first.name}/{name_a}",
                                           f"{second.name}/{name_b}", lineterm="", n=1))
    if not lines:
        return "<p>the solvers and nets are the same</p>"
    marked = [f"<span class={'add' if l[:1] == '+' else 'del'}>{escape(l)}</span>" if l[:1] in "+-" and l[:3] not in
              ("+++", "---") else escape(l) for l in lines]
    return "<pre>" + "\n".join(marked) + "</pre>"


def report_page(runs) -> str:
    """The page: curves of all runs, then one column per run, then (two runs) their configuration diff."""
    import matplotlib.pyplot as plt
    figure = figure_of(runs)
    try:
        curves = svg_text(figure)
    finally:
        plt.close(figure)
    title = "netdef report: " + " vs ".join(run.name for run in runs)
    body = [f"<h1>{escape(title)}</h1>", "<h2>Curves</h2>", f"<div class=curves>{curves}</div>"]
    if len(runs) == 2:
        body += ["<h2>Configuration differences</h2>", config_diff(*runs)]
    body.append(f"<div class=runs style=\"--runs:{len(runs)}\">" + "".join(run_column(run) for run in runs) + "</div>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
