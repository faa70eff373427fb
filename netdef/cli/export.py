"""Export a net's TEST phase, without its data, loss and accuracy layers, to an ONNX file (checked
with onnx.checker). The data tops the net reads become the model's inputs; open the file in Netron to
look at it."""
from ..errors import NetdefError, Problem
from ..tools.export import DEFAULT_OPSET, export_onnx


def add_arguments(parser):
    parser.add_argument("net", help="net file (.yaml)")
    parser.add_argument("--weights", help="trained weights: a snapshot (<prefix>_iter_N.pt) or a saved state dict; "
                                          "without it the fillers' initial weights are exported")
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write (model.onnx)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--batch", type=int, help="batch size of every input (default: the net's)")
    parser.add_argument("--level", type=int, default=0, help="net state level (Caffe's -level)")
    parser.add_argument("--stage", action="append", default=[], help="net state stage (repeatable)")


def run(args) -> int:
    if args.batch is not None and args.batch < 1:
        raise NetdefError(Problem("--batch must be at least 1", found=str(args.batch)))
    graph, info = export_onnx(args.net, args.output, args.weights, args.opset, args.level, tuple(args.stage), args.batch)
    inputs = ", ".join(f"{b} {list(info.blob_shapes[b])}" for b in graph.inputs)
    outputs = ", ".join(f"{b} {list(info.blob_shapes[b])}" for b in graph.outputs)
    layers = sum(not spec.impl.is_source for spec in graph.layers)
    print(f"{args.output}: ONNX opset {args.opset}, {layers} layers; inputs {inputs}; outputs {outputs}")
    return 0
