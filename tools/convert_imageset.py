"""Pack images into one fast-to-read file, as Caffe's convert_imageset packs them into an LMDB.

    python tools/convert_imageset.py LIST_OR_FOLDER OUT.h5 [--root_folder DIR]
                                     [--resize_height H --resize_width W | --resize_shorter S]
                                     [--gray] [--rgb] [--skip_bad] [--workers N]

SOURCE is a Caffe list file (`path label` per line; paths relative to --root_folder, default the list's
folder) or a folder of class folders. Every image is decoded once, resized (Caffe's warp to H x W, or
the shorter side to S keeping the central S x S square), and stored as uint8 C x H x W in the HDF5
datasets `data` (N x C x H x W, contiguous) and `label` (N). An ImageData layer reads the file with
`image_data_param: {source: OUT.h5}`: later epochs decode nothing, they copy bytes out of the page cache.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdef.errors import NetdefError  # noqa: E402
from netdef.data.images import (Geometry, default_workers, folder_samples, image_size, missing_files,  # noqa: E402
                           read_list, skipped_warning, write_packed)


def source_samples(source: Path, root_folder: str | None) -> tuple:
    """(samples, class names) of a list file or a folder of class folders."""
    if source.is_dir():
        return folder_samples(source)
    root = Path(root_folder) if root_folder else source.parent
    return read_list(source, root), ()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="list file or folder of class folders")
    parser.add_argument("output", type=Path, help="packed file to write (.h5)")
    parser.add_argument("--root_folder", help="folder the list's paths are relative to (default: the list's folder)")
    parser.add_argument("--resize_height", type=int, default=0)
    parser.add_argument("--resize_width", type=int, default=0)
    parser.add_argument("--resize_shorter", type=int, default=0, help="shorter side to this, central square kept")
    parser.add_argument("--gray", action="store_true", help="one channel (Caffe's -gray)")
    parser.add_argument("--rgb", action="store_true", help="store R, G, B (default B, G, R as Caffe/OpenCV)")
    parser.add_argument("--skip_bad", action="store_true", help="leave out missing/unreadable images, with a warning")
    parser.add_argument("--workers", type=int, default=default_workers(), help="decoding processes")
    args = parser.parse_args(argv)
    if bool(args.resize_height) != bool(args.resize_width) or (args.resize_shorter and args.resize_height):
        parser.error("give --resize_height with --resize_width, or --resize_shorter, or neither")
    geometry = Geometry(args.resize_height, args.resize_width, args.resize_shorter, not args.gray, not args.rgb)
    try:
        samples, classes = source_samples(args.source, args.root_folder)
        missing = missing_files(samples)
        if missing and not args.skip_bad:
            raise NetdefError(missing)
        if missing:
            print(skipped_warning(missing, len(samples)), file=sys.stderr)
        samples = [s for s in samples if s.path.is_file()]
        width, height = image_size(samples[0].path)
        shape = (geometry.channels,) + geometry.stored_size(width, height)
        start = time.perf_counter()
        count = write_packed(args.output, samples, geometry, shape, classes=classes, workers=args.workers,
                             skip_bad=args.skip_bad, log=lambda line: print(line, file=sys.stderr))
    except NetdefError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.output}: {count:,} images {shape[0]}x{shape[1]}x{shape[2]} "
          f"({args.output.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
