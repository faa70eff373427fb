"""The run folders of `netdef train`: one per run, `<log_dir>/<N>/` (default `runs/<solver stem>/<N>/`),
holding the solver and its nets as resolved, the whole log (train.log) and the TensorBoard events. A fresh
run takes the next N; a resumed run continues in the folder of the run that wrote its snapshot."""
from __future__ import annotations

import re
from pathlib import Path

LOG_FILE = "train.log"  # the whole log, glog-prefixed (netdef/train/log.py), read by netdef/runs


def run_folder_path(config) -> Path:
    """Where a solver's run folders go: `log_dir`, relative to the solver file; unset, runs/<solver file
    stem> in the current folder."""
    return config.resolve(config.log_dir) if config.log_dir else Path("runs") / config.path.stem


def numbered_runs(base: Path) -> list:
    """The run folders under `base` (named 1, 2, ...), in order."""
    if not base.is_dir():
        return []
    return sorted((p for p in base.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def folder_that_wrote(base: Path, snapshot: str) -> Path | None:
    """The newest run folder under `base` whose log says it wrote a snapshot of that file name."""
    line = re.compile(rf"\] Snapshotting to (.*[/\\])?{re.escape(snapshot)}( |$)", re.M)
    for folder in reversed(numbered_runs(base)):
        log = folder / LOG_FILE
        if log.is_file() and line.search(log.read_text(encoding="utf-8", errors="replace")):
            return folder
    return None


class RunFolder:
    """One run's folder under `base`, chosen when `path` is first read: the next number, or after
    `resume_from(snapshot)` the folder of the run that wrote it (a new one if none did). `open()` writes
    solver.yaml (every field with its default, random_seed as used) and each net with its blocks expanded,
    and opens the TensorBoard writer; `scalar()` adds a point; `close()` closes it. A resumed run drops the
    folder's points after its iteration."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.resumed_snapshot = None
        self._path = None
        self.writer = None

    def resume_from(self, snapshot) -> None:
        self.resumed_snapshot = Path(snapshot).name

    @property
    def path(self) -> Path:
        if self._path is None:
            found = folder_that_wrote(self.base, self.resumed_snapshot) if self.resumed_snapshot else None
            runs = numbered_runs(self.base)
            self._path = found or self.base / str(int(runs[-1].name) + 1 if runs else 1)
        return self._path

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    def open(self, config, seed: int, nets, iteration: int) -> None:
        """`nets`: (path, expanded YAML text) of every net file, the TRAIN net's first."""
        import yaml
        from torch.utils.tensorboard import SummaryWriter
        self.path.mkdir(parents=True, exist_ok=True)
        solver = dict(config.as_dict(), random_seed=seed)
        (self.path / "solver.yaml").write_text(
            f"# {config.path} resolved: every field with its default, random_seed as used; paths are\n"
            f"# relative to {config.path.parent}\n" + yaml.safe_dump(solver, sort_keys=False), encoding="utf-8")
        written = set()
        for path, text in nets:
            name = path.stem + ".yaml"
            if name not in written:
                written.add(name)
                (self.path / name).write_text(f"# {path} with its blocks expanded; relative paths are relative to "
                                              f"{path.parent}\n" + text, encoding="utf-8")
        self.writer = SummaryWriter(str(self.path), purge_step=iteration)

    def scalar(self, tag: str, value: float, iteration: int) -> None:
        """A TensorBoard point (none before `open()`: Solver.step alone writes no events)."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
