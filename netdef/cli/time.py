"""Benchmark a net like `caffe time`: one warm-up forward-backward, then N iterations run layer by
layer, printing each iteration's time, every layer's average forward and backward time, its share of
the total and its achieved GFLOP/s (2 FLOPs per MAC of the summary), then the averages. Data layers are
replaced by random inputs of their shapes (labels as class indices)."""
from .. import compile_info
from ..errors import NetdefError, Problem
from ..text import table
from .common import add_batch_argument, add_state_arguments, batch_info


def add_arguments(parser):
    parser.add_argument("net", help="net file (.yaml)")
    add_state_arguments(parser)
    parser.add_argument("--iterations", type=int, default=50, help="timed iterations (default 50, as Caffe)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add_batch_argument(parser)


def _ms(seconds_list) -> float:
    return 1000 * sum(seconds_list) / max(len(seconds_list), 1)


def layer_table(layers, total_ms) -> str:
    header = ("layer", "type", "forward ms", "backward ms", "share", "fwd GFLOP/s")
    rows = [header]
    for layer in layers:
        forward, backward = _ms(layer.forward), _ms(layer.backward)
        rate = f"{layer.flops / forward / 1e6:.2f}" if layer.flops and forward > 0 else "-"
        rows.append((layer.name, layer.type, f"{forward:.3f}", f"{backward:.3f}",
                     f"{100 * (forward + backward) / total_ms:.1f}%" if total_ms else "-", rate))
    return "\n".join(table(rows, right=range(2, len(header))))


def run(args) -> int:
    import torch

    from ..tools.timing import Benchmark
    if args.iterations < 1:
        raise NetdefError(Problem("--iterations must be at least 1", found=str(args.iterations)))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise NetdefError(Problem("--device cuda, but PyTorch sees no CUDA device", hint="use --device cpu"))
    info = batch_info(args.net, args)
    bench = Benchmark(compile_info(info), info, args.device)
    batch = ", ".join(f"{blob} {list(info.blob_shapes[blob])}" for blob in info.graph.inputs)
    print("*** Benchmark begins ***")
    print(f"Testing for {args.iterations} iterations ({info.graph.name}, {args.phase}, {args.device}; inputs {batch}).")
    loss = bench.iteration(record=False)
    if loss is not None:
        print(f"Initial loss: {loss:.6g}")
    for i in range(args.iterations):
        bench.iteration()
        print(f"Iteration: {i + 1} forward-backward time: {1000 * (bench.forward_times[-1] + bench.backward_times[-1]):.3f} ms.")
    forward, backward = _ms(bench.forward_times), _ms(bench.backward_times)
    print("Average time per layer:")
    print(layer_table(bench.layers.values(), forward + backward))
    print(f"Average Forward pass: {forward:.3f} ms.")
    print(f"Average Backward pass: {backward:.3f} ms.")
    print(f"Average Forward-Backward: {forward + backward:.3f} ms.")
    print(f"Total Time: {1000 * (sum(bench.forward_times) + sum(bench.backward_times)):.3f} ms.")
    print("*** Benchmark ends ***")
    return 0
