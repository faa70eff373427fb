"""Data layers that read data sets: Data (MNIST IDX files, CIFAR batches, Caffe's LMDB and LevelDB Datum
databases), with Caffe's transform_param.

A backend knows one file format: where a split's files are, the shape of one sample, and how to load the
whole split as (uint8 images N x C x H x W, int64 labels N). Batching and transforms are shared
(netdef/readers.py), so a new format is one backend class added to BACKENDS.
"""
from __future__ import annotations

from pathlib import Path

from ..fields import Bool, Enum, File, Float, Int, Str
from ..data.cifar import BACKENDS as CIFAR_BACKENDS
from .augmentation import AUGMENT_FIELDS, check_augment
from .base import DATA, Layer, ShapeError, numel, register

TRANSFORM_FIELDS = {
    "scale": Float(1.0, "multiply pixels by this after mean subtraction (MNIST: 0.00390625)"),
    "mirror": Bool(False, "random horizontal flips (TRAIN only; Caffe also flips in TEST)"),
    "crop_size": Int(0, "random crop (TRAIN) or center crop (TEST) of this size; 0: none", minimum=0),
    "mean_value": Float(None, "subtract per channel (one value for all, or one per channel)", repeated=True),
    "pad": Int(0, "zero-pad each image by this many pixels on every side (netdef; LeNet-5 1998: 2)", minimum=0),
    **AUGMENT_FIELDS,
}

IDX_SPLIT_FILES = ("{split}-images-idx3-ubyte", "{split}-labels-idx1-ubyte")


def idx_files(folder: Path, split: str):
    """The images and labels files of one split in an MNIST folder (gzipped or not)."""
    found = []
    for pattern in IDX_SPLIT_FILES:
        name = pattern.format(split=split)
        candidates = [folder / name, folder / f"{name}.gz"]
        match = next((c for c in candidates if c.exists()), None)
        if match is None:
            raise ShapeError(f"no {name}[.gz] in data source '{folder}'", expected=f"MNIST IDX files of split '{split}'",
                             path=("data_param", "source"))
        found.append(match)
    return tuple(found)


class IdxBackend:
    """MNIST's IDX files: `<split>-images-idx3-ubyte[.gz]` and `<split>-labels-idx1-ubyte[.gz]` in a folder."""

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = folder, split

    def sample_shape(self) -> tuple:
        """(channels, height, width) of one stored image, read from the file header."""
        from ..data.idx import IdxError, idx_shape
        images, _ = idx_files(self.folder, self.split)
        try:
            dims = idx_shape(images)
        except (IdxError, OSError) as exc:
            raise ShapeError(str(exc), path=("data_param", "source")) from None
        return (1,) + tuple(dims[1:]) if len(dims) == 3 else tuple(dims[1:])

    def load(self):
        from ..data.idx import IdxError, read_idx
        images_file, labels_file = idx_files(self.folder, self.split)
        try:
            images, labels = read_idx(images_file), read_idx(labels_file)
        except (IdxError, OSError) as exc:
            raise ShapeError(str(exc), path=("data_param", "source")) from None
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.shape[0] != labels.shape[0]:
            raise ShapeError("the images and labels files hold different numbers of samples",
                             expected=f"{images.shape[0]} labels", found=str(labels.shape[0]),
                             path=("data_param", "source"))
        return images, labels.long()


class DatumBackend:
    """Caffe's databases of Datum records (netdef.data.datum): `backend: LMDB` or `LEVELDB`, `source` the
    database folder, as Caffe's convert_imageset and convert_mnist_data write it; `split` is not used.
    `color`: how encoded records decode (None: as stored; True, False: transform_param's force_color,
    force_gray)."""
    kind = "LMDB"

    def __init__(self, folder: Path, split: str, color=None):
        self.folder, self.color = folder, color

    def _read(self, what, *args):
        from ..data.datum import DatumError
        try:
            return what(self.kind, self.folder, *args)
        except DatumError as exc:
            raise ShapeError(str(exc), expected=f"a Caffe {self.kind} of Datum records",
                             path=("data_param", "source")) from None

    def sample_shape(self) -> tuple:
        from ..data.datum import sample_shape
        return self._read(sample_shape, self.color)

    def load(self):
        from ..data.datum import load
        return self._read(load, self.color)

    def streamed(self, limit: int) -> bool:
        """Whether the records, decoded, would take more than `limit` bytes: then they are streamed."""
        from ..data.datum import record_count
        return self._read(record_count) * numel(self.sample_shape()) > limit

    def stream(self, batch_size, *, shuffle, seed, device, transform, n_tops, prefetch):
        """A StreamReader over the records, read by DataLoader workers in the in-memory reader's order."""
        from ..data.datum import DatumRecords, RecordProblems, labels_and_keys
        from ..data.images import default_workers
        from ..data.stream import StreamReader
        keys, labels = self._read(labels_and_keys)
        dataset = DatumRecords(self.folder, keys, self.sample_shape(), self.color)
        return StreamReader(dataset, labels, batch_size, shuffle=shuffle, seed=seed, device=device,
                            transform=transform, workers=default_workers(), samples=RecordProblems(),
                            n_tops=n_tops, prefetch=max(prefetch, 1))


