"""Pack images into one fast-to-read file, as Caffe's convert_imageset packs them into an LMDB.

    python tools/convert_imageset.py LIST_OR_FOLDER OUT.h5 [--root_folder DIR]
                                     [--resize_height H --resize_width W | --resize_shorter S]
                                     [--gray] [--rgb] [--skip_bad] [--workers N] [--shuffle]
    python tools/convert_imageset.py LIST_OR_FOLDER OUT_lmdb --backend lmdb|leveldb [--encoded [--encode_type png]]
                                     [--resize_height H --resize_width W] [--gray] [--shuffle]

SOURCE is a Caffe list file (`path label` per line; paths relative to --root_folder, default the list's
folder) or a folder of class folders. Every image is decoded once, resized (Caffe's warp to H x W, or
the shorter side to S keeping the central S x S square), and stored as uint8 C x H x W in the HDF5
datasets `data` (N x C x H x W, contiguous) and `label` (N). An ImageData layer reads the file with
`image_data_param: {source: OUT.h5}`: later epochs decode nothing, they copy bytes out of the page cache.

`--backend lmdb` (or `leveldb`) writes Caffe's own format instead, as its convert_imageset does: a database
folder of Datum records keyed `<line, 8 digits>_<file name>`, raw uint8 C x H x W in B, G, R order, or with `--encoded` the
image files themselves (re-encoded as --encode_type, default PNG, when resized or made gray). A Data layer
reads it with `data_param: {source: OUT_lmdb, backend: LMDB}` (or LEVELDB), and so does Caffe. `--shuffle` shuffles the
list first (seeded: the same order every run).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netdef.errors import NetdefError  # noqa: E402
from netdef.data.datum import write_database  # noqa: E402
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
    parser.add_argument("output", type=Path, help="packed file to write (.h5), or the database folder (lmdb, leveldb)")
    parser.add_argument("--backend", choices=("h5", "lmdb", "leveldb"), default="h5",
                        help="h5: netdef's packed file (default); lmdb, leveldb: Caffe's databases of Datum records")
    parser.add_argument("--encoded", action="store_true", help="lmdb, leveldb: store the image files, not raw pixels")
    parser.add_argument("--encode_type", default="", choices=("", "png", "jpg"),
                        help="with --encoded: re-encode every image in this format (default: keep the files)")
    parser.add_argument("--shuffle", action="store_true", help="shuffle the list before writing (seeded)")
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
        if args.shuffle:
            random.Random(0).shuffle(samples)
        width, height = image_size(samples[0].path)
        shape = (geometry.channels,) + geometry.stored_size(width, height)
        start = time.perf_counter()
        log = lambda line: print(line, file=sys.stderr)  # noqa: E731
        if args.backend != "h5":
            count = write_database(args.output, samples, geometry, shape, backend=args.backend,
                                   encoded=args.encoded, encode_type=args.encode_type, workers=args.workers, log=log)
        else:
            count = write_packed(args.output, samples, geometry, shape, classes=classes, workers=args.workers,
                                 skip_bad=args.skip_bad, log=log)
    except NetdefError as exc:
        print(exc, file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in args.output.iterdir()) if args.output.is_dir() else args.output.stat().st_size
    print(f"{args.output}: {count:,} images {shape[0]}x{shape[1]}x{shape[2]} "
          f"({size / 2**20:.1f} MiB) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
