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


def decode(value: bytes, key: bytes, folder: Path, color=None):
    """One record as (array C x H x W: uint8 for `data`, float32 for `float_data`, label). An encoded image
    is decoded with its own channels, or in colour (`color` True) or gray (False): Caffe's force_color and
    force_gray, which do not touch raw records."""
    import numpy as np
    from google.protobuf.message import DecodeError

    from ..caffe.proto import parse
    name = key.decode("utf-8", "replace")
    try:
        datum = parse("Datum", value)
    except (DecodeError, RuntimeError, ValueError):
        raise DatumError(f"{folder}: record '{name}' is not a Caffe Datum") from None
    if datum.encoded:
        return _decode_image(datum.data, name, folder, color), datum.label
    shape = (datum.channels, datum.height, datum.width)
    count = shape[0] * shape[1] * shape[2]
    if datum.data:
        values = np.frombuffer(datum.data, dtype=np.uint8)
    else:
        values = np.asarray(datum.float_data, dtype=np.float32)
    if count == 0 or values.size != count:
        raise DatumError(f"{folder}: record '{name}' holds {values.size} values for its shape "
                         f"{shape[0]} x {shape[1]} x {shape[2]}")
    return values.reshape(shape), datum.label


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # Pillow modes decoded to one channel (OpenCV's native decoding)


def _decode_image(data: bytes, name: str, folder: Path, color):
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            gray = image.mode in GRAY_MODES if color is None else not color
            array = np.asarray(image.convert("L" if gray else "RGB"))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:  # a bomb: too many pixels to decode
        raise DatumError(f"{folder}: record '{name}' holds an encoded image that cannot be decoded: {exc}") from None
    if array.ndim == 2:
        return array[np.newaxis]
    return np.ascontiguousarray(array[:, :, ::-1].transpose(2, 0, 1))  # RGB -> Caffe's BGR, C x H x W


def sample_shape(backend: str, folder: Path, color=None) -> tuple:
    """(channels, height, width) of the first record (decoded as `decode`'s `color` says)."""
    for key, value in records(backend, folder):
        return decode(value, key, folder, color)[0].shape
    raise DatumError(f"{folder} holds no records")


def load(backend: str, folder: Path, color=None):
    """Every record: (images N x C x H x W, uint8 or float32; int64 labels N), decoded as `decode`'s `color`
    says. All records must have the first one's shape, as Caffe's Data layer requires without cropping."""
    import numpy as np
    import torch
    images, labels, first = [], [], None
    for key, value in records(backend, folder):
        array, label = decode(value, key, folder, color)
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


def record_key(index: int, path: Path) -> bytes:
    """Caffe's convert_imageset key: the line number in 8 digits, '_', the file's name (Caffe writes the
    path as listed; the name keeps keys under LMDB's 511 bytes). Records are read in key order."""
    return f"{index:08d}_{path.name}".encode()


class _LmdbWriter:
    """Records put in transactions of `per_commit` (as convert_imageset commits every 1000)."""
    per_commit = 1000

    def __init__(self, path: Path):
        import lmdb
        self.env = lmdb.open(str(path), map_size=1 << 40, subdir=True, meminit=False, map_async=True)
        self.transaction, self.count = self.env.begin(write=True), 0

    def put(self, key: bytes, value: bytes) -> None:
        self.transaction.put(key, value)
        self.count += 1
        if self.count % self.per_commit == 0:
            self.transaction.commit()
            self.transaction = self.env.begin(write=True)

    def close(self) -> None:
        self.transaction.commit()
        self.env.sync()
        self.env.close()


class _LevelDbWriter:
    """Records put in write batches of `per_commit`, as convert_imageset's LevelDB transactions."""
    per_commit = 1000

    def __init__(self, path: Path):
        try:
            import plyvel
        except ImportError:
            from ..errors import NetdefError
            raise NetdefError("writing LevelDB needs the plyvel package (pip install \"netdef[leveldb]\")") from None
        self.database = plyvel.DB(str(path), create_if_missing=True, error_if_exists=True)
        self.batch, self.count = self.database.write_batch(), 0

    def put(self, key: bytes, value: bytes) -> None:
        self.batch.put(key, value)
        self.count += 1
        if self.count % self.per_commit == 0:
            self.batch.write()
            self.batch = self.database.write_batch()

    def close(self) -> None:
        self.batch.write()
        self.database.close()


WRITERS = {"lmdb": _LmdbWriter, "leveldb": _LevelDbWriter}  # convert_imageset --backend -> writer


def encode_image(array, encode_type: str) -> bytes:
    """A C x H x W uint8 array (BGR, or gray) as PNG or JPEG file bytes."""
    import numpy as np
    from PIL import Image
    pixels = array[0] if array.shape[0] == 1 else np.ascontiguousarray(array[::-1].transpose(1, 2, 0))
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format={"jpg": "JPEG", "jpeg": "JPEG"}.get(encode_type, encode_type.upper()))
    return stream.getvalue()


