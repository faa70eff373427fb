"""Mean images for transform_param's mean_file (torch-free: checking a net reads them too): a numpy .npy
array, or Caffe's .binaryproto (a BlobProto, as compute_image_mean writes it)."""
from __future__ import annotations

from pathlib import Path

BINARYPROTO = ".binaryproto"


def load_mean(path: Path, mmap_mode=None):
    """A mean image as a numpy array C x H x W (a leading 1, as in Caffe's 1 x C x H x W mean blob, is
    dropped): from a .binaryproto BlobProto, or a .npy file of tools/compute_image_mean.py."""
    import numpy as np
    if Path(path).suffix == BINARYPROTO:
        array = read_binaryproto(path)
    else:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    return array[0] if array.ndim == 4 and array.shape[0] == 1 else array


def read_binaryproto(path):
    """A .binaryproto BlobProto as a float32 numpy array of its shape (a damaged file: NetdefError)."""
    from ..caffe.caffemodel import blob_tensor, read_message
    blob = read_message(path, "BlobProto", "a Caffe BlobProto (.binaryproto, as compute_image_mean writes it)")
    return blob_tensor(blob, path, "its blob").numpy()


def write_binaryproto(array, path) -> None:
    """Write a mean image (C x H x W) as Caffe's compute_image_mean does: a 1 x C x H x W BlobProto with the
    legacy num/channels/height/width shape, which every Caffe version reads."""
    import numpy as np

    from ..caffe.proto import message
    array = np.asarray(array, dtype=np.float32)
    channels, height, width = array.shape
    blob = message("BlobProto")(num=1, channels=channels, height=height, width=width)
    blob.data.extend(array.reshape(-1).tolist())
    Path(path).write_bytes(blob.SerializeToString())
