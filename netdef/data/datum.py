"""Caffe's Datum records in LMDB and LevelDB databases, as Caffe's convert_imageset, convert_mnist_data and
convert_cifar_data write them: one record per sample, key -> a serialized Datum (channels, height, width,
uint8 `data` or `float_data`, or an `encoded` JPEG/PNG in `data`; label).

Records are read in key order (Caffe's cursor order). Raw and encoded images are C x H x W in the
channel order they were stored in: Caffe's tools store OpenCV's BGR, so encoded colour images are decoded
to BGR too (with Pillow), as Caffe's DecodeDatumToCVMat gives them. LMDB environments are opened
read-only without the lock file (reading never writes into the database folder).
"""
from __future__ import annotations

import io
from pathlib import Path


class DatumError(ValueError):
    """A database that cannot be read, or a record that is not a Datum of the database's shape."""


def _lmdb_records(folder: Path):
    import lmdb
    try:
        env = lmdb.open(str(folder), readonly=True, lock=False, readahead=False, max_readers=1)
    except lmdb.Error as exc:
        raise DatumError(f"{folder} is not a readable LMDB: {exc}") from None
    _check_lmdb_size(env, folder)
    try:
        with env.begin(buffers=False) as transaction:
            yield from transaction.cursor()
    except lmdb.Error as exc:
        raise DatumError(f"{folder} is a damaged LMDB: {exc}") from None
    finally:
        env.close()


def _check_lmdb_size(env, folder: Path) -> None:
    """A truncated data.mdb must be refused before reading: LMDB maps the file and touching a page past
    its end kills the process (SIGBUS). The meta page says how many pages the database has."""
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = (folder / "data.mdb").stat().st_size
    if size < needed:
        env.close()
        raise DatumError(f"{folder / 'data.mdb'} is truncated: {size:,} bytes, its header says {needed:,}")


def _leveldb_records(folder: Path):
    try:
        import plyvel
    except ImportError:
        raise DatumError("reading LevelDB needs the plyvel package (pip install \"netdef[leveldb]\")") from None
    try:
        database = plyvel.DB(str(folder), create_if_missing=False)
    except (plyvel.Error, OSError) as exc:
        raise DatumError(f"{folder} is not a readable LevelDB: {exc}") from None
    try:
        yield from database.iterator()
    except plyvel.Error as exc:
        raise DatumError(f"{folder} is a damaged LevelDB: {exc}") from None
    finally:
        database.close()


RECORDS = {"LMDB": _lmdb_records, "LEVELDB": _leveldb_records}  # data_param.backend -> (key, value) iterator


def records(backend: str, folder: Path):
    """The (key, value) pairs of a Caffe database folder in key order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatumError(f"{folder} is not a folder")
    return RECORDS[backend](folder)


def decode(value: bytes, key: bytes, folder: Path):
    """One record as (array C x H x W: uint8 for `data`, float32 for `float_data`, label)."""
    import numpy as np
    from google.protobuf.message import DecodeError

    from ..caffe.proto import parse
    name = key.decode("utf-8", "replace")
    try:
        datum = parse("Datum", value)
    except (DecodeError, RuntimeError, ValueError):
        raise DatumError(f"{folder}: record '{name}' is not a Caffe Datum") from None
    if datum.encoded:
        return _decode_image(datum.data, name, folder), datum.label
    shape = (datum.channels, datum.height, datum.width)
    count = shape[0] * shape[1] * shape[2]
    if datum.data:
        values = np.frombuffer(datum.data, dtype=np.uint8)
    else:
        values = np.fromiter(datum.float_data, dtype=np.float32, count=len(datum.float_data))
    if count == 0 or values.size != count:
        raise DatumError(f"{folder}: record '{name}' holds {values.size} values for its shape "
                         f"{shape[0]} x {shape[1]} x {shape[2]}")
    return values.reshape(shape), datum.label


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # Pillow modes decoded to one channel (OpenCV's native decoding)


def _decode_image(data: bytes, name: str, folder: Path):
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            array = np.asarray(image.convert("L" if image.mode in GRAY_MODES else "RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DatumError(f"{folder}: record '{name}' holds an encoded image that cannot be decoded: {exc}") from None
    if array.ndim == 2:
        return array[np.newaxis]
    return np.ascontiguousarray(array[:, :, ::-1].transpose(2, 0, 1))  # RGB -> Caffe's BGR, C x H x W


def sample_shape(backend: str, folder: Path) -> tuple:
    """(channels, height, width) of the first record."""
    for key, value in records(backend, folder):
        return decode(value, key, folder)[0].shape
    raise DatumError(f"{folder} holds no records")


def load(backend: str, folder: Path):
    """Every record: (images N x C x H x W, uint8 or float32; int64 labels N). All records must have the
    first one's shape, as Caffe's Data layer requires without cropping."""
    import numpy as np
    import torch
    images, labels, first = [], [], None
    for key, value in records(backend, folder):
        array, label = decode(value, key, folder)
        if first is None:
            first = array.shape
        elif array.shape != first:
            raise DatumError(f"{folder}: record '{key.decode('utf-8', 'replace')}' is "
                             f"{' x '.join(map(str, array.shape))}, the first record "
                             f"{' x '.join(map(str, first))}")
        images.append(array)
        labels.append(label)
    if not images:
        raise DatumError(f"{folder} holds no records")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


def datum_bytes(image, label: int, encoded: bytes | None = None) -> bytes:
    """A serialized Datum: `image` uint8 C x H x W stored raw, or the `encoded` bytes of an image file (as
    Caffe's convert_imageset --encoded stores them: no shape, the decoder finds it)."""
    from ..caffe.proto import message
    if encoded is not None:
        return message("Datum")(data=encoded, encoded=True, label=int(label)).SerializeToString()
    channels, height, width = image.shape
    return message("Datum")(channels=channels, height=height, width=width, data=image.tobytes(),
                            label=int(label)).SerializeToString()