def write_database(path: Path, samples: list, geometry, shape: tuple, *, backend: str = "lmdb",
                   encoded: bool = False, encode_type: str = "", workers: int = 0, log=print) -> int:
    """An LMDB (or with `backend` "leveldb" a LevelDB) of Datums as Caffe's convert_imageset writes it, one
    record per sample in the order given:
    raw uint8 C x H x W (BGR) of `geometry`, or with `encoded` the image file: its own bytes when neither
    resizing, a channel change nor `encode_type` asks for a new one, else re-encoded (PNG unless
    `encode_type`). Unreadable images stop it with every problem listed (NetdefError). Returns the count."""
    from ..errors import NetdefError
    from .images import DecodedImages, decoded_batches
    path = Path(path)
    if path.exists():
        raise NetdefError(f"{path} exists: Caffe's convert_imageset refuses to write into an existing database")
    if encoded and not (geometry.fixed or encode_type or not geometry.is_color):
        return _write_file_bytes(WRITERS[backend](path), samples, log)
    writer, problems = WRITERS[backend](path), []
    try:
        for batch, failures in decoded_batches(DecodedImages(samples, geometry, shape), workers):
            bad = {k for k, _, _ in failures}
            problems += [samples[index].problem(error) for _, index, error in failures]
            for k, index in enumerate(batch.indices.tolist()):
                if k in bad:
                    continue
                image, sample = batch.images[k].numpy(), samples[index]
                data = encode_image(image, encode_type or "png") if encoded else None
                writer.put(record_key(index, sample.path), datum_bytes(image, sample.label, data))
            log(f"Processed {writer.count:,} files.")
    finally:
        writer.close()
    if problems:
        import shutil
        shutil.rmtree(path)  # a database missing images would train on a part of the list unnoticed
        raise NetdefError(problems)
    return writer.count


def _write_file_bytes(writer, samples: list, log) -> int:
    try:
        for index, sample in enumerate(samples):
            writer.put(record_key(index, sample.path), datum_bytes(None, sample.label, sample.path.read_bytes()))
    finally:
        writer.close()
    log(f"Processed {writer.count:,} files.")
    return writer.count


# ---- streaming: records read by DataLoader workers while the net trains ----

def record_count(backend: str, folder: Path) -> int:
    """How many records a database holds (LMDB says; LevelDB's keys are counted)."""
    if backend == "LMDB":
        import lmdb
        try:
            with lmdb.open(str(folder), readonly=True, lock=False, max_readers=1) as env:
                return env.stat()["entries"]
        except lmdb.Error as exc:
            raise DatumError(f"{folder} is not a readable LMDB: {exc}") from None
    return sum(1 for _ in records(backend, folder))


def labels_and_keys(backend: str, folder: Path):
    """One pass over a database: (its keys in order, int64 labels); images are not decoded."""
    import torch
    from google.protobuf.message import DecodeError

    from ..caffe.proto import message
    keys, labels, datum = [], [], message("Datum")()
    for key, value in records(backend, folder):
        try:
            datum.ParseFromString(value)
        except (DecodeError, RuntimeError, ValueError):  # upb reports some damage as RuntimeError
            raise DatumError(f"{folder}: record '{key.decode('utf-8', 'replace')}' is not a Caffe Datum") from None
        keys.append(key)
        labels.append(datum.label)
    return keys, torch.tensor(labels, dtype=torch.int64)


class DatumRecords:
    """An LMDB's records as a DataLoader dataset: item (index, uint8 C x H x W array or None, error). Each
    process opens the database itself (an LMDB environment must not cross a fork)."""

    def __init__(self, folder: Path, keys: list, shape: tuple, color=None):
        self.folder, self.keys, self.shape, self.color = Path(folder), keys, tuple(shape), color
        self._env, self._pid = None, None

    def __len__(self):
        return len(self.keys)

    def _transaction(self):
        import os

        import lmdb
        if self._pid != os.getpid():
            self._env = lmdb.open(str(self.folder), readonly=True, lock=False, readahead=False, max_readers=1)
            self._pid = os.getpid()
        return self._env.begin(buffers=False)

    def __getitem__(self, index):
        key = self.keys[index]
        try:
            with self._transaction() as transaction:
                array, _ = decode(transaction.get(key), key, self.folder, self.color)
        except DatumError as exc:
            return index, None, str(exc)
        if array.shape != self.shape:
            return index, None, (f"{self.folder}: record '{key.decode('utf-8', 'replace')}' is "
                                 f"{' x '.join(map(str, array.shape))}, the first record "
                                 f"{' x '.join(map(str, self.shape))}")
        return index, array, None

    def __getstate__(self):
        return {**self.__dict__, "_env": None, "_pid": None}


class RecordProblems:
    """What StreamReader names a failing item with: the record's error already says the file and key."""

    def __getitem__(self, index):
        return self

    @staticmethod
    def problem(message):
        from ..errors import Problem
        return Problem(message)
