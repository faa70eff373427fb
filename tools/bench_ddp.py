"""Data-parallel scaling of `netdef train` on this machine: training images/s of LeNet (the bundled digits,
batch 64 per process) and ResNet-18 (DummyData, 3 x 64 x 64 input, batch 16 per process) on 1 and on N
processes (torchrun --standalone), and the scaling efficiency, images/s on N / (N x images/s on 1).

    python tools/bench_ddp.py                     # 1 and 2 processes, both nets
    python tools/bench_ddp.py --nproc 4 --iters 50

The cores are split evenly: N processes get cores/N torch threads each (at least 1); 1 process is measured
with all the cores as threads and with 1 thread (on a busy machine spinning OpenMP threads can make the
wide one the slower), and the efficiency is taken against the faster of the two. Every process runs the real Solver (its DataFeed shard, DDP's gradient
all-reduce, Caffe's update); the first `--warmup` iterations are not timed. The load average is printed:
on a machine shared with other work the figures say as much about the others as about netdef.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RESNET18 = """\
allow_outside_root: true
name: ResNet-18-small
import: [{blocks}]
layers:
  - name: data
    type: DummyData
    top: [data, label]
    dummy_data_param:
      shape: [{{dim: [{batch}, 3, 64, 64]}}, {{dim: [{batch}]}}]
      data_filler: [{{type: gaussian}}, {{type: constant, value: 1}}]
  - {{use: resnet_stem, name: pool1, bottom: data}}
  - {{use: resnet_stage, name: "res${{i + 1}}", bottom: pool1, repeat: 4,
     with: {{unit: basic, units: 2, width: "${{64 * 2 ** (i - 1)}}", stride: "${{1 if i == 1 else 2}}"}}}}
  - {{use: resnet_top, name: fc, bottom: res5, with: {{classes: 10}}}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [fc, label], top: loss}}
"""

SOLVER = """\
net: {net}
base_lr: 0.01
momentum: 0.9
weight_decay: 5e-4
lr_policy: fixed
max_iter: 1000000
snapshot_after_train: false
random_seed: 1
device: cpu
log_dir: {folder}/runs
"""


def write_nets(folder: Path) -> dict:
    """name -> (solver file, batch per process) for the two benchmarked nets."""
    lenet = "allow_outside_root: true\n" + (REPO / "nets" / "lenet.yaml").read_text().replace(
        "../data/mnist5k", str(REPO / "data" / "mnist5k"))
    (folder / "lenet.yaml").write_text(lenet)
    (folder / "resnet18.yaml").write_text(RESNET18.format(blocks=REPO / "nets" / "blocks" / "resnet.yaml", batch=16))
    solvers = {}
    for name, batch in (("lenet", 64), ("resnet18", 16)):
        path = folder / f"{name}_solver.yaml"
        path.write_text(SOLVER.format(net=f"{name}.yaml", folder=folder))
        solvers[name] = (path, batch)
    return solvers


def worker(solver_path: str, batch: int, warmup: int, iters: int) -> None:
    """One rank: train `warmup` iterations, then time `iters`; rank 0 prints images/s of all ranks."""
    import torch
    import torch.distributed as dist

    from netdef.train.config import load_solver
    from netdef.train.distributed import session
    from netdef.train.solver import Solver

    with session("cpu", 300) as world:
        solver = Solver(load_solver(solver_path), world=world)
        solver.step(warmup)
        if world.distributed:
            dist.barrier()
        start = time.perf_counter()
        solver.step(iters)
        if world.distributed:
            dist.barrier()
        took = time.perf_counter() - start
        if world.is_main:
            print(f"RESULT {iters * batch * world.size / took:.1f} images/s ({torch.get_num_threads()} threads "
                  f"per process)", flush=True)


def measure(solver_path: Path, batch: int, nproc: int, threads: int, warmup: int, iters: int) -> float:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               __file__, "--worker", str(solver_path), "--batch", str(batch), "--warmup", str(warmup),
               "--iters", str(iters)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    found = re.search(r"RESULT (\S+) images/s", result.stdout)
    if result.returncode or not found:
        raise SystemExit(f"{nproc} process(es) failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2, help="the process count compared with 1 (default 2)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch, args.warmup, args.iters)
        return
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as folder:
        for name, (solver_path, batch) in write_nets(Path(folder)).items():
            one_wide = measure(solver_path, batch, 1, cores, args.warmup, args.iters)
            one_thread = measure(solver_path, batch, 1, 1, args.warmup, args.iters)
            many = measure(solver_path, batch, args.nproc, max(1, cores // args.nproc), args.warmup, args.iters)
            one = max(one_wide, one_thread)
            print(f"{name:9s} batch {batch}/process: 1 process {one_wide:8.1f} images/s with {cores} threads, "
                  f"{one_thread:8.1f} with 1; {args.nproc} processes {many:8.1f} images/s; scaling efficiency "
                  f"{many / (args.nproc * one):.0%} (against the faster single process)", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
