"""ImageData (Caffe's image list reader, plus folders of class folders and packed files) and HDF5Data.

Heavy imports (torch, numpy, Pillow, h5py) happen only when data are read, so checking a net stays light.
"""
from __future__ import annotations


from ..errors import NetdefError, Pos, Problem
from ..fields import Bool, Enum, File, Int, Str
from .base import DATA, Layer, ShapeError, register
from .data import TRANSFORM_FIELDS, Data

IN_MEMORY_LIMIT = 2 << 30  # bytes of decoded images that `in_memory: AUTO` keeps in memory

IMAGE_DATA_FIELDS = {
    "source": File(None, "a list file of 'path label' lines (Caffe), a folder of class folders, or a packed .h5 "
                        "file from tools/convert_imageset.py; relative to this net file", required=True),
    "root_folder": File("", "folder the list's paths are relative to (relative to this net file); "
                           "empty: the list file's folder"),
    "allow_outside_root": Bool(False, "netdef: let list lines name images outside root_folder (../x.jpg, "
                                      "/abs/x.jpg)"),
    "batch_size": Int(1, "images per batch", minimum=1),
    "shuffle": Bool(False, "reshuffle the images at every epoch (seeded by the solver's random_seed)"),
    "new_height": Int(0, "resize (warp) every image to new_height x new_width (both or neither)", minimum=0),
    "new_width": Int(0, "see new_height", minimum=0),
    "resize_shorter": Int(0, "netdef: resize the shorter side to this and keep the central square", minimum=0),
    "is_color": Bool(True, "3 channels; false: grayscale, 1 channel"),
    "channel_order": Enum(["BGR", "RGB"], "BGR", "channel order of colour images (Caffe decodes with OpenCV: BGR)"),
    "skip_bad": Bool(False, "netdef: leave out missing or unreadable images with a warning instead of stopping"),
    "num_workers": Int(-1, "netdef: decoding processes (-1: one per CPU, at most 8; 0: none)", minimum=-1),
    "in_memory": Enum(["AUTO", "ALWAYS", "NEVER"], "AUTO",
                      "netdef: decode once and keep the images in memory (AUTO: when they take at most 2 GiB), "
                      "or decode/read every batch"),
    "rand_skip": Int(0, "accepted for Caffe compatibility", minimum=0),
}


# Caffe's transform_param holds force_color/force_gray for the encoded Datum records of Data; ImageData takes
# them too, and, as Caffe's, does not read them: each file is decoded as is_color says.
DECODE_FIELDS = {
    "force_color": Bool(False, "Caffe: decode encoded Data records in colour; accepted here, where is_color "
                               "decides, as in Caffe"),
    "force_gray": Bool(False, "Caffe: decode encoded Data records in grayscale; accepted here, where is_color "
                              "decides, as in Caffe"),
}


def _claim(error: NetdefError, layer) -> NetdefError:
    """The same problems, attributed to `layer` (they point into a list file, not at the layer)."""
    for problem in error.problems:
        if problem.layer is None:
            problem.layer, problem.layer_type = layer.name, layer.spec.type
    return NetdefError(error.problems)