class LevelDbBackend(DatumBackend):
    """LevelDB allows one process at a time: its records are always read into memory."""
    kind = "LEVELDB"

    def streamed(self, limit: int) -> bool:
        return False


# data_param.backend -> class(folder, split)
BACKENDS = {"IDX": IdxBackend, **CIFAR_BACKENDS, "LMDB": DatumBackend, "LEVELDB": LevelDbBackend}

# How Data decodes encoded Datum records (Caffe's transform_param fields; raw records are used as stored).
DATUM_DECODE_FIELDS = {
    "force_color": Bool(False, "LMDB, LEVELDB: decode encoded records in colour (3 channels), as Caffe does"),
    "force_gray": Bool(False, "LMDB, LEVELDB: decode encoded records in grayscale (1 channel), as Caffe does"),
}


@register
class Data(Layer):
    """Reads a data set into memory and serves batches: TRAIN shuffles each epoch, TEST reads in order."""
    caffe_defaults = {"data_param": {"backend": "LEVELDB"}}  # caffe.proto: DataParameter.backend
    summary = "data set reader (backends IDX: MNIST files, CIFAR, Caffe's LMDB and LEVELDB) with transform_param"
    blocks = {
        "data_param": {
            "source": File(None, "folder of the data set or database (relative to this net file)", required=True),
            "batch_size": Int(None, "samples per batch", required=True, minimum=1),
            "backend": Enum(sorted(BACKENDS), "IDX", "file format: IDX (MNIST), CIFAR10, CIFAR100 (fine labels), "
                                                    "CIFAR100_COARSE, LMDB and LEVELDB (Caffe's Datum records)"),
            "split": Str("train", "IDX: file prefix of the split (train or t10k); CIFAR: train or test; "
                                         "LMDB, LEVELDB: not used (one database per split)"),
            "rand_skip": Int(0, "accepted for Caffe compatibility", minimum=0),
            "prefetch": Int(4, "batches read ahead when a large LMDB is streamed (Caffe: prefetch queue)", minimum=0),
        },
        "transform_param": {**TRANSFORM_FIELDS, **DATUM_DECODE_FIELDS},
    }
    bottoms = (0, 0)
    tops = (1, 2)
    role = DATA
    kind = "data"
    drawn_fields = ("pad", "batch_size", "crop_size", "scale", "mirror")

    def source(self) -> Path:
        return self.spec.base_dir / self.p["source"]

    def backend(self):
        backend = BACKENDS[self.p["backend"]]
        options = (self._datum_color(),) if issubclass(backend, DatumBackend) else ()
        folder = self.source()
        if not folder.is_dir():
            raise ShapeError(f"data source '{self.p['source']}' is not a folder (looked at {folder})",
                             path=("data_param", "source"))
        return backend(folder, self.p["split"], *options)

    def _datum_color(self):
        """force_color -> True, force_gray -> False, neither -> None (each record as encoded)."""
        t = self.params["transform_param"]
        if t["force_color"] and t["force_gray"]:
            raise ShapeError("'force_color' and 'force_gray' cannot both be set", expected="at most one of them",
                             path=("transform_param", "force_gray"))
        return True if t["force_color"] else (False if t["force_gray"] else None)

    def sample_shape(self):
        channels, height, width = self.backend().sample_shape()
        t = self.params["transform_param"]
        means = t["mean_value"] or []
        if len(means) > 1 and len(means) != channels:
            raise ShapeError("give one 'mean_value' for all channels or one per channel",
                             expected=f"1 or {channels} values", found=str(len(means)),
                             path=("transform_param", "mean_value"))
        check_augment(t, (channels, height, width), self.spec.base_dir)
        height, width = height + 2 * t["pad"], width + 2 * t["pad"]
        if t["crop_size"]:
            if t["crop_size"] > min(height, width):
                raise ShapeError("'crop_size' is larger than the images", expected=f"<= {min(height, width)}",
                                 found=str(t["crop_size"]), path=("transform_param", "crop_size"))
            height = width = t["crop_size"]
        return channels, height, width

    def infer(self, shapes):
        batch = self.p["batch_size"]
        return [(batch,) + self.sample_shape(), (batch,)][:len(self.spec.tops)]

    def load(self):
        """The whole split in memory: (uint8 images N x C x H x W, int64 labels N)."""
        return self.backend().load()

    def reader(self, phase, seed, device):
        """In memory, or (an LMDB that decoded would exceed IN_MEMORY_LIMIT) streamed by DataLoader
        workers, `prefetch` batches ahead, in the order the in-memory reader would serve."""
        from ..data.augment import image_reader, make_transform
        from .imagedata import IN_MEMORY_LIMIT
        backend, transform_param = self.backend(), self.params["transform_param"]
        if isinstance(backend, DatumBackend) and backend.streamed(IN_MEMORY_LIMIT):
            transform = make_transform(transform_param, phase, seed, device, self.spec.base_dir)
            return backend.stream(self.p["batch_size"], shuffle=phase == "TRAIN", seed=seed, device=device,
                                  transform=transform, n_tops=len(self.spec.tops), prefetch=self.p["prefetch"])
        images, labels = backend.load()
        return image_reader(images, labels, len(self.spec.tops), batch_size=self.p["batch_size"],
                            transform_param=transform_param, phase=phase, seed=seed, device=device,
                            base_dir=self.spec.base_dir)
