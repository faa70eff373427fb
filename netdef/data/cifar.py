"""CIFAR-10 and CIFAR-100 binary batches (https://www.cs.toronto.edu/~kriz/cifar.html) as Data backends.

A record is the label byte(s) then 3072 pixel bytes: the 1024 red, 1024 green and 1024 blue values of a
32 x 32 image, rows top to bottom. CIFAR-10: 1 label byte, files data_batch_1..5.bin (train) and
test_batch.bin (test). CIFAR-100: a coarse (20 super-classes) and a fine (100 classes) label byte, files
train.bin and test.bin. Images stay in the files' RGB order (Caffe's convert_cifar_data copies them as is).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ShapeError

SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32


class CifarBackend:
    """CIFAR-10: `data_param: {source: <folder of the .bin files>, backend: CIFAR10, split: train|test}`."""
    label_bytes = 1
    label_index = 0
    split_files = {"train": tuple(f"data_batch_{k}.bin" for k in range(1, 6)), "test": ("test_batch.bin",)}
    archive_folder = "cifar-10-batches-bin"

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = Path(folder), split

    @property
    def record(self) -> int:
        return self.label_bytes + PIXELS

    def files(self) -> list:
        if self.split not in self.split_files:
            raise ShapeError(f"CIFAR has no split '{self.split}'", expected=" or ".join(self.split_files),
                             found=repr(self.split), path=("data_param", "split"))
        paths = [self.folder / name for name in self.split_files[self.split]]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            hint = None
            if (self.folder / self.archive_folder).is_dir():
                hint = f"the files are in the sub-folder {self.archive_folder}"
            raise ShapeError(f"no {missing[0]} in data source '{self.folder}'", path=("data_param", "source"),
                             expected=f"the CIFAR binary files of split '{self.split}': "
                                      + ", ".join(self.split_files[self.split]), found=hint)
        for path in paths:
            size = path.stat().st_size
            if size == 0 or size % self.record:
                raise ShapeError(f"{path} is not a CIFAR binary batch of this kind", path=("data_param", "source"),
                                 expected=f"a multiple of {self.record}-byte records", found=f"{size} bytes")
        return paths

    def sample_shape(self) -> tuple:
        self.files()
        return SHAPE

    def load(self):
        import numpy as np
        import torch
        records = np.concatenate([np.fromfile(path, np.uint8).reshape(-1, self.record) for path in self.files()])
        images = records[:, self.label_bytes:].reshape((-1,) + SHAPE)
        labels = records[:, self.label_index].astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


class Cifar100Backend(CifarBackend):
    """CIFAR-100 with its 100 fine labels: `backend: CIFAR100`."""
    label_bytes = 2
    label_index = 1
    split_files = {"train": ("train.bin",), "test": ("test.bin",)}
    archive_folder = "cifar-100-binary"


class Cifar100CoarseBackend(Cifar100Backend):
    """CIFAR-100 with its 20 coarse (super-class) labels: `backend: CIFAR100_COARSE`."""
    label_index = 0


BACKENDS = {"CIFAR10": CifarBackend, "CIFAR100": Cifar100Backend, "CIFAR100_COARSE": Cifar100CoarseBackend}


def write_batch(path, images, labels) -> None:
    """Write CIFAR binary records: images uint8 N x 3 x 32 x 32; labels N (CIFAR-10) or N x 2 (coarse,
    fine; CIFAR-100). The inverse of the backends' load, for tests and for converting data sets."""
    import numpy as np
    images = np.asarray(images, dtype=np.uint8).reshape(-1, PIXELS)
    labels = np.asarray(labels, dtype=np.uint8).reshape(images.shape[0], -1)
    np.concatenate([labels, images], axis=1).tofile(path)


def unpack(root: Path, archive: str, backend) -> Path:
    """Extract the .bin files of a downloaded CIFAR archive into root/<archive folder> (once; only regular
    files inside that folder, so a crafted archive cannot write elsewhere). Returns that folder."""
    import tarfile
    folder = Path(root) / backend.archive_folder
    names = {name for files in backend.split_files.values() for name in files}
    if all((folder / name).is_file() for name in names):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(Path(root) / archive, "r:gz") as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            if member.isfile() and path.parent.name == backend.archive_folder and len(path.parts) == 2:
                with tar.extractfile(member) as source:
                    (folder / path.name).write_bytes(source.read())
    return folder


def summary(root: Path, backend) -> str:
    """What an unpacked CIFAR folder holds, counted from the file sizes."""
    folder = Path(root) / backend.archive_folder
    counts = {split: sum((folder / name).stat().st_size for name in files) // backend(folder, split).record
              for split, files in backend.split_files.items()}
    return f"{folder}: " + ", ".join(f"{count:,} images (split {split})" for split, count in counts.items())
