"""What training changes besides the weights, in one place: TrainState is what the Solver runs on, what a
snapshot saves (netdef.train.snapshot) and what a resume restores, so that a resumed run continues bit
for bit."""
from __future__ import annotations

from dataclasses import dataclass

import torch


class SmoothedLoss:
    """Caffe's UpdateSmoothedLoss, kept on the device: a ring of the last `size` losses, read back only
    when displayed."""

    def __init__(self, size: int, device):
        self.window = torch.zeros(size, device=device)
        self.count = 0  # losses recorded so far (the window is full at `size`)

    def record(self, loss) -> None:
        self.window[self.count % self.window.numel()] = loss
        self.count += 1

    def value(self) -> float:
        filled = min(self.count, self.window.numel())
        return self.window[:filled].mean().item() if filled else float("nan")

    def state_dict(self) -> dict:
        return {"window": self.window.cpu(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        """A window of another average_loss is dropped: the display starts a new mean."""
        if state["window"].shape == self.window.shape:
            self.window.copy_(state["window"])
            self.count = int(state["count"])


def rng_state() -> dict:
    """torch's global generators (the fillers' and dropout's), CPU and every initialised CUDA device."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """A run between two iterations, besides the weights:

    - `iteration`: completed iterations (Caffe's iter_), the one counter: the lr policy, the test, display
      and snapshot schedule and the update (Adam's bias correction) read it;
    - `updater`: the update history (CaffeUpdater);
    - `train_feed`, `test_feeds`: the readers' positions, orders and augmentation generators;
    - `loss`: the smoothed-loss window;
    - `scaler`: the fp16 gradient scaler (None otherwise) and `skipped_updates`, the iterations whose update
      it skipped (inf or nan gradients; Adam's t counts the updates applied, as torch's Adam under a
      GradScaler);
    - torch's random generators, which are the process's: state_dict() reads them, load_state_dict() sets
      them.

    `state_dict()` gives the snapshot file's keys (iteration, updater, rng, readers, smoothed_loss,
    scaler); `load_state_dict()` takes them back.
    """
    updater: object
    train_feed: object
    test_feeds: list
    loss: SmoothedLoss
    scaler: object = None
    iteration: int = 0
    skipped_updates: int = 0

    @property
    def applied_updates(self) -> int:
        return self.iteration - self.skipped_updates

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "updater": {**self.updater.state_dict(), "iteration": self.applied_updates},
            "rng": rng_state(),
            "readers": {"train": self.train_feed.state_dict(), "test": [feed.state_dict() for feed in self.test_feeds]},
            "smoothed_loss": self.loss.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict) -> list:
        """Restore a snapshot's state; returns a line for each part that could not be (a changed solver type
        starts with empty history, a reader the snapshot lacks from its beginning)."""
        notes = []
        self.iteration = int(state["iteration"])
        saved = state["updater"]
        if saved["type"] != self.updater.type:
            notes.append(f"Solver history not restored: type {saved['type']} in the snapshot, "
                         f"{self.updater.type} now; {self.updater.type} starts with empty history")
            self.skipped_updates = 0
        else:
            self.updater.load_state_dict(saved)
            self.skipped_updates = self.iteration - int(saved["iteration"])
        readers = state["readers"]
        notes += self.train_feed.load_state_dict(readers["train"])
        for feed, feed_state in zip(self.test_feeds, readers["test"]):
            notes += feed.load_state_dict(feed_state)
        self.loss.load_state_dict(state["smoothed_loss"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        return notes
