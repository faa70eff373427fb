"""transform_param beyond Caffe's DataTransformer basics: a mean image (`mean_file`) and AlexNet's PCA
lighting noise (`pca_eigval`, `pca_eigvec`, `pca_std`), on top of netdef.readers.Transform's pad, crop,
mirror, mean_value and scale; plus the ten crops of `netdef test --oversample`.

All of it runs on whole batches on the training device, drawing from the transform's seeded generator,
so a resumed run repeats the augmentation of the uninterrupted one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .mean import load_mean
from .readers import InMemoryReader, Transform


class ImageTransform(Transform):
    """Transform plus the mean image (subtracted from the full stored image before pad, crop and mirror,
    so each output pixel loses the mean at its source location, as Caffe's DataTransformer does) and,
    in TRAIN, PCA lighting: every image gets eigvec^T (alpha * eigval) added to all its pixels, with
    alpha ~ N(0, pca_std) drawn per image and eigenvector (Krizhevsky et al. 2012, §4.1)."""

    def __init__(self, params: dict, phase: str, generator: torch.Generator, mean_image=None):
        super().__init__(params, phase, generator)
        device = generator.device
        self.mean_image = None if mean_image is None else mean_image.to(device).unsqueeze(0)
        self.lighting = None
        if params.get("pca_eigval") and self.random and params["pca_std"] > 0:
            eigvec = torch.tensor(params["pca_eigvec"], dtype=torch.float32, device=device)
            eigval = torch.tensor(params["pca_eigval"], dtype=torch.float32, device=device)
            self.lighting = eigvec.T * eigval  # C x K: column k is eigenvector k scaled by its eigenvalue
            self.pca_std = params["pca_std"]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.mean_image is not None:
            images = images.float() - self.mean_image
        out = super().__call__(images)
        if self.lighting is not None:
            alpha = torch.randn(out.shape[0], self.lighting.shape[1], generator=self.generator,
                                device=out.device) * self.pca_std
            shift = (alpha @ self.lighting.T) * self.scale  # N x C, on the scale of the output
            out = out + shift.view(out.shape[0], -1, 1, 1)
        return out


def make_transform(params: dict, phase: str, seed: int, device, base_dir: Path) -> ImageTransform:
    """The transform of a data layer. Its generator lives on the device so that random crops and flips
    never sync; it is seeded apart from the reader's order generator so that turning mirroring on does
    not change the order."""
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    mean = None
    if params.get("mean_file"):
        mean = torch.from_numpy(load_mean(base_dir / params["mean_file"]).astype("float32"))
    return ImageTransform(params, phase, generator, mean)


def ten_crops(images: torch.Tensor, crop: int) -> torch.Tensor:
    """Caffe's oversample: the 4 corner crops and the centre crop of every image, then their mirrors;
    N x C x H x W -> 10N x C x crop x crop, crop-major (rows k*N .. k*N+N-1 are crop k of every image)."""
    height, width = images.shape[-2:]
    offsets = [(0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop),
               ((height - crop) // 2, (width - crop) // 2)]
    crops = [images[..., top:top + crop, left:left + crop] for top, left in offsets]
    crops += [c.flip(-1) for c in crops]
    return torch.cat(crops)


def average_crops(scores: torch.Tensor, crops: int = 10) -> torch.Tensor:
    """Scores of crop-major crops -> the log of each image's softmax probabilities averaged over its crops,
    so that a following SoftmaxWithLoss or Accuracy sees the averaged prediction (softmax of the log of a
    distribution is the distribution itself)."""
    probabilities = torch.softmax(scores.float(), dim=1)
    mean = probabilities.view(crops, -1, *probabilities.shape[1:]).mean(0)
    return mean.clamp_min(torch.finfo(mean.dtype).tiny).log()


def image_reader(images: torch.Tensor, labels: torch.Tensor, n_tops: int, *, batch_size: int,
                 transform_param: dict, phase: str, seed: int, device, base_dir=".") -> InMemoryReader:
    """The reader of an image data set (uint8 N x C x H x W, int64 labels N) for a data layer with
    `n_tops` tops (data, or data and label), applying the layer's transform_param (a mean_file is
    relative to `base_dir`)."""
    device = torch.device(device)
    transform = make_transform(transform_param, phase, seed, device, Path(base_dir))
    return InMemoryReader([images, labels][:n_tops], batch_size, shuffle=phase == "TRAIN", seed=seed,
                          device=device, transform=transform)
