"""The transform_param fields netdef adds to Caffe's (mean_file, AlexNet's PCA lighting) and their
cross-field rules; torch-free, so that checking a net never imports torch (runtime: netdef.augment)."""
from __future__ import annotations

from pathlib import Path

from ..fields import File, Float, Str
from ..errors import ShapeError
from ..data.mean import load_mean

AUGMENT_FIELDS = {
    "mean_file": File(None, "mean image (.npy, C x H x W of the stored images, from tools/compute_image_mean.py) "
                           "subtracted before cropping; relative to this net file", ),
    "pca_eigval": Float(None, "AlexNet lighting: eigenvalues of the training set's pixel covariance "
                              "(0-255 scale, from tools/compute_image_mean.py); TRAIN only", repeated=True),
    "pca_eigvec": Float(None, "AlexNet lighting: the eigenvectors, one list of C components per eigenvalue",
                        repeated=True, list_of=True),
    "pca_std": Float(0.1, "AlexNet lighting: standard deviation of each eigenvector's weight alpha", minimum=0),
}


def check_augment(params: dict, shape: tuple, base_dir: Path) -> None:
    """Cross-field rules of the fields above for stored images of `shape` (C, H, W); raises ShapeError."""
    channels = shape[0]
    if params["mean_file"]:
        if params["mean_value"]:
            raise ShapeError("give mean_file or mean_value, not both (as Caffe)", path=("transform_param", "mean_file"))
        path = base_dir / params["mean_file"]
        try:
            mean = load_mean(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ShapeError(f"cannot read the mean file {path}: {exc}", path=("transform_param", "mean_file"),
                             expected="a .npy file from tools/compute_image_mean.py") from None
        if tuple(mean.shape) != tuple(shape):
            raise ShapeError("the mean image does not have the shape of the stored images",
                             expected=" x ".join(map(str, shape)), found=" x ".join(map(str, mean.shape)),
                             path=("transform_param", "mean_file"))
    eigval, eigvec = params["pca_eigval"], params["pca_eigvec"]
    if eigval or eigvec:
        if len(eigval) != channels:
            raise ShapeError("give one pca_eigval per channel", expected=str(channels), found=str(len(eigval)),
                             path=("transform_param", "pca_eigval"))
        if len(eigvec) != channels or any(len(row) != channels for row in eigvec):
            raise ShapeError("pca_eigvec must hold one eigenvector of C components per eigenvalue",
                             expected=f"{channels} lists of {channels} numbers",
                             found=f"{len(eigvec)} lists of {sorted({len(r) for r in eigvec})} numbers",
                             path=("transform_param", "pca_eigvec"))
