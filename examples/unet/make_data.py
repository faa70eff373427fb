"""Writes the segmentation set of the U-Net example (unet.yaml): 44 x 44 grey images of one to three discs
and bars on a noisy background, and their 0/1 masks (1: inside a shape), as HDF5 for HDF5Data (datasets
`data` N x 1 x 44 x 44 float32 and `mask` N x 1 x 44 x 44 int64), a training and a test split. Seeded, so the
set is the same every time.

    python examples/unet/make_data.py examples/unet/data
"""
from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

SIZE = 44


def sample(rng: np.random.Generator):
    """(image, mask) of one picture: shapes brighter than the background, both blurred by noise."""
    rows, cols = np.mgrid[:SIZE, :SIZE]
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        centre_r, centre_c = rng.uniform(6, SIZE - 6, 2)
        if rng.random() < 0.5:
            radius = rng.uniform(3, 9)
            mask |= (rows - centre_r) ** 2 + (cols - centre_c) ** 2 <= radius ** 2
        else:
            half_h, half_w = rng.uniform(2, 9, 2)
            mask |= (abs(rows - centre_r) <= half_h) & (abs(cols - centre_c) <= half_w)
    image = 0.3 + 0.4 * mask + rng.normal(0, 0.15, (SIZE, SIZE))
    return image.astype(np.float32), mask.astype(np.int64)


def write_split(folder: Path, split: str, count: int, seed: int) -> Path:
    """Writes folder/SPLIT.h5 and folder/SPLIT_h5.txt, the list HDF5Data reads; returns the list file."""
    rng = np.random.default_rng(seed)
    images, masks = zip(*(sample(rng) for _ in range(count)))
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / f"{split}.h5", "w") as file:
        file["data"] = np.stack(images)[:, None]
        file["mask"] = np.stack(masks)[:, None]
    listing = folder / f"{split}_h5.txt"
    listing.write_text(f"{split}.h5\n")
    return listing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write train.h5, test.h5 and their list files")
    parser.add_argument("--train", type=int, default=256, help="training pictures")
    parser.add_argument("--test", type=int, default=64, help="test pictures")
    args = parser.parse_args(argv)
    write_split(args.folder, "train", args.train, seed=1)
    write_split(args.folder, "test", args.test, seed=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
