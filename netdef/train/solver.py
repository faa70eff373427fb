"""The solver: Caffe's Solver::Solve and Solver::Step on compiled nets (caffe.md §c.3, §c.5, §d, §i).

    config = load_solver("solvers/lenet_solver.yaml")
    solver = Solver(config)
    solver.solve()

One iteration: test when due (on TEST nets sharing the TRAIN net's weights), iter_size forward/backward
passes whose gradients add up, the smoothed loss, Caffe's log lines on display iterations, one update
(netdef.updates) at the rate of netdef.lr_policy, snapshots when due and on signals. Between display and
test iterations nothing is read back from the device: the loss window stays a device tensor.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..api import compile_info, expand_file, summarize
from ..front.expand import dump_net
from ..build import module_name, weighted_loss
from ..errors import NetdefError, Problem
from ..layers.base import numel
from .lr_policy import learning_rate
from ..data.readers import DataFeed
from .snapshot import (FORMAT, VERSION, check_writable, config_differences, copy_weights, load_snapshot,
                       load_weights, save_atomic, snapshot_path, snapshot_prefix, weights_table)
from .signals import SignalActions
from .updates import CaffeUpdater

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---- setup helpers ----

def resolve_device(name: str, pos=None) -> torch.device:
    """`auto` is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise NetdefError(Problem(f"unknown device '{name}'", pos, expected="auto, cpu, cuda or cuda:N"))
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise NetdefError(Problem(f"device '{name}' is not available", pos,
                                      expected=f"one of {count} CUDA devices" if count else "cpu (this machine "
                                      "has no CUDA device)"))
    return device


def resolve_seed(random_seed: int) -> int:
    """Caffe: a negative random_seed means a seed from the clock."""
    return random_seed if random_seed >= 0 else time.time_ns() % (2 ** 31)


@dataclass
class PhaseNet:
    """One compiled net of one phase with the readers that feed it."""
    written: str  # the net's path as the solver file gives it (relative to it): names the net in snapshots
    path: Path
    info: object  # NetInfo
    net: torch.nn.Module
    feed: DataFeed
    layer_names: dict  # submodule name -> layer name
    resolved_yaml: str  # the net with its blocks expanded


def memory_format(device: torch.device, precision: str):
    """Channels-last (NHWC) weights: measured 25-30% faster for LeNet on CPU (oneDNN; tools/bench_lenet.py);
    on CUDA it pays with tensor cores (bf16/fp16), while fp32 keeps PyTorch's default (not measured here)."""
    if device.type == "cpu" or precision != "fp32":
        return torch.channels_last
    return torch.contiguous_format


def build_phase_net(written, path, phase, seed, device, level=0, stages=(), share_with=None,
                    layout=torch.contiguous_format) -> PhaseNet:
    expanded = expand_file(path)
    info = summarize(path, phase, level, stages)
    net = compile_info(info, share_with).to(device, memory_format=layout)
    feed = DataFeed(info.graph, net.input_names, phase, seed, device)
    layer_names = {module_name(spec.name): spec.name for spec in info.graph.layers}
    return PhaseNet(str(written), Path(os.path.normpath(path)), info, net, feed, layer_names, dump_net(expanded))


def setup_lines(phase_net: PhaseNet) -> list:
    """The net as Caffe's Net::Init logs it: every layer's top shapes, loss weights and the running
    total of top memory (4-byte elements, every top counted, in-place ones too, as Caffe counts)."""
    lines, memory = [], 0
    for spec, row in zip(phase_net.info.graph.layers, phase_net.info.layers):
        lines.append(f"Setting up {row.name}")
        for shape, weight in zip(row.shapes, spec.loss_weights):
            count = numel(shape)
            lines.append(f"Top shape: {''.join(f'{d} ' for d in shape)}({count})")
            if weight:
                lines.append(f"    with loss weight {weight:g}")
            memory += count
        lines.append(f"Memory required for data: {memory * 4}")
    return lines


def output_values(outputs: dict, loss_weights: dict) -> list:
    """(blob, value, loss weight) for every element of every output blob, in output order (one read-back)."""
    flat = [(blob, value.detach().float().flatten()) for blob, value in outputs.items()]
    if not flat:
        return []
    values = torch.cat([v for _, v in flat]).tolist()
    rows, start = [], 0
    for blob, tensor in flat:
        for value in values[start:start + tensor.numel()]:
            rows.append((blob, value, loss_weights.get(blob, 0.0)))
        start += tensor.numel()
    return rows


def output_text(blob: str, value: float, weight: float) -> str:
    """`loss = 0.21 (* 1 = 0.21 loss)`: an output, and its contribution when it carries a loss weight."""
    note = f" (* {weight:g} = {value * weight:.6g} loss)" if weight else ""
    return f"{blob} = {value:.6g}{note}"


