"""Write a small synthetic image data set as class folders (and Caffe list files) for trying ImageData.

    python tools/make_image_folder.py data/tiny_images

gives data/tiny_images/{train,test}/<class>/NNN.{jpg,png} and train.txt / test.txt lists (`path label`,
paths relative to the list). Each class is a coloured disc (red, green or blue) at a random place on a
noisy grey background; sizes vary between images, and JPEG and PNG files are mixed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 70, 210)}


def draw(rng: np.random.Generator, colour) -> Image.Image:
    height, width = int(rng.integers(32, 45)), int(rng.integers(36, 53))
    pixels = rng.normal(128, 30, (height, width, 3))
    radius = rng.uniform(6, 11)
    cy, cx = rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)
    ys, xs = np.mgrid[:height, :width]
    disc = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius ** 2
    pixels[disc] = np.asarray(colour) + rng.normal(0, 15, (int(disc.sum()), 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_split(root: Path, split: str, per_class: int, rng: np.random.Generator) -> None:
    lines = []
    for label, (name, colour) in enumerate(CLASSES.items()):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            path = folder / f"{k:03d}.{'png' if k % 3 == 0 else 'jpg'}"
            draw(rng, colour).save(path, quality=90)
            lines.append(f"{split}/{name}/{path.name} {label}")
    (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write (created)")
    parser.add_argument("--train", type=int, default=40, help="training images per class (default 40)")
    parser.add_argument("--test", type=int, default=10, help="test images per class (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    root = Path(args.root)
    make_split(root, "train", args.train, rng)
    make_split(root, "test", args.test, rng)
    print(f"{root}: {len(CLASSES)} classes, {args.train} training and {args.test} test images each")


if __name__ == "__main__":
    main()
