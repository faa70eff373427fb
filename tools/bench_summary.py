"""How long `netdef summary` takes on a large net (ResNet-152 by default), stage by stage and as a command.

    python tools/bench_summary.py [NET] [--repeat N]

In process: the best of N runs of each stage (load the YAML with positions, validate and expand the blocks,
build the graph, infer shapes and costs). As commands: the wall time of `netdef summary NET` against
`python -c "import torch"`, the import that `summary` never pays (the script checks it stays unimported).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netdef.front.expand import expand  # noqa: E402
from netdef.front.graph import NetState, build_graph  # noqa: E402
from netdef.front.infer import infer  # noqa: E402
from netdef.front.load import load_yaml  # noqa: E402


def stage_times(net: Path, repeat: int) -> dict:
    best = {}
    for _ in range(repeat):
        times = {}
        start = time.perf_counter()
        data, source = load_yaml(net)
        times["load"] = time.perf_counter() - start
        start = time.perf_counter()
        expanded = expand(data, source)
        times["validate + expand"] = time.perf_counter() - start
        start = time.perf_counter()
        graph = build_graph(expanded, NetState("TEST"))
        times["graph"] = time.perf_counter() - start
        start = time.perf_counter()
        info = infer(graph)
        times["infer"] = time.perf_counter() - start
        times["total"] = sum(times.values())
        best = {k: min(v, best.get(k, v)) for k, v in times.items()}
    best["layers"] = len(info.layers)
    return best


def wall(command: list, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        runs.append(time.perf_counter() - start)
    return min(runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("net", nargs="?", default=str(ROOT / "nets" / "resnet152.yaml"))
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best is reported")
    args = parser.parse_args(argv)
    times = stage_times(Path(args.net), args.repeat)
    print(f"{Path(args.net).name}: {times.pop('layers')} layers (TEST phase), best of {args.repeat} runs")
    for stage, seconds in times.items():
        print(f"  {stage:<18} {seconds * 1000:8.1f} ms")
    if "torch" in sys.modules:
        print("error: summarising imported torch", file=sys.stderr)
        return 1
    python = sys.executable
    summary = wall([python, "-m", "netdef", "summary", args.net, "--phase", "TEST"], args.repeat)
    bare = wall([python, "-c", "import netdef.cli"], args.repeat)
    torch_import = wall([python, "-c", "import torch"], args.repeat)
    print(f"  netdef summary (command)       {summary:6.2f} s wall")
    print(f"  python -c 'import netdef.cli'  {bare:6.2f} s wall (interpreter start and netdef's imports)")
    print(f"  python -c 'import torch'       {torch_import:6.2f} s wall (never paid by summary)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
