"""Training speed beside a CPU hog: netdef's LeNet and the hand-written PyTorch twin (tools/bench_lenet.py)
on an idle machine and with one busy-looping process per core, each run in its own process.

    python tools/bench_contention.py [--iterations 200]

Four trainers: netdef as `netdef train` sets it up (netdef.train.threads: threads for the free cores,
passive OpenMP waiting on a busy machine), netdef with torch's defaults (a spinning thread per core), and
the twin with torch's defaults. Each one's wall time and CPU seconds (user + system of its process) for
--iterations of LeNet at batch 64 after a warm-up are printed, idle and with the hog, with the ratios:
slowdown under the hog, and netdef against the twin in the same conditions.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAINERS = ("netdef", "netdef (torch defaults)", "twin (torch defaults)")


def child(which: str, iterations: int, warmup: int) -> None:
    """One trainer in this process: prints {"wall": s, "cpu": s, "threads": n} of the timed iterations."""
    if which == "netdef":
        sys.path.insert(0, str(HERE.parent))
        from netdef.train.threads import choose_threads
        choose_threads()
    sys.path.insert(0, str(HERE))
    import torch
    from bench_lenet import Twin, netdef_solver
    trainer = Twin("cpu") if which.startswith("twin") else netdef_solver("cpu")
    trainer.step(warmup)
    usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    trainer.step(iterations)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    print(json.dumps({"wall": wall, "cpu": cpu, "threads": torch.get_num_threads(),
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY", "torch's default")}))


def run_trainer(which: str, args) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    command = [sys.executable, __file__, "--child", which, "--iterations", str(args.iterations),
               "--warmup", str(args.warmup)]
    return json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)


def start_hog(count: int) -> list:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop_hog(hog: list) -> None:
    for process in hog:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.iterations, args.warmup)
        return
    cores = len(os.sched_getaffinity(0))
    print(f"LeNet, batch 64, {args.iterations} iterations; {cores} cores; load average {os.getloadavg()[0]:.2f} "
          "before the idle runs (other work on the machine counts as load too)")
    results = {}
    for condition in ("idle", "hog"):
        hog = start_hog(cores) if condition == "hog" else []
        try:
            if hog:
                time.sleep(2)  # let the load average see the hog, as a training started on a busy machine does
            for which in TRAINERS:
                results[condition, which] = run_trainer(which, args)
        finally:
            stop_hog(hog)
    for (condition, which), r in results.items():
        print(f"  {condition:4s} {which:24s} {r['wall']:7.2f} s wall {r['cpu']:7.2f} CPU-s "
              f"({r['threads']} threads, wait policy {r['wait_policy']})")
    for which in TRAINERS:
        idle, busy = results["idle", which], results["hog", which]
        print(f"{which:24s} slowdown beside the hog: {busy['wall'] / idle['wall']:.2f}x wall, "
              f"{busy['cpu'] / idle['cpu']:.2f}x CPU")
    for condition in ("idle", "hog"):
        ours, twin = results[condition, "netdef"], results[condition, "twin (torch defaults)"]
        print(f"{condition:4s}: netdef/twin wall time {ours['wall'] / twin['wall']:.2f} (below 1: netdef faster), "
              f"CPU {ours['cpu'] / twin['cpu']:.2f}")


if __name__ == "__main__":
    main()
