"""Export a net's deploy form (its TEST phase without data, loss and metric layers) to ONNX, or its TEST
phase with its weights to a Caffe .caffemodel.

The data layers' tops that the remaining layers read become the ONNX graph's inputs, with the shapes the
net file gives them; the tops nothing reads become its outputs. Needs the `onnx` extra
(`pip install "netdef[onnx]"`): torch's exporter writes the model through onnxscript.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..errors import NetdefError, Problem
from ..front.graph import Graph

DEFAULT_OPSET = 18


def deploy_graph(graph: Graph) -> Graph:
    """The layers a deployed net runs, as their classes say (Layer.deployed): the plain layers, without
    losses and metrics, fed by the tops they read of the data layers that make them."""
    kept = [spec for spec in graph.layers if spec.impl.deployed()]
    consumed = {blob for spec in kept for blob in spec.bottoms}
    layers = [spec for spec in kept if spec.impl.compiled() or consumed & set(spec.tops)]
    produced = {top for spec in layers if spec.impl.compiled() for top in spec.tops}
    inputs = [blob for blob in graph.inputs if blob in consumed]
    return Graph(graph.name, graph.state, layers, inputs, sorted(produced - consumed))


def check_exportable(graph: Graph) -> None:
    """Every layer of a deploy graph must export (Layer.exportable)."""
    refused = [spec.problem(f"{spec.type} layers cannot be exported to ONNX") for spec in graph.layers
               if spec.impl.compiled() and not spec.impl.exportable]
    if refused:
        raise NetdefError(refused)


def load_weights(net, state: dict, path, graph=None):
    """Copies the weights of the net's layers (compiled from `graph`), every one of them (export refuses a
    partly trained net); layers of other phases in the file are ignored."""
    from ..train.snapshot import copy_weights
    rows = copy_weights(net, state, {}, graph)
    missing = [f"{layer}.{blob}" for layer, blob, status, _, _ in rows if status == "missing in file"]
    wrong = [f"{layer}.{blob} {list(stored)} (net: {list(own)})"
             for layer, blob, status, stored, own in rows if status == "shape mismatch"]
    if missing or wrong:
        raise NetdefError(Problem(f"weights in {path} do not fit the net",
                                  expected="a value for every parameter, of the net's shape",
                                  found="; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                                                f"shape of {', '.join(wrong)}" if wrong else ""]))))


def deploy_net(path, weights=None, level=0, stages=(), batch=None):
    """The compiled deploy net of a net file (eval mode), its graph and its shape info; `batch` replaces
    the batch size of every input."""
    from ..api import load_graph
    from ..build import compile_graph
    from ..front.infer import infer
    graph = deploy_graph(load_graph(path, "TEST", level, stages))
    if not graph.inputs:
        raise NetdefError(Problem(f"{path}: the TEST phase has no input that its layers read",
                                  expected="an Input or Data layer in the TEST phase"))
    check_exportable(graph)
    info = infer(graph)
    if batch is not None:
        info = infer(graph, {blob: (batch,) + tuple(info.blob_shapes[blob][1:]) for blob in graph.inputs})
    net = compile_graph(graph, info)
    if weights is not None:
        from ..train.snapshot import load_weights as read_weights
        load_weights(net, read_weights(weights), weights, graph)
    return net.eval(), graph, info


def export_caffemodel(path, output, weights=None, level=0, stages=()) -> Graph:
    """Write the TEST phase of a net file, every layer with its blobs, as a .caffemodel that Caffe loads
    (`caffe test -weights`, `caffe train -weights`: matched by layer name); returns its graph."""
    from ..api import load_graph
    from ..build import compile_graph
    from ..caffe.caffemodel import write_caffemodel
    from ..front.infer import infer
    graph = load_graph(path, "TEST", level, stages)
    net = compile_graph(graph, infer(graph))
    if weights is not None:
        from ..train.snapshot import load_weights as read_weights
        load_weights(net, read_weights(weights), weights, graph)
    write_caffemodel(graph, net, output)
    return graph


def example_inputs(graph: Graph, info, seed=0) -> dict:
    """Random inputs of the net's input shapes, keyed by the compiled forward's argument names."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    return {blob: torch.randn(info.blob_shapes[blob], generator=generator) for blob in graph.inputs}


def export_onnx(path, output, weights=None, opset=DEFAULT_OPSET, level=0, stages=(), batch=None):
    """Writes the ONNX model and checks it with onnx.checker; returns the deploy graph."""
    import torch
    try:
        import onnx
    except ImportError:
        raise NetdefError(Problem("ONNX export needs the onnx packages", hint='pip install "netdef[onnx]"')) from None
    net, graph, info = deploy_net(path, weights, level, stages, batch)
    inputs = example_inputs(graph, info)
    names = [net.input_names[blob] for blob in graph.inputs]
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():  # the exporter's own deprecation notices are not the user's concern
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (), kwargs={net.input_names[b]: t for b, t in inputs.items()},
                                    input_names=names, output_names=list(graph.outputs), opset_version=opset,
                                    dynamo=True, verbose=False, external_data=False)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    program.save(str(output))
    onnx.checker.check_model(onnx.load(str(output)), full_check=True)
    return graph, info
