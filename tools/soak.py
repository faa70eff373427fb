"""Soak test: SIGKILL `netdef train` at random moments, resume each time, and check that the run that was
killed N times ends bitwise equal to one that never was.

    python tools/soak.py --kills 20            # LeNet on the bundled digits, 300 iterations

Both runs use the shipped LeNet solver in a temporary folder, cut to --iterations with a snapshot every
--snapshot-every iterations and a test pass every 100. The killed run is started, killed with SIGKILL after
a random delay (uniform over the time an uninterrupted run takes), and resumed from its newest snapshot
(`--snapshot`), --kills times; then it runs to the end. Checked: no partial or temporary snapshot file
is ever left visible, every resume starts, and the final snapshots of both runs hold identical weights,
solver history, iteration, random states and data positions. Prints one report line.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def prepare(folder: Path, iterations: int, every: int) -> Path:
    """A copy of the LeNet solver and net in `folder`, reading the bundled digits where they are."""
    net = (ROOT / "nets" / "lenet.yaml").read_text().replace("../data/mnist5k", str(ROOT / "data" / "mnist5k"))
    (folder / "lenet.yaml").write_text(net)
    solver = (ROOT / "solvers" / "lenet_solver.yaml").read_text()
    for field, value in (("net", "lenet.yaml"), ("max_iter", iterations), ("snapshot", every),
                         ("snapshot_prefix", "snapshots/lenet"), ("test_interval", 100), ("display", 50)):
        solver = re.sub(rf"^{field}:.*$", f"{field}: {value}", solver, flags=re.M)
    (folder / "solver.yaml").write_text(solver + "log_dir: runs\n")
    return folder / "solver.yaml"


def command(solver: Path, snapshot: Path | None) -> list:
    resume = ["--snapshot", str(snapshot)] if snapshot else ["--overwrite"]
    return [sys.executable, "-m", "netdef", "train", str(solver), "--device", "cpu"] + resume


def snapshots(folder: Path) -> list:
    found = [(int(re.search(r"_iter_(\d+)\.pt$", p.name)[1]), p) for p in (folder / "snapshots").glob("lenet_iter_*.pt")]
    return [p for _, p in sorted(found)]


def run_to_end(solver: Path, snapshot=None, env=None) -> float:
    start = time.perf_counter()
    subprocess.run(command(solver, snapshot), cwd=solver.parent, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def killed_once(solver: Path, delay: float, env) -> None:
    newest = (snapshots(solver.parent) or [None])[-1]
    process = subprocess.Popen(command(solver, newest), cwd=solver.parent, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
    leftovers = [p.name for p in (solver.parent / "snapshots").glob("*")
                 if p.name.startswith(".") or not p.name.endswith(".pt")] if (solver.parent / "snapshots").exists() else []
    if any(not name.startswith(".") for name in leftovers):
        raise SystemExit(f"a partial snapshot file is visible after a kill: {leftovers}")


def same(a, b, path="snapshot") -> list:
    """Paths where two loaded snapshots differ (tensors compared bitwise)."""
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and \
            torch.equal(a, b) else [path]
    if isinstance(a, dict):
        keys = set(a) | set(b) if isinstance(b, dict) else set(a)
        if not isinstance(b, dict) or set(a) != set(b):
            return [path]
        return [d for k in sorted(keys, key=str) for d in same(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [path]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in same(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--snapshot-every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    env = dict(os.environ, OMP_NUM_THREADS="1")  # bitwise equality needs the same reduction order
    from netdef.train.snapshot import load_snapshot
    with tempfile.TemporaryDirectory(prefix="netdef-soak-") as temp:
        clean, killed = Path(temp) / "clean", Path(temp) / "killed"
        clean.mkdir(), killed.mkdir()
        reference = prepare(clean, args.iterations, args.snapshot_every)
        seconds = run_to_end(reference, env=env)
        solver = prepare(killed, args.iterations, args.snapshot_every)
        for _ in range(args.kills):
            killed_once(solver, rng.uniform(0.2, seconds), env)
        resumes = len(snapshots(killed))
        newest = (snapshots(killed) or [None])[-1]
        if newest is None or not newest.name.endswith(f"_iter_{args.iterations}.pt"):
            run_to_end(solver, newest, env)
        final = f"lenet_iter_{args.iterations}.pt"
        differences = same(load_snapshot(clean / "snapshots" / final), load_snapshot(killed / "snapshots" / final))
        differences = [d for d in differences if not d.startswith("snapshot.config")]  # paths of the two folders
        shutil.rmtree(killed / "runs", ignore_errors=True)
    status = "bitwise equal" if not differences else f"DIFFERENT at {', '.join(differences[:5])}"
    print(f"soak: {args.kills} SIGKILLs over a {args.iterations}-iteration LeNet run ({seconds:.1f} s uninterrupted), "
          f"{resumes} snapshots on disk at the end, final snapshot {status} to the uninterrupted run's")
    return 0 if not differences else 1


if __name__ == "__main__":
    sys.exit(main())
