"""Mean images for transform_param's mean_file (torch-free: checking a net reads them too)."""
from __future__ import annotations

from pathlib import Path


def load_mean(path: Path, mmap_mode=None):
    """A mean image saved by tools/compute_image_mean.py as a numpy array C x H x W (a leading 1, as in
    Caffe's 1 x C x H x W mean blob, is dropped)."""
    import numpy as np
    array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    return array[0] if array.ndim == 4 and array.shape[0] == 1 else array
