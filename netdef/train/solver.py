"""The solver: Caffe's Solver::Solve and Solver::Step on compiled nets (caffe.md §c.3, §c.5, §d, §i).

    config = load_solver("solvers/lenet_solver.yaml")
    solver = Solver(config)
    solver.solve()

One iteration: test when due (on TEST nets sharing the TRAIN net's weights), iter_size forward/backward
passes whose gradients add up, the smoothed loss, Caffe's log lines on display iterations, one update
(netdef.train.updates) at the rate of netdef.train.lr_policy, snapshots when due and on signals. Between
display and test iterations nothing is read back from the device but whether the loss is finite
(nan_policy stop or skip; ignore reads nothing): the loss window stays a device tensor.

The parts live beside this module: device.py (device, layout, precision), nets.py (the compiled nets and
their readers), state.py (TrainState: what a snapshot saves), snapshot.py (the files), evaluate.py (the
test pass), log.py (Caffe's log text), run_folder.py (resolved files and TensorBoard), signals.py.
"""
from __future__ import annotations

import contextlib
import os
import time

import torch

from ..api import read_net
from ..build import weighted_loss
from ..errors import NetdefError, Problem
from .device import CompiledOrEager, autocast, grad_scaler, memory_format, resolve_device
from .distributed import World, data_parallel, no_sync
from .evaluate import evaluate
from .faults import first_non_finite_layer, non_finite, prefix_lock, remove_orphans
from .log import Log, epoch_line, output_line, output_values, peak_memory_line, setup_lines, setup_summary
from .lr_policy import learning_rate
from .nets import build_phase_net
from .run_folder import RunFolder, run_folder_path
from .signals import SignalActions
from .snapshot import (CLOSING, ON_INTERRUPT, ON_SIGNAL, SCHEDULED, check_writable, config_differences, copy_weights,
                       load_snapshot, load_weights, save_snapshot, snapshot_path, snapshot_prefix, weights_table)
from .state import SmoothedLoss, TrainState
from .updates import CaffeUpdater


def resolve_seed(random_seed: int) -> int:
    """Caffe: a negative random_seed means a seed from the clock."""
    return random_seed if random_seed >= 0 else time.time_ns() % (2 ** 31)


class _ScaledStep:
    """torch's GradScaler drives optimizers; this shows it the updater's parameters and step (fp16 only)."""

    def __init__(self, updater: CaffeUpdater):
        self.updater = updater
        self.param_groups = [{"params": updater.params}]

    def step(self, rate, iteration):
        return self.updater.step(rate, iteration)


class _QuietLog(Log):
    """The log of ranks other than 0: rank 0 alone prints, keeps the log file and shows progress."""

    def show(self, text: str) -> None:
        pass

    def record(self, text: str) -> None:
        pass

    def keep_in(self, path) -> None:
        pass

    @contextlib.contextmanager
    def progress(self, total: int, initial: int):
        yield None

    @contextlib.contextmanager
    def test_progress(self, index: int, batches: int):
        yield lambda k: None


