"""Layers without bottoms that need no data files: Input (deploy nets) and DummyData."""
from __future__ import annotations

from ..fields import Block, Int
from .fillers import FillerField, fill
from .base import DATA, Layer, ShapeError, register

LEGACY_AXES = ("num", "channels", "height", "width")
BLOB_SHAPE = Block({"dim": Int(None, "sizes, batch first", repeated=True, minimum=1)}, "a blob shape",
                   repeated=True)


def _shapes(spec, shapes, path):
    if not shapes:
        return []
    dims = [tuple(s["dim"]) for s in shapes]
    if len(dims) == 1:
        return dims * len(spec.tops)
    if len(dims) != len(spec.tops):
        raise ShapeError("give one 'shape' for all tops or one per top", expected=f"1 or {len(spec.tops)}",
                         found=str(len(dims)), path=path)
    return dims


@register
class Input(Layer):
    """The inputs of a deploy net: fixed shapes, fed by the caller."""
    summary = "net inputs with fixed shapes (deploy nets)"
    blocks = {"input_param": {"shape": BLOB_SHAPE}}
    bottoms = (0, 0)
    tops = (1, None)
    role = DATA
    kind = "data"

    def check(self):
        if not self.p["shape"]:
            yield (("input_param",), "Input needs a shape", "input_param: {shape: {dim: [N, C, H, W]}}", None)

    def infer(self, shapes):
        return _shapes(self.spec, self.p["shape"], ("input_param", "shape"))


@register
class DummyData(Layer):
    """Tops filled by fillers: for tests and benchmarks."""
    summary = "generated tops (fillers) for tests and benchmarks"
    blocks = {"dummy_data_param": {"shape": BLOB_SHAPE,
                                   "data_filler": FillerField("filler of each top (one for all, or one per top)",
                                                              repeated=True),
                                   **{axis: Int(None, f"deprecated 4-D form (num, channels, height, width; all four, "
                                                      f"instead of shape): {axis} of each top (one for all, or one "
                                                      f"per top)", repeated=True, minimum=1) for axis in LEGACY_AXES}}}
    bottoms = (0, 0)
    tops = (1, None)
    role = DATA
    kind = "data"

    def check(self):
        fillers = self.p["data_filler"]
        if len(fillers) not in (0, 1, len(self.spec.tops)):
            yield (("dummy_data_param", "data_filler"), "give one 'data_filler' for all tops or one per top",
                   f"1 or {len(self.spec.tops)}", str(len(fillers)))
        legacy = [axis for axis in LEGACY_AXES if self.p[axis]]
        if legacy and self.p["shape"]:
            yield (("dummy_data_param", legacy[0]), "DummyData takes 'shape' or the legacy num/channels/height/width, "
                   "not both", None, None)
        elif legacy:
            for axis in LEGACY_AXES:
                if len(self.p[axis]) not in (1, len(self.spec.tops)):
                    yield (("dummy_data_param", axis) if self.p[axis] else ("dummy_data_param",),
                           f"give '{axis}' once for all tops or once per top (the legacy 4-D form needs all four)",
                           f"1 or {len(self.spec.tops)} values", str(len(self.p[axis])))
        elif not self.p["shape"]:
            yield (("dummy_data_param",), "DummyData needs a shape", "dummy_data_param: {shape: {dim: [...]}}", None)

    def infer(self, shapes):
        if self.p["shape"]:
            return _shapes(self.spec, self.p["shape"], ("dummy_data_param", "shape"))
        # Caffe's deprecated form: top i is (num, channels, height, width), each given once or once per top.
        return [tuple(self.p[axis][i if len(self.p[axis]) > 1 else 0] for axis in LEGACY_AXES)
                for i in range(len(self.spec.tops))]

    def reader(self, phase, seed, device):
        return _DummyReader(self, device)

    def batch(self, device=None):
        """One batch: a tensor per top, filled as the layer says."""
        import torch
        fillers = self.p["data_filler"] or [None]
        out = []
        for i, shape in enumerate(self.infer([])):
            tensor = torch.zeros(shape, device=device)
            spec = fillers[i] if len(fillers) > 1 else fillers[0]
            if spec is not None:
                fill(tensor, spec)
            out.append(tensor)
        return out


class _DummyReader:
    """Serves DummyData batches. Constant tops are filled once (as Caffe); random ones are refilled each
    batch from torch's global generator, which snapshots already save, so the reader has no state."""

    def __init__(self, layer: DummyData, device):
        self.layer, self.device = layer, device
        fillers = layer.p["data_filler"] or [None]
        self.constant = all(f is None or f["type"] == "constant" for f in fillers)
        self.cached = layer.batch(device) if self.constant else None

    def next(self) -> list:
        return self.cached if self.constant else self.layer.batch(self.device)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
