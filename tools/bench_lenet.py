"""netdef's LeNet training against a hand-written PyTorch twin: throughput and peak memory.

    python tools/bench_lenet.py [--iterations 300] [--rounds 3] [--device cpu] [--accuracy]

Both train Caffe's LeNet (nets/lenet.yaml) with solvers/lenet_solver.yaml's rule: SGD, momentum 0.9,
weight_decay 5e-4, bias lr_mult 2, lr_policy inv, batch 64, from the same uint8 MNIST digits held in
memory. netdef runs its own Solver.step (no tests, displays or snapshots); the twin is what one writes by
hand: an nn.Module, torch.optim.SGD(foreach=True), a LambdaLR with the inv policy, randperm batches.
Both run in this process, alternating in rounds of --iterations after a warm-up, and the best round of
each counts. Peak memory: on CUDA the allocator's peak during training; on CPU each loop runs once more
in a child process that samples its resident memory while training and reports the peak above what it
held before. Prints
iterations/s, peak memory and the ratios netdef/twin (throughput: higher is better for netdef).
--accuracy instead trains both for max_iter and reports their test accuracy on the t10k split.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netdef.layers.data import IdxBackend  # noqa: E402
from netdef.train.evaluate import evaluate  # noqa: E402
from netdef.train.lr_policy import learning_rate  # noqa: E402
from netdef.train.solver import Solver  # noqa: E402
from netdef.train.config import load_solver  # noqa: E402

SOLVER = REPO / "solvers" / "lenet_solver.yaml"
DATA = REPO / "data" / "mnist5k"
SCALE = 0.00390625
BATCH = 64


def netdef_solver(device: str) -> Solver:
    config = load_solver(SOLVER).replace(display=0, test_interval=0, snapshot=0, snapshot_after_train=False,
                                         device=device)
    return Solver(config)


class TwinLeNet(nn.Module):
    """Caffe's LeNet written by hand, with Caffe's xavier (uniform, fan in) weights and zero biases."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
        self.ip1, self.ip2 = nn.Linear(800, 500), nn.Linear(500, 10)
        for layer in (self.conv1, self.conv2, self.ip1, self.ip2):
            fan_in = layer.weight[0].numel()
            nn.init.uniform_(layer.weight, -math.sqrt(3 / fan_in), math.sqrt(3 / fan_in))
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2, 2)
        x = F.max_pool2d(self.conv2(x), 2, 2)
        return self.ip2(F.relu(self.ip1(x.flatten(1))))


class Twin:
    """The hand-written training loop: shuffled in-memory batches, SGD with momentum and weight decay."""

    def __init__(self, device, channels_last=False, seed=1701):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.model = TwinLeNet().to(self.device)
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.layout)
        config = load_solver(SOLVER)
        weights = [p for n, p in self.model.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in self.model.named_parameters() if n.endswith("bias")]
        base = config.base_lr
        self.optimizer = torch.optim.SGD([{"params": weights, "lr": base}, {"params": biases, "lr": 2 * base}],
                                         lr=base, momentum=config.momentum, weight_decay=config.weight_decay,
                                         foreach=True)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: learning_rate(config, it) / base)
        images, labels = IdxBackend(DATA, "train").load()
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.position = self._shuffle(), 0

    def _shuffle(self):
        return torch.randperm(len(self.labels), generator=self.generator).to(self.device)

    def batch(self):
        if self.position + BATCH > len(self.order):
            self.order, self.position = self._shuffle(), 0
        index = self.order[self.position:self.position + BATCH]
        self.position += BATCH
        images = (self.images.index_select(0, index) * SCALE).contiguous(memory_format=self.layout)
        return images, self.labels.index_select(0, index)

    def step(self, iterations):
        for _ in range(iterations):
            images, labels = self.batch()
            loss = F.cross_entropy(self.model(images), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()

    def accuracy(self):
        images, labels = IdxBackend(DATA, "t10k").load()
        self.model.eval()
        with torch.no_grad():
            scores = self.model((images.to(self.device) * SCALE).contiguous(memory_format=self.layout))
        return (scores.argmax(1).cpu() == labels).float().mean().item()


def netdef_accuracy(solver: Solver) -> float:
    test = solver.tests[0]
    means = evaluate(test.net, test.feed, solver.config.test_iter[0])
    return means["accuracy"].item()


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(step, iterations, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    step(iterations)
    synchronize(device)
    return iterations / (time.perf_counter() - start)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def child_peak(which, args) -> int:
    """Peak resident memory added by training, measured alone in a child process (CPU)."""
    command = [sys.executable, __file__, "--child", which, "--iterations", str(args.iterations),
               "--warmup", str(args.warmup), "--device", args.device, "--threads", str(args.threads)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["peak"]


def run_child(args):
    """Samples the resident size every millisecond while training: construction peaks do not count."""
    trainer = netdef_solver(args.device) if args.child == "netdef" else Twin(args.device)
    before, peak, done = resident_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.001)
    sampler = threading.Thread(target=sample)
    sampler.start()
    trainer.step(args.warmup + args.iterations)
    done.set()
    sampler.join()
    print(json.dumps({"peak": peak[0] - before}))


def measure(args):
    device = args.device
    contenders = {"netdef": netdef_solver(device), "twin": Twin(device),
                  "twin (channels_last)": Twin(device, channels_last=True)}
    for trainer in contenders.values():
        trainer.step(args.warmup)
    rates = {name: 0.0 for name in contenders}
    peaks = {}
    for _ in range(args.rounds):
        for name, trainer in contenders.items():
            if torch.device(device).type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            rates[name] = max(rates[name], timed(trainer.step, args.iterations, device))
            if torch.device(device).type == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated()
    if torch.device(device).type == "cpu":
        peaks = {"netdef": child_peak("netdef", args), "twin": child_peak("twin", args)}
    print(f"LeNet, batch {BATCH}, device {device}, {torch.get_num_threads()} threads, {args.rounds} rounds of "
          f"{args.iterations} iterations after {args.warmup} warm-up (best round)")
    for name, rate in rates.items():
        memory = f", peak memory {peaks[name] / 2**20:.1f} MiB" if name in peaks else ""
        print(f"  {name:22s} {rate:8.1f} iterations/s{memory}")
    print(f"throughput ratio netdef/twin: {rates['netdef'] / rates['twin']:.3f} "
          f"(netdef/twin with channels_last: {rates['netdef'] / rates['twin (channels_last)']:.3f})")
    print(f"peak memory ratio netdef/twin: {peaks['netdef'] / peaks['twin']:.3f}")


def accuracy(args):
    solver = netdef_solver(args.device)
    twin = Twin(args.device)
    iterations = solver.config.max_iter
    solver.step(iterations)
    twin.step(iterations)
    print(f"test accuracy after {iterations} iterations: netdef {netdef_accuracy(solver):.4f}, "
          f"twin {twin.accuracy():.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--accuracy", action="store_true", help="train both to max_iter and compare test accuracy")
    parser.add_argument("--child", choices=["netdef", "twin"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        run_child(args)
    elif args.accuracy:
        accuracy(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