class ImageSource:
    """The images an ImageData layer reads: from a list file, a folder or a packed file."""

    def __init__(self, layer):
        from ..data.images import Geometry
        p = layer.p
        self.layer = layer
        self.path = layer.spec.base_dir / p["source"]
        self.geometry = Geometry(p["new_height"], p["new_width"], p["resize_shorter"], p["is_color"],
                                 p["channel_order"] == "BGR")
        self.packed = self.path.suffix.lower() in (".h5", ".hdf5")
        self._samples = self._header = None

    def samples(self) -> list:
        from ..data.images import folder_samples, missing_files, read_list, verified
        if self._samples is None:
            p = self.layer.p
            if self.path.is_dir():
                samples, _ = folder_samples(self.path)
            elif self.path.is_file():
                root = self.layer.spec.base_dir / p["root_folder"] if p["root_folder"] else self.path.parent
                samples = read_list(self.path, root, p["allow_outside_root"])
            else:
                raise ShapeError(f"image source '{p['source']}' does not exist (looked at {self.path})",
                                 path=("image_data_param", "source"),
                                 expected="a list file, a folder of class folders or a packed .h5 file")
            if p["skip_bad"]:
                samples = verified(samples)
            elif missing := missing_files(samples):
                raise NetdefError(missing)
            if not samples:
                raise NetdefError(Problem(f"no readable image in {self.path}"))
            self._samples = samples
        return self._samples

    def header(self):
        from ..data.images import read_packed_header
        if self._header is None:
            if not self.path.is_file():
                raise ShapeError(f"packed image file '{self.layer.p['source']}' does not exist (looked at "
                                 f"{self.path})", path=("image_data_param", "source"))
            self._header = read_packed_header(self.path)
        return self._header

    def sample_shape(self) -> tuple:
        if self.packed:
            return self._packed_shape()
        from ..data.images import image_size
        first = self.samples()[0]
        try:
            width, height = image_size(first.path)
        except (OSError, ValueError, SyntaxError) as exc:
            raise NetdefError(first.problem(f"cannot read the image {first.path}: {exc}")) from None
        return (self.geometry.channels,) + self.geometry.stored_size(width, height)

    def _packed_shape(self) -> tuple:
        shape = self.header().shape
        if self.geometry.fixed and (self.geometry.channels,) + self.geometry.stored_size(0, 0) != shape:
            raise ShapeError("a packed file's images already have their size: resizing happens when packing",
                             expected="new_height, new_width and resize_shorter 0 (or the packed size)",
                             found=f"packed images {shape[2]}x{shape[1]}", path=("image_data_param",))
        if shape[0] != self.geometry.channels:
            raise ShapeError("is_color does not match the packed images", expected=f"{shape[0]} channel(s)",
                             found=f"{self.geometry.channels}", path=("image_data_param", "is_color"))
        return shape

    def count(self) -> int:
        return self.header().count if self.packed else len(self.samples())

    def workers(self) -> int:
        from ..data.images import default_workers
        workers = self.layer.p["num_workers"]
        return default_workers() if workers < 0 else workers

    def load(self):
        """Every image in memory: (uint8 N x C x H x W, int64 labels N)."""
        import torch

        from ..data.images import PackedImages, decode_all
        if self.packed:
            header = self.header()
            return PackedImages(self.path, header).read_all(), torch.from_numpy(header.labels).long()
        return decode_all(self.samples(), self.geometry, self.sample_shape(), workers=self.workers(),
                          skip_bad=self.layer.p["skip_bad"])

    def stream(self, batch_size, *, shuffle, seed, device, transform, n_tops):
        import torch

        from ..data.images import DecodedImages, PackedImages
        from ..data.stream import StreamReader
        if self.packed:
            header = self.header()
            dataset, labels, samples = PackedImages(self.path, header), torch.from_numpy(header.labels).long(), None
        else:
            samples = self.samples()
            dataset = DecodedImages(samples, self.geometry, self.sample_shape())
            labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
        return StreamReader(dataset, labels, batch_size, shuffle=shuffle, seed=seed, device=device,
                            transform=transform, workers=self.workers(), samples=samples, n_tops=n_tops)


@register
class ImageData(Data):
    """Images and labels from a list file (Caffe), a folder of class folders or a packed file."""
    summary = "images from a list file, a folder of class folders or a packed .h5 file, with transform_param"
    blocks = {"image_data_param": IMAGE_DATA_FIELDS, "transform_param": {**TRANSFORM_FIELDS, **DECODE_FIELDS}}
    tops = (2, 2)

    def check(self):
        p = self.p
        if bool(p["new_height"]) != bool(p["new_width"]):
            yield (("image_data_param",), "give both new_height and new_width, or neither",
                   "two positive sizes", f"new_height {p['new_height']}, new_width {p['new_width']}")
        if p["resize_shorter"] and p["new_height"]:
            yield (("image_data_param", "resize_shorter"), "resize_shorter and new_height/new_width exclude "
                   "each other", None, None)

    def backend(self):
        if getattr(self, "_source", None) is None:
            self._source = ImageSource(self)
        return self._source

    def sample_shape(self):
        try:
            return super().sample_shape()
        except NetdefError as exc:
            raise _claim(exc, self) from None

    def reader(self, phase, seed, device):
        from ..data.augment import make_transform
        from ..data.readers import InMemoryReader
        source = self.backend()
        transform = make_transform(self.params["transform_param"], phase, seed, device, self.spec.base_dir)
        batch, shuffle = self.p["batch_size"], self.p["shuffle"]
        try:
            if self._in_memory(source):
                images, labels = source.load()
                return InMemoryReader([images, labels], batch, shuffle=shuffle, seed=seed, device=device,
                                      transform=transform)
            return source.stream(batch, shuffle=shuffle, seed=seed, device=device, transform=transform,
                                 n_tops=len(self.spec.tops))
        except NetdefError as exc:
            raise _claim(exc, self) from None

    def _in_memory(self, source) -> bool:
        mode = self.p["in_memory"]
        if mode != "AUTO":
            return mode == "ALWAYS"
        channels, height, width = source.sample_shape()
        return source.count() * channels * height * width <= IN_MEMORY_LIMIT


