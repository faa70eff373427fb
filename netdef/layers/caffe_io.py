"""Caffe's remaining input and output layers: MemoryData (arrays set from Python), WindowData (R-CNN window
files; netdef/data/windows.py) and HDF5Output (memory_data_layer.cpp, window_data_layer.cpp,
hdf5_output_layer.cpp)."""
from __future__ import annotations

from ..fields import Bool, File, Float, Int, Str
from .base import DATA, Layer, ShapeError, register

_SHAPE_FIELDS = {axis: Int(None, f"{axis} of each item", required=True, minimum=1)
                 for axis in ("channels", "height", "width")}


@register
class MemoryData(Layer):
    """Serves batches of arrays a Python caller sets, as Caffe's pycaffe `net.set_input_arrays`:
    `netdef.api.set_input_arrays(LAYER_NAME, data, labels)` (data N x channels x height x width, N labels, N a
    multiple of batch_size) before the net is trained or run; batches come in order and wrap around."""
    summary = "batches of arrays set from Python (netdef.api.set_input_arrays)"
    blocks = {"memory_data_param": {"batch_size": Int(None, "items per batch", required=True, minimum=1),
                                    **_SHAPE_FIELDS}}
    bottoms = (0, 0)
    tops = (2, 2)
    role = DATA
    kind = "data"
    drawn_fields = ("batch_size",)

    def item_shape(self) -> tuple:
        return tuple(self.p[axis] for axis in ("channels", "height", "width"))

    def infer(self, shapes):
        return [(self.p["batch_size"],) + self.item_shape(), (self.p["batch_size"],)]

    def reader(self, phase, seed, device):
        from ..data.memory import MemoryReader, input_arrays
        arrays = input_arrays(self.name)
        if arrays is None:
            raise ShapeError(f"no arrays were set for MemoryData layer '{self.name}'", path=("type",),
                             expected=f"netdef.api.set_input_arrays({self.name!r}, data, labels) before the net runs")
        data, labels = arrays
        if tuple(data.shape[1:]) != self.item_shape():
            raise ShapeError("the arrays set from Python do not have the layer's item shape", path=("memory_data_param",),
                             expected=f"N x {' x '.join(map(str, self.item_shape()))}", found=f"{list(data.shape)}")
        if data.shape[0] % self.p["batch_size"]:
            raise ShapeError("the number of items set from Python must be a multiple of 'batch_size' (as Caffe)",
                             expected=f"a multiple of {self.p['batch_size']}", found=f"{data.shape[0]} items",
                             path=("memory_data_param", "batch_size"))
        return MemoryReader(data, labels, self.p["batch_size"], device)


