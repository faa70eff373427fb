"""Ten-crop testing (`netdef test --oversample`), as Caffe's python classifier oversamples: every test
image is cut into its 4 corner crops and its centre crop plus their mirrors; the net scores all ten and
the layers that read the labels (loss, accuracy) see each image's softmax probabilities averaged over
its crops. The data layers serve uncropped images; the cropping happens here, on the device.
"""
from __future__ import annotations

import torch

from ..data.augment import average_crops, ten_crops
from ..build import module_name
from ..errors import NetdefError, Problem
from ..data.readers import DataFeed

CROPS = 10


def _crop_size(graph) -> int:
    sizes = {spec.params["transform_param"]["crop_size"] for spec in graph.layers
             if not spec.impl.compiled() and "transform_param" in spec.params}
    sizes.discard(0)
    if len(sizes) != 1:
        raise NetdefError(Problem("--oversample needs the TEST net's data layers to crop (one crop_size)",
                                  expected="transform_param: {crop_size: N}",
                                  found=f"crop sizes {sorted(sizes)}" if sizes else "no crop_size"))
    return sizes.pop()


def _score_producers(graph) -> list:
    """(layer that last writes a score blob, the blob) for every blob that is the first bottom of a layer
    reading the labels (a source layer's second top)."""
    labels = {spec.tops[1] for spec in graph.layers if not spec.impl.compiled() and len(spec.tops) > 1}
    producers = {}
    for position, spec in enumerate(graph.layers):
        if len(spec.bottoms) > 1 and labels & set(spec.bottoms[1:]) and spec.bottoms[0] not in labels:
            blob = spec.bottoms[0]
            writer = next(s for s in reversed(graph.layers[:position]) if blob in s.tops)
            producers[writer.name] = (writer, blob)
    if not producers:
        raise NetdefError(Problem("--oversample needs layers that read the labels (a loss or an accuracy) to "
                                  "average the crops' scores for"))
    return list(producers.values())


def average_scores(net: torch.fx.GraphModule, graph) -> torch.fx.GraphModule:
    """Rewrite the compiled net so that every score blob read with the labels is replaced by the log of
    its crop-averaged softmax (netdef.augment.average_crops)."""
    nodes = {node.target: node for node in net.graph.nodes if node.op == "call_module"}
    for writer, blob in _score_producers(graph):
        if len(writer.tops) != 1:
            raise NetdefError(writer.problem(f"--oversample cannot average '{blob}': its layer has several tops",
                                             ("top",)))
        node = nodes[module_name(writer.name)]
        with net.graph.inserting_after(node):
            averaged = net.graph.call_function(average_crops, (node, CROPS))
        node.replace_all_uses_with(averaged, delete_user_cb=lambda user: user is not averaged)
    net.graph.lint()
    net.recompile()
    return net


class TenCropFeed:
    """A DataFeed whose image tops are replaced by their ten crops (labels stay one per image)."""

    def __init__(self, feed: DataFeed, image_inputs: set, crop: int):
        self.feed, self.image_inputs, self.crop = feed, image_inputs, crop

    def next(self) -> dict:
        inputs = self.feed.next()
        return {name: ten_crops(value, self.crop) if name in self.image_inputs else value
                for name, value in inputs.items()}


def ten_crop_feed(net, graph, device) -> TenCropFeed:
    """The readers of `graph`'s data layers serving uncropped images (their crop_size set to 0), with the
    crops cut on the device; call before anything else reads the layers' parameters."""
    crop = _crop_size(graph)
    images = set()
    for spec in graph.layers:
        if not spec.impl.compiled() and "transform_param" in spec.params:
            spec.params["transform_param"]["crop_size"] = 0
            images.add(net.input_names[spec.tops[0]])
    return TenCropFeed(DataFeed(graph, net.input_names, graph.state.phase, 0, device), images, crop)


def build_ten_crop_net(source, phase, device, level=0, stages=(), layout=torch.contiguous_format) -> tuple:
    """(net averaging the crops' scores, TenCropFeed, submodule name -> layer name) for `netdef test`, from
    `source`, a netdef.Net (read and expanded once by the caller). Its graph of this state serves
    uncropped images afterwards (ten_crop_feed)."""
    from ..train.nets import layer_names
    info = source.info(phase, level, stages)
    net = source.compile(phase, level, stages).to(device, memory_format=layout)
    feed = ten_crop_feed(net, info.graph, device)
    return average_scores(net, info.graph), feed, layer_names(info.graph)
