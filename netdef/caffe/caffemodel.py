""".caffemodel files: Caffe's trained weights, a binary NetParameter whose layers carry their blobs.

Reading gives `CaffeBlobs`, the blobs of every layer by layer name (V2 `layer` and legacy V1 `layers`);
copying them into a compiled net (`keyed`) matches layers by name, as Caffe's CopyTrainedLayersFrom does,
and a layer's blobs by position in Caffe's blob order, its class's param_names(). Writing
(`write_caffemodel`) gives a file Caffe loads: V2 layers with name, type, bottoms, tops, phase and blobs
with BlobShape.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import NetdefError, Problem
from ..paths import require_file
from . import proto

SUFFIX = ".caffemodel"
MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes
HDF5_SUFFIX = ".caffemodel.h5"  # Caffe's snapshot_format: HDF5


def is_caffemodel(path) -> bool:
    return Path(path).suffix == SUFFIX or Path(path).name.endswith(HDF5_SUFFIX)


class CaffeBlobs(dict):
    """Layer name -> that layer's blobs (float32 tensors, Caffe's order), as a .caffemodel holds them."""

    def keyed(self, net, graph=None) -> dict:
        """The blobs named as `net`'s state_dict names them (`<module>.<blob>`), each layer's in Caffe's order:
        its class's param_names() when `graph` (the net's Graph) is given, else the order its module holds
        them (the same for every layer but BatchNorm with scale_bias and MultiHeadAttention). A blob of a
        layer the net lacks, or past the blobs the net's layer holds, is named `<module>.<index>` (a 'not
        in net' row). Blobs in Caffe's legacy 4-D shape (1 x 1 x N x K for an InnerProduct weight) take the
        net's shape when they are that shape with leading ones, as Caffe's ShapeEquals allows."""
        from ..build import module_name
        modules = dict(net.named_children())
        order = caffe_blob_order(graph) if graph is not None else {}
        keyed = {}
        for layer, blobs in self.items():
            name = module_name(layer)
            own = modules[name].state_dict() if name in modules else {}
            names = list(order.get(name, own))
            for index, tensor in enumerate(blobs):
                blob = names[index] if index < len(names) else str(index)
                target = own.get(blob)
                if target is not None and _legacy_match(tensor.shape, target.shape):
                    tensor = tensor.reshape(target.shape)
                keyed[f"{name}.{blob}"] = tensor
        return keyed


def caffe_blob_order(graph) -> dict:
    """Submodule name -> its blob names in Caffe's order, for every compiled layer of `graph`."""
    from ..build import module_name
    return {module_name(spec.name): spec.impl.param_names() for spec in graph.layers if spec.impl.compiled()}


def _legacy_match(stored, target) -> bool:
    """A 4-D legacy blob shape that is `target` with leading ones (Caffe's LegacyShape)."""
    if stored == target or len(stored) != 4 or len(target) > 4:
        return False
    padded = (1,) * (4 - len(target)) + tuple(target)
    return tuple(stored) == padded


def _damaged(path, what: str) -> NetdefError:
    return NetdefError(Problem(f"{path} is damaged or not a .caffemodel: {what}",
                               expected="a binary NetParameter written by Caffe (or by netdef export)",
                               hint="the file may be truncated or damaged; download or copy it again"))


def read_message(path, name: str, kind: str):
    """Parse the binary message `name` from `path`; a missing, unreadable or damaged file is a NetdefError
    naming it (`kind` says what the file should be)."""
    from google.protobuf.message import DecodeError
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NetdefError(Problem(f"cannot read {path}: {exc.strerror or exc}", expected=kind)) from None
    if not data:
        raise NetdefError(Problem(f"{path} is empty", expected=kind))
    try:
        return proto.parse(name, data)
    except (DecodeError, RuntimeError, ValueError) as exc:  # upb reports some damage as RuntimeError
        reason = str(exc).rpartition(": ")[2] or type(exc).__name__  # without protobuf's "Error parsing message"
        raise NetdefError(Problem(f"{path} is damaged: {reason}", expected=kind,
                                  hint="the file may be truncated; copy it again")) from None