class Solver:
    """Caffe's SGDSolver family on a SolverConfig. `solve()` trains; `step(n)` runs n iterations alone;
    `restore(path)` resumes a snapshot; `fine_tune(path)` starts from another run's weights. `notes` are
    logged when solving starts (the command line's overrides).

    With `world` (netdef.train.distributed.World) of several processes, this is one rank of a data-parallel
    run: batch_size is per rank, each rank reads its shard of every batch of world x batch_size rows, the
    gradients are averaged over the ranks (DistributedDataParallel), logged figures are means over the
    ranks, and rank 0 alone logs and writes events and snapshots."""

    def __init__(self, config, *, level: int = 0, stages=(), signals: SignalActions | None = None, notes=(),
                 max_memory: int | None = None, world: World | None = None):
        self.config = config
        self.notes = list(notes)
        self.world = world or World()
        self.device = self._rank_device(resolve_device(config.device, config.pos("device")))
        self.seed = resolve_seed(config.random_seed)
        if config.random_seed < 0:
            self.seed = self.world.from_main(self.seed)  # one clock for all ranks: they must draw alike
        self.autocast = autocast(self.device, config.precision)
        self.signals = signals or SignalActions()
        self.log = Log() if self.world.is_main else _QuietLog()
        torch.manual_seed(self.seed)  # the fillers and dropout (torch's global generators); readers derive their own
        layout = memory_format(self.device, config.precision)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        sources = {}  # net file -> netdef.Net: each file is read and expanded once, for every phase and instance

        def phase_net(written, phase, **kw):
            path = os.path.normpath(config.resolve(written))
            if path not in sources:
                sources[path] = read_net(path)
            return build_phase_net(sources[path], written, phase, self.seed, self.device, layout=layout,
                                   max_memory=max_memory, world=self.world, **kw)

        self.train = phase_net(config.net_file, "TRAIN", level=level, stages=stages)
        if not self.train.net.loss_weights:
            raise NetdefError(Problem("the TRAIN net has no loss to minimise", config.pos(),
                                      expected="a loss layer (SoftmaxWithLoss, ...) or a top with loss_weight"))
        self.tests = [phase_net(written, "TEST", share_with=self.train.net, **state)
                      for written, state in zip(config.test_nets(), config.test_states())]
        if config.sync_bn and self.world.distributed:
            for module in self.train.net.modules():
                if hasattr(module, "sync_batch_statistics"):
                    module.sync_batch_statistics = True
        self.forward = data_parallel(self.train.net, self.world, self.device)  # what training passes run through
        if config.compile:
            self.forward = CompiledOrEager(self.forward, self.log)
        for net in [self.train] + self.tests:  # Caffe's tolerances netdef changed (a renamed duplicate layer name)
            self.notes += [note for note in net.info.graph.notes if note not in self.notes]
        self.resolved_nets = {}  # net file as written -> its expanded YAML (snapshots and the run folder)
        for net in [self.train] + self.tests:
            self.resolved_nets.setdefault(net.written, net.source.yaml())
        self.state = TrainState(CaffeUpdater.from_net(self.train.net, config), self.train.feed,
                                [test.feed for test in self.tests], SmoothedLoss(config.average_loss, self.device),
                                grad_scaler(self.device, config.precision))
        self._seed_rank_rng()
        self.prefix = snapshot_prefix(config)
        self.run_folder = RunFolder(run_folder_path(config))
        self.last_snapshot = None
        self.written_snapshots = []  # (path, why) of this run, listed when it ends
        self.stopped_early = False

    def _rank_device(self, device: torch.device) -> torch.device:
        """One GPU per rank: LOCAL_RANK's, among the visible ones (netdef train --gpus sets them)."""
        if self.world.distributed and device.type == "cuda":
            return torch.device("cuda", self.world.local_rank)
        return device

    def _seed_rank_rng(self):
        """Ranks past 0 draw dropout from their own stream (the same masks on every rank would correlate
        them); the fillers were drawn before, alike on every rank, and rank 0 keeps one process's stream."""
        if self.world.rank:
            torch.manual_seed(self.seed + 7919 * self.world.rank + self.iter)

    @property
    def iter(self) -> int:
        """Completed iterations (Caffe's iter_): the TrainState's."""
        return self.state.iteration

    def configs(self) -> dict:
        """What a snapshot records and a resume compares: the solver as used, every net resolved."""
        return {"solver": self.config.as_dict(), "nets": dict(self.resolved_nets), "seed": self.seed}

    # ---- resume and fine-tune ----

    def restore(self, path):
        """Continue a snapshot: weights and the TrainState (updater history, iteration, RNG states, reader
        positions, loss window). Differences between its configuration and the current files are listed;
        the current files are used."""
        self.log(f"Restoring previous solver status from {path}")
        self.run_folder.resume_from(path)
        from ..caffe.solverstate import is_solverstate, restore_solverstate
        if is_solverstate(path):  # Caffe's own: iteration, history and its learned_net weights
            return restore_solverstate(self.train, self.state, path, self.log)
        payload = load_snapshot(path)
        differences = config_differences(payload["config"], self.configs())
        if differences:
            self.log("The current configuration differs from the snapshot's:")
            for line in "\n".join(differences).splitlines():
                self.log("    " + line)
            self.log("Using the current configuration; the snapshot gives the weights, solver history, "
                     "iteration, random states and data positions.")
        rows = copy_weights(self.train.net, payload["weights"], self.train.layer_names)
        if any(row[2] != "copied" for row in rows):
            raise NetdefError(Problem(f"the weights in {path} do not fit the current net:\n{weights_table(rows)}",
                                      hint="to start a changed net from these weights, use --weights instead"))
        for line in self.state.load_state_dict(payload):
            self.log(line)
        self._seed_rank_rng()  # the snapshot holds rank 0's generators

    def fine_tune(self, path):
        """Caffe's --weights: copy blobs by layer name into the TRAIN net (the TEST nets share them) and
        report every layer: copied, shape mismatch, missing in the file, or not in this net."""
        rows = copy_weights(self.train.net, load_weights(path), self.train.layer_names, self.train.info.graph)
        self.log(f"Copying weights from {path} (blobs not copied keep their fillers):")
        for line in weights_table(rows).splitlines():
            self.log("    " + line)

    def snapshot(self, why: str = SCHEDULED):
        """Write `<prefix>_iter_<N>.pt`; `why` (SCHEDULED, CLOSING, ON_SIGNAL, ON_INTERRUPT) is stored in it
        and listed when the run ends. A write that fails stops the run, or with snapshot_error_policy:
        continue is logged and training goes on (the closing snapshot always stops: it is the run's result)."""
        if self.config.nan_policy == "stop" and non_finite(list(self.state.updater.params)):
            self._stop_non_finite(f"the weights after iteration {self.iter} are not finite",
                                  [self.train.feed.next()])
        path = snapshot_path(self.prefix, self.iter)
        self.log(f"Snapshotting to {path}" + (f" ({why})" if why in (ON_SIGNAL, ON_INTERRUPT) else ""))
        error = self._write_snapshot(path, why)
        if error is not None:
            kept = snapshot_path(self.prefix, self.last_snapshot) if self.last_snapshot is not None else None
            problem = error.problems[0]
            if kept is not None:
                problem.hint = "; ".join(filter(None, [problem.hint, f"the last good snapshot, {kept}, is kept"]))
            if self.config.snapshot_error_policy == "continue" and why not in (CLOSING, ON_INTERRUPT):
                self.log(f"{problem.message}; {problem.hint}; training goes on (snapshot_error_policy: continue)")
                return
            raise error
        self.last_snapshot = self.iter
        self.written_snapshots.append((path, why))

    def _write_snapshot(self, path, why) -> NetdefError | None:
        """Rank 0 writes the file, the other ranks wait for its outcome (a collective: all of them go on,
        or all of them stop). Returns the error, or None."""
        error = None
        if self.world.is_main:
            try:
                save_snapshot(path, self.train.net.state_dict(), self.state, self.configs(), why)
            except NetdefError as exc:
                error = exc
        if not self.world.from_main(error is None) and error is None:
            error = NetdefError(Problem(f"rank 0 could not write the snapshot {path} (its output says why)"))
        return error

    # ---- the loop ----

    def solve(self):
        """Train to max_iter (from the restored iteration), then Caffe's closing snapshot, display and test."""
        config = self.config
        if not self.world.is_main:  # rank 0 alone writes snapshots, so it alone checks and locks the prefix
            self._solve()
            return
        check_writable(self.prefix, self.iter, config.pos("snapshot_prefix"))
        with prefix_lock(self.prefix, config.pos("snapshot_prefix")):
            self._solve()

    def _solve(self):
        config = self.config
        self._log_setup()
        if self.world.is_main:
            for path in remove_orphans(self.prefix):
                self.log(f"Removed {path}: the temporary file of a snapshot whose process was killed while "
                         "writing it")
            self.run_folder.open(config, self.seed, [(net.path, self.resolved_nets[net.written])
                                                     for net in [self.train] + self.tests], self.iter)
        self.log.keep_in(self.run_folder.log_path)
        self.log(f"Solving {self.train.info.graph.name}")
        self.log(f"Learning Rate Policy: {config.lr_policy}")
        try:
            with self.log.progress(config.max_iter, self.iter), self.signals.installed():
                self.step(config.max_iter - self.iter)
                self._finish()
        finally:
            self.run_folder.close()
            self.log.record(peak_memory_line(self.device))  # the log file's, for netdef report
            self.log.close()

    def _list_snapshots(self):
        if self.written_snapshots:
            self.log("Snapshots written by this run:")
            for path, why in self.written_snapshots:
                self.log(f"    {path} ({why})")

    def _log_setup(self):
        config = self.config
        for note in self.notes:
            self.log(note)
        self.log(f"Solver {config.path}: type {config.type}, device {self.device}, precision {config.precision}, "
                 f"random_seed {self.seed}" + (" (from the clock)" if config.random_seed < 0 else ""))
        for phase_net in [self.train] + self.tests[:1]:  # the per-layer lines: the log file's alone
            what = "training net" if phase_net is self.train else "test net"
            self.log.record(f"Creating {what} from {phase_net.path} ({phase_net.info.graph.name}, "
                            f"{phase_net.info.graph.state.phase})")
            for line in setup_lines(phase_net.info):
                self.log.record(line)
            self.log.record("Network initialization done.")
            self.log.show(setup_summary(what.capitalize(), phase_net.info) + f", from {phase_net.path}")
        if self.world.is_main:
            self.log.show(f"Per-layer set-up (Caffe's Setting up / Top shape lines): {self.run_folder.log_path}")
        epoch = epoch_line(self.train.feed, config.iter_size * self.world.size)
        if epoch:
            self.log(epoch)
        folder = self.run_folder.path
        self.log(f"Run folder {folder} (tensorboard --logdir {folder.parent} shows every run of this solver)")

    def _finish(self):
        config = self.config
        if config.snapshot_after_train and self.last_snapshot != self.iter \
                and (not config.snapshot or self.iter % config.snapshot):
            self.snapshot(ON_INTERRUPT if self.stopped_early else CLOSING)
        if self.stopped_early:
            self._list_snapshots()
            self.log("Optimization stopped early.")
            return
        if config.display and self.iter % config.display == 0:
            with torch.no_grad(), self.autocast():
                outputs = self.train.net(**self.train.feed.next())
                loss = self.world.average({"loss": weighted_loss(outputs, self.train.net.loss_weights)})["loss"]
            self.log(f"Iteration {self.iter}, loss = {loss.item():.6g}")
        if config.test_interval and self.iter % config.test_interval == 0:
            self.test_all()
        self._list_snapshots()
        self.log("Optimization Done.")

    def step(self, iterations: int):
        """Caffe's Solver::Step: `iterations` updates with their tests, displays and snapshots as due."""
        config, state, world = self.config, self.state, self.world
        net, feed, loss_weights = self.forward, self.train.feed, self.train.net.loss_weights
        display, test_interval, snapshot, iter_size = config.display, config.test_interval, config.snapshot, \
            config.iter_size
        stop_at = state.iteration + iterations
        guard = config.nan_policy != "ignore"
        self._timer, self._timer_iter = time.perf_counter(), state.iteration
        while state.iteration < stop_at:
            state.updater.zero_grad()
            if test_interval and state.iteration % test_interval == 0 \
                    and (state.iteration > 0 or config.test_initialization):
                self.test_all()
                if self.stopped_early:
                    break
            total, batches = None, []
            for k in range(iter_size):
                batch = feed.next()
                if guard:
                    batches.append(batch)
                with no_sync(net, k == iter_size - 1):
                    with self.autocast():
                        outputs = net(**batch)
                        loss = weighted_loss(outputs, loss_weights)
                    (state.scaler.scale(loss) if state.scaler is not None else loss).backward()
                total = loss.detach() if total is None else total + loss.detach()
            total = world.average({"loss": total})["loss"]  # every rank skips alike, and logs the global loss
            skip = guard and self._non_finite_loss(total, batches)  # one read-back per iteration
            if not skip:
                state.loss.record(total / iter_size if iter_size > 1 else total)
            rate = learning_rate(config, state.iteration)
            if display and state.iteration % display == 0:
                self._display(world.average(outputs), rate)
            if skip:
                state.updater.zero_grad()
                state.skipped_updates += 1
            else:
                self._update(rate)
            state.iteration += 1
            self.log.advance()
            if snapshot and state.iteration % snapshot == 0:
                self.snapshot()
            action = world.agree(self.signals.take())
            if action == "snapshot" and self.last_snapshot != state.iteration:
                self.snapshot(ON_SIGNAL)
            elif action == "stop":
                self.stopped_early = True
                break

    def _non_finite_loss(self, total, batches) -> bool:
        """nan_policy stop or skip: whether this iteration's loss is not finite. `stop` raises NetdefError
        naming the iteration and the first layer whose output is not finite (the batch run again, a check
        per layer); `skip` logs it and the caller skips the update."""
        if bool(torch.isfinite(total)):
            return False
        if self.config.nan_policy == "skip":
            self.log(f"Iteration {self.iter}, loss = {total.item():.6g}: not finite, update skipped "
                     "(nan_policy: skip)")
            return True
        self._stop_non_finite(f"the loss of iteration {self.iter} is {total.item():g}", batches)

    def _stop_non_finite(self, what: str, batches):
        layer = None
        for batch in batches:
            layer, layer_type, in_params = first_non_finite_layer(self.train, batch, self.autocast)
            if layer is not None:
                break
        if layer is None:
            where = "no layer output is non-finite when the batch is run again (the backward pass or dropout?)"
        else:
            where = f"the first layer whose output is not finite is '{layer}' ({layer_type})" + \
                (", whose own parameters are not finite" if in_params else "")
        kept = f"the last good snapshot is {snapshot_path(self.prefix, self.last_snapshot)}" \
            if self.last_snapshot is not None else "no snapshot was written in this run"
        raise NetdefError(Problem(
            f"training stopped: {what}; {where}; no snapshot of these weights was written, {kept}",
            self.config.pos("base_lr"),
            hint="look at base_lr (lower it), lr_policy and clip_gradients (e.g. clip_gradients: 10) in the "
                 "solver file, and at the inputs of that layer; nan_policy: skip skips such updates instead"))

    def _update(self, rate):
        state = self.state
        if state.scaler is None:
            state.updater.step(rate, state.applied_updates)
        else:
            if not state.scaler.step(_ScaledStep(state.updater), rate, state.applied_updates):
                state.skipped_updates += 1
            state.scaler.update()

    def _display(self, outputs, rate):
        now = time.perf_counter()
        lapse = now - self._timer
        per_second = (self.iter - self._timer_iter) / lapse if lapse > 0 else 0.0
        smoothed = self.state.loss.value()
        self.log(f"Iteration {self.iter} ({per_second:.4g} iter/s, {lapse:.4g}s/{self.config.display} iters), "
                 f"loss = {smoothed:.6g}")
        for index, (blob, value, weight) in enumerate(output_values(outputs, self.train.net.loss_weights)):
            self.log(output_line("Train", index, blob, value, weight))
            self._scalar(f"train_outputs/{blob}", value)
        self.log(f"Iteration {self.iter}, lr = {rate:.6g}")
        self.log.progress_line(self.iter)
        self._scalar("train/loss", smoothed)
        self._scalar("train/lr", rate)
        if self.iter > self._timer_iter:
            self._scalar("train/iters_per_second", per_second)
        self._timer, self._timer_iter = time.perf_counter(), self.iter

    def _scalar(self, tag, value):
        self.run_folder.scalar(tag, value, self.iter)

    def test_all(self):
        for index in range(len(self.tests)):
            self.test(index)
            if self.stopped_early:
                return

    def test(self, index: int):
        """Caffe's Solver::Test: test_iter forward passes, each output element averaged over them."""
        phase_net = self.tests[index]
        self.log(f"Iteration {self.iter}, Testing net (#{index})")
        before = phase_net.feed.state_dict()
        batches = self.config.test_iter[index]
        with self.log.test_progress(index, batches) as batch_done:
            means = evaluate(phase_net.net, phase_net.feed, batches, autocast=self.autocast,
                             on_batch=lambda k, outputs: batch_done(k),
                             interrupted=lambda: self.world.any(self.signals.stop_pending()))
        if means is not None:
            means = self.world.average(means)  # each rank tested its shard of every batch
        if means is None:
            phase_net.feed.load_state_dict(before)  # a resumed run repeats this test from its start
            self.signals.take()
            self.stopped_early = True
            self.log("Test interrupted.")
            return
        tag = "test" if index == 0 else f"test{index}"
        for k, (blob, value, weight) in enumerate(output_values(means, phase_net.net.loss_weights)):
            self.log(output_line("Test", k, blob, value, weight))
            self._scalar(f"{tag}/{blob}", value)
