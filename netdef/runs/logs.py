"""Training logs: Caffe's glog output (`I1202 07:25:10.403 22993 solver.cpp:218] Iteration 100 ...`),
netdef's log file in the run folder (the same prefix, so Caffe's tools/extra/parse_log.py reads it too)
and netdef's terminal output (no prefix). The line patterns are those of Caffe's parse_log.py.

Seconds come from the glog timestamps; a log without them (netdef's terminal output) adds up the
display lines' `Ns/100 iters` lapses, so a point's seconds are those of the last display line before it."""
from __future__ import annotations

import re
from datetime import datetime

from .model import ITERS_PER_SECOND, LEARNING_RATE, TRAIN_LOSS, TRAIN_OUTPUTS, Point, Run, test_tag

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)"
GLOG = re.compile(r"^[IWEF](\d{4}|\d{8}) (\d\d:\d\d:\d\d\.\d+)\s+\d+\s+\S+:\d+\] ?(.*)$")
DISPLAY = re.compile(rf"Iteration (\d+) \({NUMBER} iter/s, {NUMBER}s/\d+ iters\), loss = {NUMBER}")
FINAL_LOSS = re.compile(rf"Iteration (\d+), loss = {NUMBER}$")  # Caffe's closing display line
RATE = re.compile(rf"Iteration (\d+), lr = {NUMBER}")
TESTING = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
OUTPUT = re.compile(rf"(Train|Test) net output #\d+: (\S+) = {NUMBER}")
EPOCH = re.compile(r"Epoch: (\d+) samples, (\d+) per iteration")


def glog_time(date: str, clock: str) -> datetime:
    """glog's date is MMDD, or YYYYMMDD in newer glog (the year matters only across New Year)."""
    stamp = date if len(date) == 8 else "2000" + date
    return datetime.strptime(f"{stamp} {clock}", "%Y%m%d %H:%M:%S.%f")


def is_caffe_log(lines) -> bool:
    return any("solver.cpp" in line or "caffe.cpp" in line for line in lines[:200])


def parse_log(text: str, path, kind: str | None = None) -> Run:
    """A Run from a log's text: train loss, rate, iterations/s and outputs on display lines, test outputs."""
    lines = text.splitlines()
    run = Run(path, kind or ("Caffe log" if is_caffe_log(lines) else "netdef log"), log_lines=lines)
    start, elapsed, iteration, test_net = None, 0.0, 0, None
    for raw in lines:
        stamp = GLOG.match(raw)
        line = stamp.group(3) if stamp else raw.strip()
        if stamp:
            now = glog_time(stamp.group(1), stamp.group(2))
            start = start or now
            elapsed = (now - start).total_seconds()
        if match := DISPLAY.search(line):
            iteration, test_net = int(match.group(1)), None
            if not stamp:
                elapsed += float(match.group(3))
            run.add(TRAIN_LOSS, Point(iteration, elapsed, float(match.group(4))))
            if float(match.group(2)) > 0:
                run.add(ITERS_PER_SECOND, Point(iteration, elapsed, float(match.group(2))))
        elif match := FINAL_LOSS.search(line):
            iteration, test_net = int(match.group(1)), None
            run.add(TRAIN_LOSS, Point(iteration, elapsed, float(match.group(2))))
        elif match := RATE.search(line):
            run.add(LEARNING_RATE, Point(int(match.group(1)), elapsed, float(match.group(2))))
        elif match := TESTING.search(line):
            iteration, test_net = int(match.group(1)), int(match.group(2))
        elif match := OUTPUT.search(line):
            phase, blob, value = match.group(1), match.group(2), float(match.group(3))
            tag = TRAIN_OUTPUTS + blob if phase == "Train" else test_tag(test_net or 0, blob)
            run.add(tag, Point(iteration, elapsed, value))
        elif match := EPOCH.search(line):
            run.epoch_size, run.samples_per_iteration = int(match.group(1)), int(match.group(2))
    return run
