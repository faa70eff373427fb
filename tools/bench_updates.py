"""Times CaffeUpdater (SGD, momentum 0.9, weight decay 5e-4) against torch.optim.SGD(foreach=True) on
LeNet's parameters (431,080 in 8 tensors, lr_mult 1 and 2), after checking that both compute the same
weights at a constant rate.

    python tools/bench_updates.py [--device cpu|cuda] [--iterations 2000] [--threads N] [--net nets/lenet.yaml]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdef  # noqa: E402
from netdef.train.config import SolverConfig  # noqa: E402
from netdef.train.lr_policy import learning_rate  # noqa: E402
from netdef.train.updates import CaffeUpdater  # noqa: E402

CONFIG = SolverConfig(type="SGD", momentum=0.9, weight_decay=5e-4, lr_policy="inv", base_lr=0.01, gamma=1e-4,
                      power=0.75)
RATE = 0.01


def lenet_params(net_path, device):
    torch.manual_seed(0)
    net = netdef.load_net(net_path, phase="TRAIN").to(device)
    return [(name, net.get_parameter(name), lr_mult, decay_mult)
            for name, (lr_mult, decay_mult) in net.param_lr.items()]


def twin(named_params):
    """Independent copies of the parameters, with gradients, for the torch.optim side."""
    return [(name, torch.nn.Parameter(param.detach().clone()), lr_mult, decay_mult)
            for name, param, lr_mult, decay_mult in named_params]


def torch_sgd(named_params):
    groups = {}
    for _, param, lr_mult, decay_mult in named_params:
        groups.setdefault((lr_mult, decay_mult), []).append(param)
    return torch.optim.SGD([{"params": params, "lr": RATE * lr_mult, "weight_decay": 5e-4 * decay_mult}
                            for (lr_mult, decay_mult), params in groups.items()],
                           lr=RATE, momentum=0.9, foreach=True)


def set_gradients(named_params, seed):
    generator = torch.Generator().manual_seed(seed)
    for _, param, _, _ in named_params:
        param.grad = (torch.randn(param.shape, generator=generator) * 0.01).to(param.device)


def check_agreement(caffe_params, torch_params):
    """At a constant rate Caffe's SGD (lr inside the velocity) and torch's (lr outside) give the same weights."""
    updater, optimizer = CaffeUpdater(caffe_params, CONFIG), torch_sgd(torch_params)
    for step in range(5):
        set_gradients(caffe_params, step)
        set_gradients(torch_params, step)
        updater.step(RATE, step)
        optimizer.step()
    return max((a.detach() - b.detach()).abs().max().item()
               for (_, a, _, _), (_, b, _, _) in zip(caffe_params, torch_params))


def per_step_seconds(steps: dict, iterations, device, repeats=7) -> dict:
    """Median over `repeats` rounds of the mean time of one step of each of `steps`. The candidates take
    turns within every round, so load from other processes hits them alike."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    runs = {name: [] for name in steps}
    for round_index in range(repeats + 1):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            for _ in range(iterations):
                step()
            sync()
            if round_index:  # round 0 warms up
                runs[name].append((time.perf_counter() - start) / iterations)
    return {name: statistics.median(times) for name, times in runs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--net", default=str(ROOT / "nets" / "lenet.yaml"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    caffe_params = lenet_params(args.net, args.device)
    torch_params = twin(caffe_params)
    difference = check_agreement(caffe_params, torch_params)
    count = sum(param.numel() for _, param, _, _ in caffe_params)
    print(f"{len(caffe_params)} parameter tensors, {count:,} values on {args.device}; "
          f"max |w_caffe - w_torch| after 5 steps: {difference:.2e}")
    if difference > 1e-5:
        print("CaffeUpdater and torch.optim.SGD disagree", file=sys.stderr)
        return 1

    updater, optimizer = CaffeUpdater(caffe_params, CONFIG), torch_sgd(torch_params)
    seconds = per_step_seconds({
        "CaffeUpdater.step(rate)": lambda: updater.step(RATE, 1000),
        "CaffeUpdater.step(learning_rate(inv))": lambda: updater.step(learning_rate(CONFIG, 1000), 1000),
        "torch.optim.SGD(foreach=True).step()": optimizer.step,
    }, args.iterations, args.device)
    for name, value in seconds.items():
        print(f"{name:40s} {value * 1e6:9.1f} us")
    ratio = seconds["CaffeUpdater.step(rate)"] / seconds["torch.optim.SGD(foreach=True).step()"]
    print(f"time ratio CaffeUpdater / torch.optim: {ratio:.2f} (torch threads: {torch.get_num_threads()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