def blob_tensor(blob, path, where: str):
    """A BlobProto as a float32 tensor of its shape (BlobShape, or the legacy num/channels/height/width)."""
    import numpy as np
    import torch
    shape = tuple(blob.shape.dim) if blob.HasField("shape") else (blob.num, blob.channels, blob.height, blob.width)
    if len(shape) > MAX_BLOB_AXES or any(dim < 0 for dim in shape):
        raise NetdefError(Problem(f"{path} is damaged: {where} has a shape no Caffe blob has",
                                  expected=f"at most {MAX_BLOB_AXES} dimensions, none negative",
                                  found=f"shape {list(shape)}" if len(shape) <= MAX_BLOB_AXES else
                                  f"{len(shape)} dimensions", hint="the file may be damaged; copy it again"))
    values = blob.double_data if len(blob.double_data) else blob.data
    count = math.prod(shape)  # Python's integers: dims of 2**62 must not wrap around to a count that fits
    if len(values) != count:
        raise NetdefError(Problem(f"{path} is damaged: {where} holds {len(values)} values for its shape "
                                  f"{list(shape)} ({count} values)", hint="the file may be truncated; copy it again"))
    return torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(shape))


def read_caffemodel(path) -> CaffeBlobs:
    """The blobs of every layer of a .caffemodel that has blobs, by layer name (a later layer of the same
    name replaces an earlier one, as in Caffe's copy)."""
    path = require_file(path, "weights")
    if path.name.endswith(HDF5_SUFFIX):
        return CaffeBlobs(read_hdf5_blobs(path, "data"))
    net = read_message(path, "NetParameter", "a binary NetParameter written by Caffe (.caffemodel)")
    layers = list(net.layer) + list(net.layers)
    if not layers:
        raise _damaged(path, "it holds no layers")
    blobs = {}
    for layer in layers:
        if len(layer.blobs):
            blobs[layer.name] = [blob_tensor(blob, path, f"blob {k} of layer '{layer.name}'")
                                 for k, blob in enumerate(layer.blobs)]
    if not blobs:
        raise _damaged(path, f"none of its {len(layers)} layers holds a blob")
    return CaffeBlobs(blobs)


def read_hdf5_blobs(path: Path, group: str) -> dict:
    """Caffe's HDF5 snapshots: in `group`, a subgroup per layer holding its blobs as datasets "0", "1", ...
    (Net::ToHDF5); the weights file's group is "data". Returns {layer: [float32 tensors]}."""
    import h5py
    import numpy as np
    import torch
    try:
        with h5py.File(path, "r") as file:
            if group not in file:
                raise _damaged(path, f"it has no '{group}' group, as Caffe's HDF5 snapshots do")
            return {name: [torch.from_numpy(np.asarray(layer[k], dtype=np.float32)) for k in sorted(layer, key=int)]
                    for name, layer in file[group].items() if len(layer)}
    except (OSError, ValueError, KeyError) as exc:  # h5py: OSError for a damaged file, ValueError for odd names
        raise _damaged(path, str(exc).splitlines()[0]) from None


def blob_proto(tensor, message):
    """Fill the BlobProto `message` with a tensor's shape and float32 values."""
    message.shape.dim.extend(tensor.shape)
    message.data.extend(tensor.detach().to("cpu").float().reshape(-1).tolist())
    return message


def write_caffemodel(graph, net, output) -> None:
    """Write `net` (compiled from `graph`) as a .caffemodel: every layer of the graph in order, each compiled
    layer's blobs in Caffe's order (its class's param_names())."""
    from ..build import module_name
    message = proto.message("NetParameter")(name=graph.name)
    modules, order = dict(net.named_children()), caffe_blob_order(graph)
    for spec in graph.layers:
        layer = message.layer.add(name=spec.name, type=spec.type, bottom=spec.bottoms, top=spec.tops,
                                  phase=graph.state.phase)
        name = module_name(spec.name)
        for blob in order.get(name, ()):
            blob_proto(getattr(modules[name], blob), layer.blobs.add())
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(message.SerializeToString())
    except OSError as exc:
        raise NetdefError(Problem(f"cannot write {output}: {exc.strerror or exc}")) from None
