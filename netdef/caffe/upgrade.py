"""Caffe's upgrade rules (upgrade_proto.cpp) for old prototxt nets, and the fields of popular Caffe forks,
applied to parsed messages (netdef.caffe.prototxt.Message) so that positions survive:

- V1 nets (`layers { type: CONVOLUTION ... }`, Caffe before 2015): the type enum becomes the type string,
  `blobs_lr`/`weight_decay`/`param` (names)/`blob_share_mode` become one `param { lr_mult decay_mult name
  share_mode }` per blob, and the data layers' `scale`/`mean_file`/`crop_size`/`mirror` move into
  `transform_param` (UpgradeV1LayerParameter, UpgradeNetDataTransformation).
- V0 nets (`layers { layer { type: "conv" ... } }`, 2013) are refused with the upgrade to run.
- fork fields: `ceil_mode` (DenseNet, ResNeXt, DPN, WRN's Caffe) is the `round_mode` netdef's layer has:
  `ceil_mode: false` is `round_mode: FLOOR`.

Which field is which comes from the layer classes' field tables, so no layer type is named here.
"""
from __future__ import annotations

from ..errors import NetdefError, Problem
from ..fields import as_list

# V1LayerParameter's LayerType enum (caffe.proto), in its order. Each is its V2 type string in capitals,
# words split by `_` (INNER_PRODUCT), except SOFTMAX_LOSS, whose type string has a "With" besides.
V1_TYPE_NAMES = tuple("""
    ABSVAL ACCURACY ARGMAX BNLL CONCAT CONTRASTIVE_LOSS CONVOLUTION DATA DECONVOLUTION DROPOUT DUMMY_DATA
    EUCLIDEAN_LOSS ELTWISE EXP FLATTEN HDF5_DATA HDF5_OUTPUT HINGE_LOSS IM2COL IMAGE_DATA INFOGAIN_LOSS
    INNER_PRODUCT LRN MEMORY_DATA MULTINOMIAL_LOGISTIC_LOSS MVN POOLING POWER RELU SIGMOID
    SIGMOID_CROSS_ENTROPY_LOSS SILENCE SOFTMAX SOFTMAX_LOSS SPLIT SLICE TANH WINDOW_DATA THRESHOLD""".split())

# V1's per-blob fields -> the ParamSpec field each becomes (one ParamSpec per blob).
V1_PARAM_FIELDS = {"param": "name", "blob_share_mode": "share_mode", "blobs_lr": "lr_mult",
                   "weight_decay": "decay_mult"}
V1_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")  # moved from a data layer's block
DROPPED_V1_FIELDS = ("blobs",)  # trained weights written into a prototxt: read from a .caffemodel instead


def _squash(name: str) -> str:
    return name.replace("_", "").upper().replace("WITH", "")


def v1_type(enum_name: str) -> str | None:
    """The V2 type string of a V1 type enum name, among the layer types netdef has (None if it has none)."""
    from ..layers import LAYERS
    if enum_name not in V1_TYPE_NAMES:
        return None
    return next((name for name in LAYERS if _squash(name) == _squash(enum_name)), None)


def _v1_type(layer):
    enum_name = layer.get("type")
    name = v1_type(enum_name) if isinstance(enum_name, str) else None
    if name is None:
        raise NetdefError(Problem(f"unknown V1 layer type {enum_name!r}", layer.where("type"),
                                  expected="one of Caffe's V1 LayerType names netdef has (CONVOLUTION, ...)",
                                  found=str(enum_name)))
    return name


def _v1_params(layer) -> list:
    """One ParamSpec per blob from V1's parallel per-blob lists."""
    columns = {spec: as_list(layer.pop(field)) for field, spec in V1_PARAM_FIELDS.items() if field in layer}
    count = max((len(values) for values in columns.values()), default=0)
    return [{spec: values[i] for spec, values in columns.items() if i < len(values)} for i in range(count)]


def _move_transform_fields(layer, cls):
    """UpgradeNetDataTransformation: a V1 data layer's transform fields into its transform block."""
    from ..front.schema import layer_fields
    fields = layer_fields(cls)
    transform = next((key for key, f in fields.items() if f.kind == "block" and f.fields
                      and all(name in f.fields for name in V1_TRANSFORM_FIELDS)), None)
    for key, block in list(layer.items()):
        if transform is None or key == transform or not hasattr(block, "key_pos"):
            continue
        moved = {name: block.pop(name) for name in V1_TRANSFORM_FIELDS if name in block}
        if moved:
            target = layer.setdefault(transform, block.like())
            target.update(moved)
            layer.key_pos.setdefault(transform, layer.key_pos[key])


def _upgrade_v1_layer(layer):
    from ..layers import LAYERS
    if "layer" in layer:
        raise NetdefError(Problem("this is Caffe's V0 net format (a 'layer' inside each 'layers')",
                                  layer.where("layer"),
                                  hint="upgrade it with Caffe's upgrade_net_proto_text, then netdef import it"))
    out = layer.like(layer)
    type_name = _v1_type(out)
    out["type"] = type_name
    params = _v1_params(out)
    if params:
        out.put("param", params, next(f for f in (*V1_PARAM_FIELDS, "name") if f in layer))
    for field in DROPPED_V1_FIELDS:
        out.pop(field, None)
    _move_transform_fields(out, LAYERS[type_name])
    return out


def upgrade_v1_net(net):
    """A V1 net (`layers` entries with enum types) as a V2 one (`layer` entries); a V2 net as it is."""
    if "layers" not in net:
        return net
    if "layer" in net:
        raise NetdefError(Problem("a net has both 'layer' (V2) and 'layers' (V1) entries", net.where("layers"),
                                  expected="one of them"))
    out = net.like(net)
    out["layers"] = [_upgrade_v1_layer(layer) for layer in as_list(net["layers"])]
    out.rename("layers", "layer")
    return out


def upgrade_fork_fields(layer, cls):
    """Fields of Caffe forks as the netdef fields they mean: `ceil_mode: B` in a block whose netdef fields have
    `round_mode` is `round_mode: CEIL` (true, Caffe's own rounding) or `FLOOR` (false)."""
    from ..front.schema import layer_fields
    fields = layer_fields(cls)
    for key, block in layer.items():
        field = fields.get(key)
        if not (hasattr(block, "key_pos") and "ceil_mode" in block and field is not None and field.fields
                and "round_mode" in field.fields):
            continue
        ceil = block.pop("ceil_mode")
        if not isinstance(ceil, bool):
            raise NetdefError(Problem("'ceil_mode' must be true or false", block.where("ceil_mode"), found=str(ceil)))
        block.put("round_mode", "CEIL" if ceil else "FLOOR", "ceil_mode")
    return layer


def apply_caffe_defaults(layer, cls):
    """The fields a Caffe layer leaves out whose Caffe default is not netdef's (the class's caffe_defaults,
    e.g. a Data layer's backend, LEVELDB in Caffe), set to Caffe's value at the block's place."""
    for key, defaults in cls.caffe_defaults.items():
        block = layer.get(key)
        if hasattr(block, "key_pos"):
            for field, value in defaults.items():
                if field not in block:
                    block.put(field, value, field)
    return layer