@register
class WindowData(Layer):
    """R-CNN's fine-tuning data: windows (boxes) of images listed in a window file (its format:
    netdef/data/windows.py), batch_size - int(batch_size x fg_fraction) background windows then foreground
    ones per batch, each warped to transform_param.crop_size (with context_pad pixels of context), mirrored
    at random with transform_param.mirror, minus transform_param.mean_value (or the central crop of
    mean_file, at the pixels the window lands on), times scale. Labels: the
    window's class, 0 for background."""
    summary = "R-CNN windows of images (window file), warped to crop_size"
    blocks = {
        "window_data_param": {
            "source": File(None, "the window file (relative to this net file)", required=True),
            "batch_size": Int(None, "windows per batch", required=True, minimum=1),
            "scale": Float(1.0, "multiplies the mean-subtracted pixels"),
            "fg_threshold": Float(0.5, "overlap from which a window is foreground"),
            "bg_threshold": Float(0.5, "overlap below which a window is background"),
            "fg_fraction": Float(0.25, "fraction of each batch that is foreground", minimum=0, maximum=1),
            "context_pad": Int(0, "pixels of context around the window in the warped crop", minimum=0),
            "crop_mode": Str("warp", "warp: the window warped to the crop; square: the tightest square around it"),
            "cache_images": Bool(False, "accepted for Caffe compatibility (decoded images are always kept)"),
            "root_folder": File("", "prefix of the image paths (relative to this net file)"),
            "crop_size": Int(0, "accepted for Caffe compatibility: Caffe's layer reads transform_param's", minimum=0),
            "mirror": Bool(False, "accepted for Caffe compatibility: Caffe's layer reads transform_param's"),
            "mean_file": File(None, "accepted for Caffe compatibility: Caffe's layer reads transform_param's"),
        },
        "transform_param": {
            "crop_size": Int(None, "side of the square each window is warped to", required=True, minimum=1),
            "mirror": Bool(False, "mirror each window with probability 1/2"),
            "mean_value": Float(None, "subtracted per channel (one value for all, or one per channel)", repeated=True),
            "mean_file": File(None, "mean image (.binaryproto or .npy, relative to this net file) whose central "
                                   "crop_size square is subtracted"),
        },
    }
    bottoms = (0, 0)
    tops = (2, 2)
    role = DATA
    kind = "data"
    drawn_fields = ("batch_size", "crop_size", "context_pad")

    def check(self):
        p = self.p
        if p["crop_mode"] not in ("warp", "square"):
            yield (("window_data_param", "crop_mode"), "unknown crop_mode", "warp or square", p["crop_mode"])
        transform = self.params["transform_param"]
        if transform["mean_file"] is not None and transform["mean_value"]:
            yield (("transform_param", "mean_file"), "give 'mean_file' or 'mean_value', not both (as Caffe)", None, None)
        crop = transform["crop_size"]
        if crop is not None and 2 * p["context_pad"] >= crop:
            yield (("window_data_param", "context_pad"), "'context_pad' leaves no room for the window",
                   f"< {crop / 2:g} (half of crop_size)", str(p["context_pad"]))

    def windows(self):
        from ..data.windows import read_windows
        source = self.spec.base_dir / self.p["source"]
        if not source.is_file():
            raise ShapeError(f"the window file {source} does not exist", path=("window_data_param", "source"))
        root = str(self.spec.base_dir / self.p["root_folder"]) + "/" if self.p["root_folder"] else \
            str(source.parent) + "/"
        return read_windows(source, root, self.p["fg_threshold"], self.p["bg_threshold"])

    def mean_crop(self, channels):
        """The mean image's central crop_size square (Caffe's mean_off), C x crop x crop, or None."""
        from ..data.mean import load_mean
        t = self.params["transform_param"]
        if t["mean_file"] is None:
            return None
        mean = load_mean(self.spec.base_dir / t["mean_file"])
        crop, offset = t["crop_size"], (mean.shape[-1] - t["crop_size"]) // 2  # window_data_layer.cpp: from the width
        if mean.ndim != 3 or mean.shape[0] != channels or offset < 0 or offset + crop > mean.shape[1]:
            raise ShapeError("the mean image must have the images' channels and hold a crop_size square at its centre",
                             expected=f"{channels} x at least {crop} x {crop}", found=f"shape {list(mean.shape)}",
                             path=("transform_param", "mean_file"))
        return mean[:, offset:offset + crop, offset:offset + crop]

    def infer(self, shapes):
        channels = self.windows().images[0][1][0]
        self.mean_crop(channels)
        means = self.params["transform_param"]["mean_value"]
        if len(means) > 1 and len(means) != channels:
            raise ShapeError("give one 'mean_value' for all channels or one per channel", found=str(len(means)),
                             expected=f"1 or {channels} values", path=("transform_param", "mean_value"))
        crop, batch = self.params["transform_param"]["crop_size"], self.p["batch_size"]
        return [(batch, channels, crop, crop), (batch,)]

    def reader(self, phase, seed, device):
        from ..data.windows import WindowReader
        p, t = self.p, self.params["transform_param"]
        windows = self.windows()
        mean_image = self.mean_crop(windows.images[0][1][0])
        return WindowReader(windows, batch_size=p["batch_size"], crop_size=t["crop_size"],
                            context_pad=p["context_pad"], square=p["crop_mode"] == "square", mirror=t["mirror"],
                            fg_fraction=p["fg_fraction"], scale=p["scale"],
                            mean=t["mean_value"] if mean_image is None else mean_image, seed=seed, device=device)


@register
class HDF5Output(Layer):
    """Writes its two bottoms, at every forward pass, to the HDF5 file `file_name` as the datasets `data`
    and `label` (float32; each pass's batch appended, the file emptied when the net is built). Caffe's
    layer writes only its first batch; netdef keeps them all. No tops, no gradient."""
    summary = "writes its bottoms to an HDF5 file (datasets data, label)"
    blocks = {"hdf5_output_param": {"file_name": File(None, "the HDF5 file written (relative to this net file)",
                                                     required=True)}}
    bottoms = (2, 2)
    tops = (0, 0)
    exportable = False  # a file written as a side effect

    def infer(self, shapes):
        return []

    def build(self, shapes):
        from .catalogue_modules import HDF5Output as Module
        return Module(str(self.spec.base_dir / self.p["file_name"]))
