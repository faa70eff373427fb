"""Image files as training data: Caffe's list files, folders of class folders, decoding with Pillow, and
the packed format of tools/convert_imageset.py (one HDF5 file of decoded uint8 images).

Every image is decoded to a fixed stored size (Caffe's new_height x new_width warp, or the central square
of an image whose shorter side is resized to resize_shorter, or the size the images already have), so a
batch is one uint8 N x C x H x W tensor and the random transforms (crop, mirror, mean, lighting) run on
the whole batch on the training device (netdef.augment). Decoding runs in DataLoader worker processes.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import NetdefError, Pos, Problem

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
PACKED_EXTENSIONS = (".h5", ".hdf5")
PACKED_FORMAT = "netdef-packed-images-1"
LIST_LINE = re.compile(r"^(?P<path>.*\S)\s+(?P<label>\S+)$")


def default_workers() -> int:
    """Decoding processes when a layer says `num_workers: -1`: one per CPU, at most 8."""
    return min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class Sample:
    """One image of a data set and where it was named (a list file's line; None for folder sources)."""
    path: Path
    label: int
    pos: Pos | None = None

    def problem(self, message: str, **kw) -> Problem:
        where = "" if self.pos else f"{self.path}: "
        return Problem(where + message, self.pos, **kw)


def read_list(list_file: Path, root: Path, allow_outside_root: bool = False) -> list:
    """Caffe's ImageData list: `relative/path.jpg LABEL` per line, split at the last whitespace; blank
    lines are skipped. Every malformed line is reported at once, as LIST:LINE:COL. A path that leaves
    `root` (../, an absolute path, a link out) is a problem unless `allow_outside_root`."""
    inside = Path(root).resolve()
    try:
        text = Path(list_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NetdefError(Problem(f"cannot read the image list {list_file}: {exc}")) from None
    samples, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = LIST_LINE.match(line.strip())
        if match is None:
            problems.append(Problem("list line without a label", Pos(str(list_file), number, indent + 1),
                                    expected="'PATH LABEL'", found=repr(line.strip())))
            continue
        label_text = match["label"]
        try:
            label = int(label_text)
        except ValueError:
            problems.append(Problem("the label is not an integer", Pos(str(list_file), number,
                                                                       indent + match.start("label") + 1),
                                    expected="an integer class index", found=repr(label_text)))
            continue
        path = root / match["path"]
        if not allow_outside_root and not path.resolve().is_relative_to(inside):
            problems.append(Problem(f"image {match['path']} is outside the root folder {inside}",
                                    Pos(str(list_file), number, indent + 1),
                                    hint="set image_data_param.allow_outside_root: true to allow it"))
            continue
        samples.append(Sample(path, label, Pos(str(list_file), number, indent + 1)))
    if problems:
        raise NetdefError(problems)
    if not samples:
        raise NetdefError(Problem(f"the image list {list_file} names no images", Pos(str(list_file), 1, 1),
                                  expected="lines 'PATH LABEL'"))
    return samples


def folder_samples(folder: Path) -> tuple:
    """A folder of class folders: each sub-folder is a class, labelled by its position among the sorted
    sub-folder names; its image files (by extension, sorted by name, searched recursively) are the samples.
    Returns (samples, class names)."""
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    samples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        samples.extend(Sample(path, label) for path in files)
    if not samples:
        raise NetdefError(Problem(f"the image folder {folder} holds no class folders with images",
                                  expected=f"sub-folders (one per class) of {', '.join(IMAGE_EXTENSIONS)} files"))
    return samples, classes


def missing_files(samples: list) -> list:
    """Problems for every sample whose file does not exist."""
    return [s.problem(f"image file not found: {s.path}") for s in samples if not s.path.is_file()]


@dataclass(frozen=True)
class Geometry:
    """How a decoded image becomes a stored C x H x W array (see the module docstring)."""
    new_height: int = 0
    new_width: int = 0
    resize_shorter: int = 0
    is_color: bool = True
    bgr: bool = True  # Caffe decodes with OpenCV, whose channel order is B, G, R

    @property
    def channels(self) -> int:
        return 3 if self.is_color else 1

    @property
    def fixed(self) -> bool:
        """Whether every image gets the same size whatever its own size."""
        return bool((self.new_height and self.new_width) or self.resize_shorter)

    def stored_size(self, width: int, height: int) -> tuple:
        """(height, width) of the stored array of an image of width x height pixels."""
        if self.new_height and self.new_width:
            return self.new_height, self.new_width
        if self.resize_shorter:
            return self.resize_shorter, self.resize_shorter
        return height, width


def open_image(path: Path):
    """Pillow's image of a file; a header claiming more pixels than Pillow will decode (a decompression
    bomb, which Pillow raises as its own error class) is a ValueError, as other unreadable files are."""
    from PIL import Image
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ValueError(str(exc)) from None


def image_size(path: Path) -> tuple:
    """(width, height) from the file header, without decoding the pixels."""
    with open_image(path) as image:
        return image.size


def decode(path: Path, geometry: Geometry) -> np.ndarray:
    """One image file as a uint8 C x H x W array. Raises OSError (or ValueError) for unreadable files."""
    from PIL import Image
    with open_image(path) as image:
        image = image.convert("RGB" if geometry.is_color else "L")
        width, height = image.size
        if geometry.new_height and geometry.new_width:
            image = image.resize((geometry.new_width, geometry.new_height), Image.BILINEAR)
        elif geometry.resize_shorter:
            # Resizing only the central square of the source gives the resized image's central square
            # in one resampling pass.
            side = min(width, height)
            left, top = (width - side) / 2, (height - side) / 2
            size = geometry.resize_shorter
            image = image.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
        array = np.asarray(image)
    if array.ndim == 2:
        return array[None].copy()
    if geometry.bgr:
        array = array[..., ::-1]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class DecodedImages(torch.utils.data.Dataset):
    """Image files decoded on demand (in worker processes); an item is (index, array or None, error)."""

    def __init__(self, samples: list, geometry: Geometry, shape: tuple):
        self.samples, self.geometry, self.shape = samples, geometry, tuple(shape)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        sample = self.samples[index]
        try:
            array = decode(sample.path, self.geometry)
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow raises SyntaxError for some broken headers
            return index, None, f"cannot decode the image {sample.path}: {exc}"
        if array.shape != self.shape:
            return index, None, (f"the image {sample.path} is {array.shape[2]}x{array.shape[1]} with "
                                 f"{array.shape[0]} channel(s), the data set's first image gives "
                                 f"{self.shape[2]}x{self.shape[1]} with {self.shape[0]}; set new_height and "
                                 "new_width, or resize_shorter")
        return index, array, None


def collate(items) -> tuple:
    """A batch of DecodedImages/PackedImages items -> (uint8 tensor, [(position in batch, index, error)])."""
    arrays = [array for _, array, _ in items]
    shape = next((a.shape for a in arrays if a is not None), None)
    failures = [(k, index, error) for k, (index, array, error) in enumerate(items) if error]
    if shape is None:
        return torch.empty(0, dtype=torch.uint8), failures
    batch = np.stack([a if a is not None else np.zeros(shape, np.uint8) for a in arrays])
    return torch.from_numpy(batch), failures


# ---- the packed format ----

@dataclass(frozen=True)
class PackedHeader:
    count: int
    shape: tuple  # C, H, W
    offset: int | None  # byte offset of the contiguous image array (None: chunked, read through h5py)
    labels: np.ndarray
    classes: tuple
    bgr: bool


def read_packed_header(path: Path) -> PackedHeader:
    """What a packed file holds, without reading the images. Raises NetdefError for other files."""
    import h5py
    try:
        with h5py.File(path, "r") as file:
            if file.attrs.get("format") != PACKED_FORMAT or "data" not in file or "label" not in file:
                raise NetdefError(Problem(f"{path} is not a packed image file",
                                          expected="a file written by tools/convert_imageset.py",
                                          hint="HDF5 files of your own are read by HDF5Data layers"))
            data = file["data"]
            classes = tuple(str(c) for c in file.attrs.get("classes", ()))
            return PackedHeader(data.shape[0], tuple(data.shape[1:]), data.id.get_offset(), file["label"][()],
                                classes, file.attrs.get("channel_order", "BGR") == "BGR")
    except OSError as exc:
        raise NetdefError(Problem(f"cannot read the packed image file {path}: {exc}")) from None


class PackedImages(torch.utils.data.Dataset):
    """Rows of a packed file. The contiguous image array is memory-mapped, so a worker's read is a copy
    out of the page cache: nothing is decoded."""

    def __init__(self, path: Path, header: PackedHeader):
        self.path, self.header = Path(path), header
        self.images = None  # opened lazily, in the process that reads

    def __len__(self):
        return self.header.count

    def _open(self):
        if self.header.offset is not None:
            return np.memmap(self.path, np.uint8, "r", self.header.offset, (self.header.count,) + self.header.shape)
        import h5py
        return h5py.File(self.path, "r")["data"]

    def __getitem__(self, index):
        if self.images is None:
            self.images = self._open()
        return index, np.array(self.images[index]), None

    def read_all(self) -> torch.Tensor:
        images = self._open()
        return torch.from_numpy(np.array(images[: self.header.count]))


def write_packed(path: Path, samples: list, geometry: Geometry, shape: tuple, *, classes=(), workers=0,
                 skip_bad=False, log=print) -> int:
    """Decode `samples` once into a packed file at `path` (a contiguous uint8 N x C x H x W dataset `data`,
    int64 `label`, the class names and the channel order as attributes). Unreadable images stop the
    packing with every problem listed, or are left out with `skip_bad`. Returns the number of images."""
    import h5py
    path = Path(path)
    partial = path.with_name(f".{path.name}.part")
    dataset = DecodedImages(samples, geometry, shape)
    kept, problems = [], []
    try:
        with h5py.File(partial, "w") as file:
            data = file.create_dataset("data", (len(samples),) + tuple(shape), np.uint8)
            for batch, failures in decoded_batches(dataset, workers):
                bad = {k for k, _, _ in failures}
                problems.extend(samples[index].problem(error) for _, index, error in failures)
                rows = [k for k in range(batch.indices.shape[0]) if k not in bad]
                if rows:
                    data[len(kept):len(kept) + len(rows)] = batch.images[rows].numpy()
                kept.extend(int(batch.indices[k]) for k in rows)
                log(f"packed {len(kept) + len(problems):,} / {len(samples):,} images")
            if problems and not skip_bad:
                raise NetdefError(problems)
        _finish_packed(partial, path, samples, kept, geometry, classes)
    finally:
        partial.unlink(missing_ok=True)
    if problems:
        log(skipped_warning(problems, len(samples)))
    return len(kept)


def _finish_packed(partial: Path, path: Path, samples: list, kept: list, geometry: Geometry, classes) -> None:
    """Move the decoded rows into the final file (copying only when images were left out)."""
    import h5py
    if len(kept) == len(samples):
        os.replace(partial, path)
        target = h5py.File(path, "a")
    else:
        target = h5py.File(path, "w")
        with h5py.File(partial, "r") as source:
            data = target.create_dataset("data", (len(kept),) + source["data"].shape[1:], np.uint8)
            for start in range(0, len(kept), 1024):
                data[start:start + 1024] = source["data"][start:start + 1024]
    with target:
        target.create_dataset("label", data=np.array([samples[i].label for i in kept], dtype=np.int64))
        target.attrs["format"] = PACKED_FORMAT
        target.attrs["classes"] = list(classes)
        target.attrs["channel_order"] = "BGR" if geometry.bgr and geometry.is_color else "RGB"


@dataclass
class DecodedBatch:
    indices: torch.Tensor
    images: torch.Tensor


def decoded_batches(dataset, workers: int, batch_size: int = 64):
    """The whole dataset in file order, decoded by `workers` processes: yields (DecodedBatch, failures)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=_indexed_collate)
    yield from loader


def _indexed_collate(items):
    images, failures = collate(items)
    return DecodedBatch(torch.tensor([index for index, _, _ in items]), images), failures


def decode_all(samples: list, geometry: Geometry, shape: tuple, *, workers: int, skip_bad: bool, log=print):
    """Every sample decoded into one uint8 N x C x H x W tensor, with its int64 labels. Unreadable images
    raise NetdefError listing all of them, or are left out with a warning when `skip_bad`."""
    dataset = DecodedImages(samples, geometry, shape)
    images = torch.empty((len(samples),) + tuple(shape), dtype=torch.uint8)
    good = torch.ones(len(samples), dtype=torch.bool)
    problems = []
    for batch, failures in decoded_batches(dataset, workers):
        images[batch.indices] = batch.images
        for _, index, error in failures:
            good[index] = False
            problems.append(samples[index].problem(error))
    if problems and not skip_bad:
        raise NetdefError(problems)
    labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
    if problems:
        log(skipped_warning(problems, len(samples)))
        images, labels = images[good], labels[good]
    if images.shape[0] == 0:
        raise NetdefError(Problem("no image of the data set could be read"))
    return images, labels


def skipped_warning(problems: list, total: int) -> str:
    return (f"Warning: skipped {len(problems)} of {total} images (skip_bad), first: {problems[0]}")


def verified(samples: list, log=print) -> list:
    """`samples` without those whose file is missing or whose header Pillow cannot read, with a warning
    counting them (skip_bad for streamed data sets, which decode each image only when a batch needs it)."""
    problems, good = [], []
    for sample in samples:
        try:
            image_size(sample.path)
            good.append(sample)
        except (OSError, ValueError, SyntaxError) as exc:
            problems.append(sample.problem(f"cannot read the image {sample.path}: {exc}"))
    if problems:
        log(skipped_warning(problems, len(samples)))
    return good
