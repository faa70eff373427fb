"""Export a net's TEST phase, without its data, loss and accuracy layers, to an ONNX file (checked
with onnx.checker). The data tops the net reads become the model's inputs; open the file in Netron to
look at it. An output ending in .caffemodel is Caffe's weights file instead: every layer of the TEST phase
with its blobs, which Caffe loads by layer name."""
from ..caffe.caffemodel import is_caffemodel
from ..tools.export import DEFAULT_OPSET, export_caffemodel, export_onnx
from .common import add_batch_argument, add_level_stage_arguments, check_batch


def add_arguments(parser):
    parser.add_argument("net", help="net file (.yaml)")
    parser.add_argument("--weights", help="trained weights: a snapshot (<prefix>_iter_N.pt), a saved state dict or "
                                          "a .caffemodel; without it the fillers' initial weights are exported")
    parser.add_argument("-o", "--output", required=True,
                        help="file to write: ONNX (model.onnx), or Caffe weights (model.caffemodel; --opset and "
                             "--batch do not apply)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    add_batch_argument(parser)
    add_level_stage_arguments(parser)


def run(args) -> int:
    if is_caffemodel(args.output):
        graph = export_caffemodel(args.net, args.output, args.weights, args.level, tuple(args.stage))
        blobs = sum(len(spec.impl.param_names()) for spec in graph.layers if spec.impl.compiled())
        print(f"{args.output}: Caffe NetParameter '{graph.name}', {len(graph.layers)} layers, {blobs} blobs")
        return 0
    check_batch(args)
    graph, info = export_onnx(args.net, args.output, args.weights, args.opset, args.level, tuple(args.stage), args.batch)
    inputs = ", ".join(f"{b} {list(info.blob_shapes[b])}" for b in graph.inputs)
    outputs = ", ".join(f"{b} {list(info.blob_shapes[b])}" for b in graph.outputs)
    layers = sum(spec.impl.compiled() for spec in graph.layers)
    print(f"{args.output}: ONNX opset {args.opset}, {layers} layers; inputs {inputs}; outputs {outputs}")
    return 0