def output_line(kind: str, index: int, blob: str, value: float, weight: float) -> str:
    """`    Train net output #0: loss = 0.21 (* 1 = 0.21 loss)`, as Caffe writes it."""
    return f"    {kind} net output #{index}: {output_text(blob, value, weight)}"


class _ScaledStep:
    """torch's GradScaler drives optimizers; this shows it the updater's parameters and step (fp16 only)."""

    def __init__(self, updater: CaffeUpdater):
        self.updater = updater
        self.param_groups = [{"params": updater.params}]

    def step(self, rate, iteration):
        return self.updater.step(rate, iteration)


# ---- the solver ----

class Solver:
    """Caffe's SGDSolver family on a solver file. `solve()` trains; `restore(path)` resumes a snapshot;
    `fine_tune(path)` starts from another run's weights."""

    def __init__(self, config, *, level: int = 0, stages=(), signals: SignalActions | None = None, notes=()):
        self.config = config
        self.notes = list(notes)  # setup messages (the command line's overrides), logged when solving starts
        self.device = resolve_device(config.device, config.pos("device"))
        self.seed = resolve_seed(self.config.random_seed)
        self.dtype = PRECISIONS[self.config.precision]
        self.signals = signals or SignalActions()
        self.bar = None
        self.writer = None
        self._seed_everything()
        layout = memory_format(self.device, self.config.precision)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        written = config.net_file
        self.train = build_phase_net(written, config.resolve(written), "TRAIN", self.seed, self.device, level, stages,
                                     layout=layout)
        if not self.train.net.loss_weights:
            raise NetdefError(Problem("the TRAIN net has no loss to minimise", config.pos(),
                                      expected="a loss layer (SoftmaxWithLoss, ...) or a top with loss_weight"))
        self.tests = [build_phase_net(written, config.resolve(written), "TEST", self.seed, self.device,
                                      share_with=self.train.net, layout=layout)
                      for written in config.test_nets()]
        self.updater = CaffeUpdater.from_net(self.train.net, config)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.config.precision == "fp16" else None
        self.iter = 0
        self.skipped_updates = 0  # fp16: updates the gradient scaler skipped; Adam's t counts the applied ones
        self.window = torch.zeros(self.config.average_loss, device=self.device)
        self.window_count = 0  # losses recorded so far (the window is full at average_loss)
        self.prefix = snapshot_prefix(config)
        self.last_snapshot = None
        self.stopped_early = False
        self.log_dir = config.resolve(self.config.log_dir) if self.config.log_dir \
            else Path("runs") / config.path.stem

    def _seed_everything(self):
        """One seed for the fillers and dropout (torch's global generators); readers derive their own."""
        torch.manual_seed(self.seed)

    # ---- logging ----

    def log(self, text: str):
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def configs(self) -> dict:
        """What a snapshot records and a resume compares: the solver as read, every net resolved."""
        nets = {}
        for phase_net in [self.train] + self.tests:
            nets.setdefault(phase_net.written, phase_net.resolved_yaml)
        return {"solver": self.config.as_dict(), "nets": nets, "seed": self.seed}

    def _write_run_folder(self):
        """The run folder: the resolved solver and nets, and TensorBoard events. A fresh run supersedes
        earlier curves in the folder (purge from step 0); a resumed run drops those after its iteration."""
        import yaml
        from torch.utils.tensorboard import SummaryWriter
        self.log_dir.mkdir(parents=True, exist_ok=True)
        solver = dict(self.config.as_dict(), random_seed=self.seed)
        (self.log_dir / "solver.yaml").write_text(
            f"# {self.config.path} resolved: every field with its default, random_seed as used; paths are\n"
            f"# relative to {self.config.path.parent}\n" + yaml.safe_dump(solver, sort_keys=False), encoding="utf-8")
        written = set()
        for phase_net in [self.train] + self.tests:
            name = phase_net.path.stem + ".yaml"
            if name not in written:
                written.add(name)
                (self.log_dir / name).write_text(
                    f"# {phase_net.path} with its blocks expanded; relative paths are relative to "
                    f"{phase_net.path.parent}\n" + phase_net.resolved_yaml, encoding="utf-8")
        self.writer = SummaryWriter(str(self.log_dir), purge_step=self.iter)

    # ---- resume and fine-tune ----

    def restore(self, path):
        """Continue a snapshot: weights, updater history, iteration, RNG states, reader positions and the
        loss window. Differences between its configuration and the current files are listed; the current
        files are used."""
        self.log(f"Restoring previous solver status from {path}")
        state = load_snapshot(path)
        differences = config_differences(state["config"], self.configs())
        if differences:
            self.log("The current configuration differs from the snapshot's:")
            for line in "\n".join(differences).splitlines():
                self.log("    " + line)
            self.log("Using the current configuration; the snapshot gives the weights, solver history, "
                     "iteration, random states and data positions.")
        rows = copy_weights(self.train.net, state["weights"], self.train.layer_names)
        if any(row[2] != "copied" for row in rows):
            raise NetdefError(Problem(f"the weights in {path} do not fit the current net:\n{weights_table(rows)}",
                                      hint="to start a changed net from these weights, use --weights instead"))
        self.iter = int(state["iteration"])
        self._restore_updater(state["updater"])
        self._restore_readers(state["readers"])
        window = state["smoothed_loss"]["window"]
        if window.shape == self.window.shape:
            self.window.copy_(window)
            self.window_count = int(state["smoothed_loss"]["count"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self._restore_rng(state["rng"])

    def _restore_updater(self, updater_state):
        if updater_state["type"] != self.updater.type:
            self.log(f"Solver history not restored: type {updater_state['type']} in the snapshot, "
                     f"{self.updater.type} now; {self.updater.type} starts with empty history")
            self.skipped_updates = 0
        else:
            self.updater.load_state_dict(updater_state)
            self.skipped_updates = self.iter - int(updater_state["iteration"])

    def _restore_readers(self, readers):
        problems = self.train.feed.load_state_dict(readers["train"])
        for test, test_state in zip(self.tests, readers["test"]):
            problems += test.feed.load_state_dict(test_state)
        for line in problems:
            self.log(line)

    def _rng_state(self) -> dict:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        return {"torch": torch.get_rng_state(), "cuda": cuda}

    def _restore_rng(self, rng):
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def fine_tune(self, path):
        """Caffe's --weights: copy blobs by layer name into the TRAIN net (the TEST nets share them) and
        report every layer: copied, shape mismatch, missing in the file, or not in this net."""
        rows = copy_weights(self.train.net, load_weights(path), self.train.layer_names)
        self.log(f"Copying weights from {path} (blobs not copied keep their fillers):")
        for line in weights_table(rows).splitlines():
            self.log("    " + line)

    # ---- snapshots ----

    def snapshot(self):
        path = snapshot_path(self.prefix, self.iter)
        self.log(f"Snapshotting to {path}")
        save_atomic({
            "format": FORMAT, "version": VERSION, "iteration": self.iter,
            "weights": self.train.net.state_dict(),
            "updater": {**self.updater.state_dict(), "iteration": self.iter - self.skipped_updates},
            "rng": self._rng_state(),
            "readers": {"train": self.train.feed.state_dict(), "test": [t.feed.state_dict() for t in self.tests]},
            "smoothed_loss": {"window": self.window.cpu(), "count": self.window_count},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "config": self.configs(),
        }, path)
        self.last_snapshot = self.iter

    # ---- the loop ----

    def solve(self):
        """Train to max_iter (from the restored iteration), then Caffe's closing snapshot, display and test."""
        from tqdm import tqdm
        config = self.config
        check_writable(self.prefix, self.iter, self.config.pos("snapshot_prefix"))
        self._log_setup()
        self._write_run_folder()
        self.log(f"Solving {self.train.info.graph.name}")
        self.log(f"Learning Rate Policy: {config.lr_policy}")
        self.bar = tqdm(total=config.max_iter, initial=self.iter, disable=not sys.stdout.isatty(),
                        unit="iter", dynamic_ncols=True, leave=False)
        try:
            with self.signals.installed():
                self.step(config.max_iter - self.iter)
                self._finish()
        finally:
            self.bar.close()
            self.bar = None
            self.writer.close()
            self.writer = None

    def _finish(self):
        config = self.config
        if config.snapshot_after_train and self.last_snapshot != self.iter \
                and (not config.snapshot or self.iter % config.snapshot):
            self.snapshot()
        if self.stopped_early:
            self.log("Optimization stopped early.")
            return
        if config.display and self.iter % config.display == 0:
            with torch.no_grad(), self._autocast():
                outputs = self.train.net(**self.train.feed.next())
                loss = weighted_loss(outputs, self.train.net.loss_weights)
            self.log(f"Iteration {self.iter}, loss = {loss.item():.6g}")
        if config.test_interval and self.iter % config.test_interval == 0:
            self.test_all()
        self.log("Optimization Done.")

    def _log_setup(self):
        for note in self.notes:
            self.log(note)
        self.log(f"Solver {self.config.path}: type {self.config.type}, device {self.device}, "
                 f"precision {self.config.precision}, random_seed {self.seed}"
                 + (" (from the clock)" if self.config.random_seed < 0 else ""))
        for phase_net in [self.train] + self.tests[:1]:
            what = "training net" if phase_net is self.train else "test net"
            self.log(f"Creating {what} from {phase_net.path} ({phase_net.info.graph.name}, "
                     f"{phase_net.info.graph.state.phase})")
            for line in setup_lines(phase_net):
                self.log(line)
            self.log("Network initialization done.")
        self.log(f"Run folder {self.log_dir} (tensorboard --logdir {self.log_dir.parent})")

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, iterations: int):
        """Caffe's Solver::Step: `iterations` updates with their tests, displays and snapshots as due."""
        config = self.config
        net, feed, loss_weights = self.train.net, self.train.feed, self.train.net.loss_weights
        display, test_interval, snapshot = config.display, config.test_interval, config.snapshot
        iter_size = config.iter_size
        stop_at = self.iter + iterations
        self._timer, self._timer_iter = time.perf_counter(), self.iter
        while self.iter < stop_at:
            self.updater.zero_grad()
            if test_interval and self.iter % test_interval == 0 and (self.iter > 0 or config.test_initialization):
                self.test_all()
                if self.stopped_early:
                    break
            total = None
            for _ in range(iter_size):
                with self._autocast():
                    outputs = net(**feed.next())
                    loss = weighted_loss(outputs, loss_weights)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
                total = loss.detach() if total is None else total + loss.detach()
            self._record_loss(total / iter_size if iter_size > 1 else total)
            rate = learning_rate(config, self.iter)
            if display and self.iter % display == 0:
                self._display(outputs, rate)
            self._update(rate)
            self.iter += 1
            if self.bar is not None:
                self.bar.update(1)
            if snapshot and self.iter % snapshot == 0:
                self.snapshot()
            action = self.signals.take()
            if action == "snapshot" and self.last_snapshot != self.iter:
                self.snapshot()
            elif action == "stop":
                self.stopped_early = True
                break

    def _update(self, rate):
        if self.scaler is None:
            self.updater.step(rate, self.iter - self.skipped_updates)
        else:
            if not self.scaler.step(_ScaledStep(self.updater), rate, self.iter - self.skipped_updates):
                self.skipped_updates += 1
            self.scaler.update()

    def _record_loss(self, loss):
        """Caffe's UpdateSmoothedLoss, kept on the device: a ring of the last average_loss losses."""
        self.window[self.window_count % self.window.numel()] = loss
        self.window_count += 1

    def smoothed_loss(self) -> float:
        filled = min(self.window_count, self.window.numel())
        return self.window[:filled].mean().item() if filled else float("nan")

    def _display(self, outputs, rate):
        now = time.perf_counter()
        lapse = now - self._timer
        per_second = (self.iter - self._timer_iter) / lapse if lapse > 0 else 0.0
        smoothed = self.smoothed_loss()
        self.log(f"Iteration {self.iter} ({per_second:.4g} iter/s, {lapse:.4g}s/{self.config.display} iters), "
                 f"loss = {smoothed:.6g}")
        loss_weights = self.train.net.loss_weights
        for index, (blob, value, weight) in enumerate(output_values(outputs, loss_weights)):
            self.log(output_line("Train", index, blob, value, weight))
            self._scalar(f"train_outputs/{blob}", value)
        self.log(f"Iteration {self.iter}, lr = {rate:.6g}")
        self._scalar("train/loss", smoothed)
        self._scalar("train/lr", rate)
        if self.iter > self._timer_iter:
            self._scalar("train/iters_per_second", per_second)
        self._timer, self._timer_iter = time.perf_counter(), self.iter

    def _scalar(self, tag, value):
        """A TensorBoard point at the current iteration (solve() opens the writer; step() alone has none)."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, self.iter)

    def test_all(self):
        for index in range(len(self.tests)):
            self.test(index)
            if self.stopped_early:
                return

    def test(self, index: int):
        """Caffe's Solver::Test: test_iter forward passes, each output element averaged over them."""
        phase_net = self.tests[index]
        count = self.config.test_iter[index]
        self.log(f"Iteration {self.iter}, Testing net (#{index})")
        before = phase_net.feed.state_dict()
        sums = {}
        with torch.no_grad():
            for _ in range(count):
                if self.signals.stop_pending():
                    # A resumed run repeats this test from its start, so its readers go back there.
                    phase_net.feed.load_state_dict(before)
                    self.signals.take()
                    self.stopped_early = True
                    self.log("Test interrupted.")
                    return
                with self._autocast():
                    outputs = phase_net.net(**phase_net.feed.next())
                for blob, value in outputs.items():
                    value = value.detach().float()
                    sums[blob] = value if blob not in sums else sums[blob] + value
        means = {blob: total / count for blob, total in sums.items()}
        tag = "test" if index == 0 else f"test{index}"
        for k, (blob, value, weight) in enumerate(output_values(means, phase_net.net.loss_weights)):
            self.log(output_line("Test", k, blob, value, weight))
            self._scalar(f"{tag}/{blob}", value)
