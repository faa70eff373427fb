"""The run folder of `netdef train` (`log_dir`): the solver and its nets as resolved, and TensorBoard events."""
from __future__ import annotations

from pathlib import Path

LOG_FILE = "train.log"  # the whole log, glog-prefixed (netdef/train/log.py), read by netdef/runs


def run_folder_path(config) -> Path:
    """`log_dir`, relative to the solver file; unset, runs/<solver file stem> in the current folder."""
    return config.resolve(config.log_dir) if config.log_dir else Path("runs") / config.path.stem


class RunFolder:
    """`open()` writes solver.yaml (every field with its default, random_seed as used) and each net with its
    blocks expanded, and opens the TensorBoard writer; `scalar()` adds a point; `close()` closes it. A fresh
    run supersedes earlier curves in the folder (purge from step 0); a resumed run drops those after its
    iteration."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.writer = None

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
