"""One entry point for every kind of run: a run folder, a TensorBoard event file, or a log file."""
from __future__ import annotations

from pathlib import Path

from ..errors import NetdefError, Problem
from ..train.run_folder import LOG_FILE
from .logs import parse_log
from .model import Point, Run

EVENTS = "events.out.tfevents.*"


def read_run(path) -> Run:
    """A run folder (events for the curves; its log for the epoch size and anything the events lack), an
    event file, or a netdef or Caffe log file."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path)
    if not path.is_file():
        raise NetdefError(Problem(f"no run at {path}", expected="a run folder (runs/<solver>/<N>), a TensorBoard "
                                  "event file, or a netdef or Caffe training log", found="nothing there"))
    if path.name.startswith("events.out.tfevents."):
        run = Run(path, "TensorBoard events")
        read_events(run, [path])
        return run
    return parse_log(read_text(path), path)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise NetdefError(Problem(f"cannot read {path}: {exc.strerror}")) from None


def read_folder(folder: Path) -> Run:
    events = sorted(folder.glob(EVENTS))
    log = folder / LOG_FILE
    if not events and not log.is_file():
        raise NetdefError(Problem(f"{folder} is not a netdef run folder",
                                  expected=f"TensorBoard event files or {LOG_FILE} in it", found="neither",
                                  hint="netdef train writes one run folder per run under runs/<solver>/"))
    run = parse_log(read_text(log), folder, "run folder") if log.is_file() else Run(folder, "run folder")
    if events:
        run.series = {}  # the events are exact where the log rounds to 6 digits
        read_events(run, events)
    run.folder = folder
    run.solver = read_solver(folder / "solver.yaml")
    return run


def read_events(run: Run, files) -> None:
    """Scalars of event files (TensorBoard's own reader; points a later run purged are dropped by it),
    seconds counted from the earliest point."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    scalars = {}
    for file in files:
        accumulator = EventAccumulator(str(file), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            kept = [e for e in scalars.get(tag, []) if e.step < min(x.step for x in accumulator.Scalars(tag))]
            scalars[tag] = kept + list(accumulator.Scalars(tag))
    if not scalars:
        return
    start = min(event.wall_time for events in scalars.values() for event in events)
    for tag, events in scalars.items():
        run.series[tag] = [Point(e.step, e.wall_time - start, e.value) for e in events]


def read_solver(path: Path) -> dict | None:
    import yaml
    if not path.is_file():
        return None
    try:
        solver = yaml.safe_load(read_text(path))
    except yaml.YAMLError:
        return None
    return solver if isinstance(solver, dict) else None
