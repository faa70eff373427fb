"""ResNet-50 training images/s on a GPU: netdef's Solver against a hand-written PyTorch twin in the same
process, in fp32 and bf16 (autocast), eager and compiled (torch.compile).

    python tools/bench_gpu.py                                # cuda, batch 64, 224 x 224
    python tools/bench_gpu.py --device cpu --batch 2 --size 64 --iterations 2 --warmup 1   # a smoke run

netdef trains nets/resnet50.yaml's layers (DummyData input, Caffe's BatchNorm + Scale, SGD with momentum and
weight decay: Caffe's update) through its Solver with `precision` and `compile` set; the twin is what one
writes by hand: bottleneck units with nn.BatchNorm2d, channels-last, torch.optim.SGD(foreach=True) and
random inputs of the same shape. Each configuration runs --warmup iterations (compilation included), then
--iterations timed between CUDA synchronisations; figures are images/s, and netdef/twin.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netdef.train.config import load_solver  # noqa: E402
from netdef.train.solver import Solver  # noqa: E402

NET = """\
allow_outside_root: true
name: ResNet-50
import: [{blocks}/resnet.yaml, {blocks}/imagenet.yaml]
layers:
  - {{use: imagenet_data, name: data, with: {{crop: {size}, train_batch: {batch}, test_batch: 2}}}}
  - {{use: resnet_stem, name: pool1, bottom: data}}
  - {{use: resnet_stage, name: "res${{i + 1}}", bottom: pool1, with: {{unit: bottleneck}},
     with_each: {{units: [3, 4, 6, 3], width: [64, 128, 256, 512], stride: [1, 2, 2, 2]}}}}
  - {{use: resnet_top, name: fc1000, bottom: res5}}
  - {{use: imagenet_head, name: loss, bottom: fc1000}}
"""

SOLVER = """\
net: resnet50.yaml
base_lr: 0.01
momentum: 0.9
weight_decay: 1e-4
lr_policy: fixed
max_iter: 1000000
snapshot_after_train: false
random_seed: 1
log_dir: {folder}/runs
"""


class Bottleneck(nn.Module):
    def __init__(self, inputs, width, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inputs, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width)
        self.project = None
        if stride != 1 or inputs != 4 * width:
            self.project = nn.Sequential(nn.Conv2d(inputs, 4 * width, 1, stride, bias=False),
                                         nn.BatchNorm2d(4 * width))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (self.project(x) if self.project is not None else x))


class TwinResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        units, inputs = [], 64
        for count, width, stride in zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2)):
            for k in range(count):
                units.append(Bottleneck(inputs, width, stride if k == 0 else 1))
                inputs = 4 * width
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.units(self.stem(x)), 1).flatten(1))


class Twin:
    def __init__(self, device, batch, size, precision, compiled):
        self.device = torch.device(device)
        model = TwinResNet50().to(self.device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True)
        self.model = torch.compile(model) if compiled else model
        self.dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
        self.images = torch.randn(batch, 3, size, size, device=self.device).contiguous(memory_format=torch.channels_last)
        self.labels = torch.randint(0, 1000, (batch,), device=self.device)

    def step(self, iterations):
        for _ in range(iterations):
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = F.cross_entropy(self.model(self.images), self.labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


def netdef_solver(folder: Path, device, batch, size, precision, compiled) -> Solver:
    (folder / "resnet50.yaml").write_text(NET.format(blocks=REPO / "nets" / "blocks", size=size, batch=batch))
    (folder / "solver.yaml").write_text(SOLVER.format(folder=folder))
    config = load_solver(folder / "solver.yaml").replace(device=device, precision=precision, compile=compiled)
    return Solver(config)


def images_per_second(trainer, args) -> float:
    trainer.step(args.warmup)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.step(args.iterations)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return args.iterations * args.batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--modes", default="eager,compiled")
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"ResNet-50 training, batch {args.batch}, {args.size} x {args.size}, on {name}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        for precision in args.precisions.split(","):
            for mode in args.modes.split(","):
                compiled = mode == "compiled"
                ours = images_per_second(netdef_solver(Path(folder), args.device, args.batch, args.size,
                                                       precision, compiled), args)
                twin = images_per_second(Twin(args.device, args.batch, args.size, precision, compiled), args)
                print(f"  {precision} {mode:8s} netdef {ours:8.1f} images/s  twin {twin:8.1f} images/s  "
                      f"netdef/twin {ours / twin:.2f}", flush=True)
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
