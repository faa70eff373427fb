"""What a run is once read: series of points under TensorBoard's tags, and where they came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TRAIN_LOSS = "train/loss"  # the displayed loss: averaged over the solver's average_loss iterations
LEARNING_RATE = "train/lr"
ITERS_PER_SECOND = "train/iters_per_second"
TRAIN_OUTPUTS = "train_outputs/"  # + blob: the current batch's output on display iterations


@dataclass(frozen=True)
class Point:
    iteration: int
    seconds: float | None  # since the run's first point; None where the source does not tell
    value: float


def test_tag(net_index: int, blob: str) -> str:
    """`test/accuracy` for the first TEST net, `test1/accuracy` for the second, as the run folder's events."""
    return f"{'test' if net_index == 0 else f'test{net_index}'}/{blob}"


def is_test_tag(tag: str) -> bool:
    return tag.split("/", 1)[0].startswith("test")


@dataclass
class Run:
    """One run: `series` maps a tag to its points in the order written; `kind` says what was read
    ("run folder", "netdef log", "Caffe log"); `folder` is the run folder (None for a bare log), `solver`
    its solver.yaml as a dict (the legend names the fields that differ between runs), `samples_per_iteration`
    and `epoch_size` (from the log's Epoch line) give the epoch axis."""
    path: Path
    kind: str
    series: dict = field(default_factory=dict)
    folder: Path | None = None
    solver: dict | None = None
    samples_per_iteration: int | None = None
    epoch_size: int | None = None
    log_lines: list = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run's folder, as given (a log file: its path)."""
        return str(self.path)

    def add(self, tag: str, point: Point) -> None:
        self.series.setdefault(tag, []).append(point)

    def test_tags(self) -> list:
        return [tag for tag in self.series if is_test_tag(tag)]
