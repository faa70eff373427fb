"""The mean image, the per-channel means and the pixel covariance's principal components of a data set,
printed as transform_param YAML to paste into a net (Caffe's compute_image_mean, plus AlexNet's PCA).

    python tools/compute_image_mean.py SOURCE [-o mean.npy | -o mean.binaryproto] [--backend LMDB]
                                       [--resize_height H --resize_width W | --resize_shorter S] [--rgb]

SOURCE is what a data layer reads: a list file, a folder of class folders or a packed .h5 file (as an
ImageData layer; give the same resize options as the layer, or none for packed files), or a Data
layer's folder or database with --backend (IDX, CIFAR10, CIFAR100, LMDB, LEVELDB). Values are on the 0-255
pixel scale, in the channel order the layer produces (BGR for ImageData unless --rgb). The mean image (-o)
is float32 C x H x W in .npy format, or Caffe's 1 x C x H x W BlobProto when it ends in .binaryproto (as
Caffe's compute_image_mean writes it), for `transform_param: {mean_file: ...}`. The eigenvectors and eigenvalues of
the C x C covariance of all pixels are AlexNet's lighting noise (`pca_eigval`, `pca_eigvec`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdef.errors import NetdefError  # noqa: E402
from netdef.data.mean import BINARYPROTO, write_binaryproto  # noqa: E402
from netdef.data.images import (DecodedImages, Geometry, PackedImages, decoded_batches, default_workers,  # noqa: E402
                           folder_samples, image_size, read_list, read_packed_header)
from netdef.layers.base import ShapeError  # noqa: E402
from netdef.layers.data import BACKENDS  # noqa: E402

CHUNK = 512


def image_batches(args):
    """uint8 N x C x H x W batches of the whole data set."""
    source = args.source
    if args.backend:
        images, _ = BACKENDS[args.backend](source, args.split).load()
        yield from images.split(CHUNK)
    elif source.suffix.lower() in (".h5", ".hdf5"):
        header = read_packed_header(source)
        images = PackedImages(source, header)._open()
        for start in range(0, header.count, CHUNK):
            yield torch.from_numpy(np.array(images[start:start + CHUNK]))
    else:
        geometry = Geometry(args.resize_height, args.resize_width, args.resize_shorter, True, not args.rgb)
        samples = folder_samples(source)[0] if source.is_dir() else read_list(source, source.parent)
        width, height = image_size(samples[0].path)
        dataset = DecodedImages(samples, geometry, (3,) + geometry.stored_size(width, height))
        for batch, failures in decoded_batches(dataset, args.workers):
            if failures:
                raise NetdefError([samples[index].problem(error) for _, index, error in failures])
            yield batch.images


def statistics(batches) -> dict:
    """Mean image, channel means and the pixel covariance's eigen-decomposition (largest first), in float64."""
    count, total, moments, pixels = 0, None, None, 0
    for images in batches:
        x = images.double()
        total = x.sum(0) if total is None else total + x.sum(0)
        count += x.shape[0]
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # C x (all pixels of the batch)
        moments = flat @ flat.T if moments is None else moments + flat @ flat.T
        pixels += flat.shape[1]
    mean_image = total / count
    channel_mean = mean_image.mean(dim=(1, 2))
    covariance = moments / pixels - torch.outer(channel_mean, channel_mean)
    eigval, eigvec = torch.linalg.eigh(covariance)
    order = eigval.argsort(descending=True)
    return {"count": count, "mean_image": mean_image, "mean_value": channel_mean,
            "eigval": eigval[order].clamp_min(0), "eigvec": eigvec[:, order].T}  # rows: eigenvectors


def as_yaml(stats: dict, mean_file: str | None) -> str:
    def numbers(values):
        return "[" + ", ".join(f"{v:.6g}" for v in values.tolist()) + "]"
    lines = ["transform_param:", f"  mean_value: {numbers(stats['mean_value'])}"]
    if mean_file:
        lines.append(f"  # or, instead of mean_value, the mean image: mean_file: {mean_file}")
    if stats["mean_image"].shape[0] > 1:
        lines.append(f"  pca_eigval: {numbers(stats['eigval'])}")
        lines.append("  pca_eigvec: [" + ", ".join(numbers(row) for row in stats["eigvec"]) + "]")
        lines.append("  pca_std: 0.1")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="list file, class folder, packed .h5, or a Data folder")
    parser.add_argument("-o", "--output", type=Path, help="write the mean image here (.npy, or .binaryproto)")
    parser.add_argument("--backend", choices=sorted(BACKENDS), help="read SOURCE as a Data layer folder")
    parser.add_argument("--split", default="train", help="with --backend: the split (default train)")
    parser.add_argument("--resize_height", type=int, default=0)
    parser.add_argument("--resize_width", type=int, default=0)
    parser.add_argument("--resize_shorter", type=int, default=0)
    parser.add_argument("--rgb", action="store_true", help="images in R, G, B order (ImageData channel_order RGB)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="decoding processes")
    args = parser.parse_args(argv)
    try:
        stats = statistics(image_batches(args))
    except (NetdefError, ShapeError) as exc:
        print(getattr(exc, "message", exc), file=sys.stderr)
        return 2
    channels, height, width = stats["mean_image"].shape
    if args.output:
        mean_image = stats["mean_image"].float().numpy()
        if args.output.suffix == BINARYPROTO:
            write_binaryproto(mean_image, args.output)
        else:
            np.save(args.output, mean_image)
    print(f"# {stats['count']:,} images of {channels}x{height}x{width} from {args.source}")
    for c, value in enumerate(stats["mean_value"].tolist()):
        print(f"# mean_value channel [{c}]: {value:.6g}")
    print(as_yaml(stats, str(args.output) if args.output else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