@register
class HDF5Data(Layer):
    """Caffe's HDF5Data: datasets named after the tops, from the .h5 files a text file lists."""
    summary = "arrays from HDF5 files (datasets named after the tops) listed in a text file"
    blocks = {
        "hdf5_data_param": {
            "source": File(None, "text file listing .h5 files, one a line (relative to the list file); "
                                "relative to this net file", required=True),
            "batch_size": Int(None, "rows per batch", required=True, minimum=1),
            "shuffle": Bool(False, "reshuffle the rows (of all files together) at every epoch"),
        },
    }
    bottoms = (0, 0)
    tops = (1, None)
    role = DATA
    kind = "data"
    drawn_fields = ("batch_size",)

    def files(self) -> list:
        """(path, position in the list file) of every listed file."""
        source = self.spec.base_dir / self.p["source"]
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ShapeError(f"cannot read the HDF5 file list {source}: {exc}", path=("hdf5_data_param", "source"),
                             expected="a text file naming one .h5 file per line") from None
        files = [(source.parent / line.strip(), Pos(str(source), number, 1))
                 for number, line in enumerate(lines, 1) if line.strip()]
        if not files:
            raise ShapeError(f"the HDF5 file list {source} names no files", path=("hdf5_data_param", "source"))
        return files

    def _read(self, path, pos, rows):
        """{top: dataset[rows]} of one file (rows: a slice; slice(0, 1) just probes the shapes)."""
        import h5py
        try:
            with h5py.File(path, "r") as file:
                missing = [top for top in self.spec.tops if top not in file]
                if missing:
                    raise NetdefError(Problem(f"{path} has no dataset '{missing[0]}'", pos, layer=self.name,
                                              layer_type=self.spec.type, expected="a dataset per top",
                                              found=", ".join(sorted(file)) or "no datasets"))
                arrays = {top: file[top][rows] for top in self.spec.tops}
                counts = {file[top].shape[0] for top in self.spec.tops}
        except OSError as exc:
            raise NetdefError(Problem(f"cannot read {path}: {exc}", pos, layer=self.name,
                                      layer_type=self.spec.type)) from None
        if len(counts) > 1:
            raise NetdefError(Problem(f"the datasets of {path} have different numbers of rows", pos, layer=self.name,
                                      layer_type=self.spec.type, found=str(sorted(counts))))
        return arrays

    def infer(self, shapes):
        path, pos = self.files()[0]
        first = self._read(path, pos, slice(0, 1))
        return [(self.p["batch_size"],) + tuple(first[top].shape[1:]) for top in self.spec.tops]

    def load(self) -> list:
        """One tensor per top, all files concatenated: integer datasets as int64 (class labels), others
        as float32 (Caffe reads everything as float)."""
        import numpy as np
        import torch
        parts = [self._read(path, pos, slice(None)) for path, pos in self.files()]
        tensors = []
        for top in self.spec.tops:
            array = np.concatenate([part[top] for part in parts])
            dtype = np.int64 if np.issubdtype(array.dtype, np.integer) and array.ndim == 1 else np.float32
            tensors.append(torch.from_numpy(array.astype(dtype)))
        return tensors

    def reader(self, phase, seed, device):
        from ..data.readers import InMemoryReader
        return InMemoryReader(self.load(), self.p["batch_size"], shuffle=self.p["shuffle"], seed=seed, device=device)
