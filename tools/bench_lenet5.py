"""LeNet-5 (LeCun et al. 1998) trained by the shipped solver: the test accuracy reached, and the time taken.

    python tools/bench_lenet5.py [--iterations 1500] [--device cpu] [--threads N] [--min-accuracy 0.95]

Runs `netdef train` on solvers/lenet5_1998_solver.yaml (nets/lenet5_1998.yaml on the bundled 4,000 MNIST
training digits, batch 32; tests on the 1,000 t10k digits every 500 iterations) as a user does, in a
temporary folder that receives its run folder and closing snapshot (the checkout gets nothing). Only
--iterations (max_iter, and test_interval if it does not divide them) and --device change the solver.
Prints the test accuracies as the run reports them, then the result line: the final accuracy, the wall
time of the run (start-up and tests included) and the median iterations/s it displayed. Exits with status
1 if the final accuracy is below --min-accuracy: the solver's claim is about 96% after its 1,500
iterations (95% or more). On a busy machine pass --threads 1: two torch threads fighting other work for
two cores can make the run ten times slower.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOLVER = REPO / "solvers" / "lenet5_1998_solver.yaml"


def solver_copy(folder: Path, iterations: int | None, device: str | None) -> Path:
    """The shipped solver's text, its net named by absolute path, its snapshots and run folder under `folder`."""
    text = SOLVER.read_text(encoding="utf-8")
    net = re.search(r"^net: (\S+)", text, re.M).group(1)
    interval = int(re.search(r"^test_interval: (\d+)", text, re.M).group(1))
    fields = {"net": (SOLVER.parent / net).resolve(), "snapshot_prefix": folder / "snapshots" / "lenet5_1998",
              "log_dir": folder / "run", "max_iter": iterations, "device": device,
              # a run cut short still ends with a test
              "test_interval": iterations if iterations is not None and iterations % interval else None}
    for field, value in fields.items():
        if value is None:
            continue
        line = f"{field}: {json.dumps(str(value)) if isinstance(value, Path) else value}"
        text, found = re.subn(rf"^{field}:.*$", lambda _: line, text, flags=re.M)
        if not found:
            text = text.rstrip("\n") + f"\n{line}\n"
    path = folder / SOLVER.name
    path.write_text(text, encoding="utf-8")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, help="max_iter (default: the solver's, 1500)")
    parser.add_argument("--device", help="the solver's device by default (cpu)")
    parser.add_argument("--threads", type=int, help="torch threads of the run (OMP_NUM_THREADS; default: torch's)")
    parser.add_argument("--min-accuracy", type=float, default=0.95,
                        help="exit with status 1 below this final test accuracy (default 0.95; 0 never fails)")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_lenet5_") as folder:
        solver = solver_copy(Path(folder), args.iterations, args.device)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "netdef", "train", str(solver)], cwd=folder, env=env,
                                capture_output=True, text=True)
        seconds = time.perf_counter() - start
    log = result.stdout + result.stderr
    if result.returncode != 0:
        sys.exit(f"netdef train failed (status {result.returncode}):\n{log[-3000:]}")
    tests = [(int(i), float(a)) for i, a in re.findall(
        r"^Iteration (\d+), Testing net \(#0\)\n(?:.*\n)*?.*Test net output #\d+: accuracy = (\S+)", log, re.M)]
    rates = [float(r) for i, r in re.findall(r"^Iteration (\d+) \(([\d.e+-]+) iter/s", log, re.M) if int(i)]
    iterations = int(re.findall(r"^Iteration (\d+)", log, re.M)[-1])
    for iteration, accuracy in tests:
        print(f"  iteration {iteration:5d}: test accuracy {accuracy:.4f}")
    if not tests:
        sys.exit(f"no test accuracy in the log:\n{log[-3000:]}")
    accuracy = tests[-1][1]
    rate = f", {statistics.median(rates):.1f} iterations/s displayed (median)" if rates else ""
    print(f"LeNet-5 (1998), {SOLVER.relative_to(REPO)}, {iterations} iterations: test accuracy {accuracy:.4f}; "
          f"netdef train took {seconds:.1f} s{rate}")
    if accuracy < args.min_accuracy:
        print(f"below --min-accuracy {args.min_accuracy}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
