"""Paths written in net and solver files. netdef reads a relative path relative to the file that writes it;
Caffe reads it relative to the folder `caffe` runs in, its root (`source: "examples/mnist/mnist_train_lmdb"`
in examples/mnist/lenet_train_test.prototxt), so a Caffe file's paths are looked for in the folders above
it too."""
from __future__ import annotations

import os
from pathlib import Path


def exists(path) -> bool:
    """Whether a path exists; False for a name the file system cannot even look up (too long, a NUL)."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def caffe_rooted(relative: str, folder) -> Path | None:
    """Where a relative path written in a file of `folder` is: beside the file, else below the nearest
    folder above it that has it (the Caffe root); None where it is nowhere."""
    if Path(relative).is_absolute():
        return None
    folder = Path(folder).resolve()
    return next((place / relative for place in (folder, *folder.parents) if exists(place / relative)), None)


def moved_path(value, old_dir, new_dir):
    """A relative path written in a file of `old_dir` as a file in `new_dir` must write it to name the same
    file; absolute paths and non-paths as they are. A trailing slash is kept (Caffe's root_folder is a prefix)."""
    if not isinstance(value, str) or not value or os.path.isabs(value):
        return value
    moved = Path(os.path.relpath(Path(old_dir) / value, new_dir)).as_posix()
    return moved + "/" if value.endswith("/") else moved


def caffe_path_mover(source_dir, target_dir):
    """`move(value)` for a path written in a Caffe file of `source_dir`, found as Caffe would find it (beside
    the file or below the Caffe root), as a file in `target_dir` must write it; a path found nowhere stays as
    written (data not made yet, an output file, or a mistake `netdef check` reports)."""
    source_dir, target_dir = Path(source_dir).resolve(), Path(target_dir).resolve()

    def move(value):
        if not isinstance(value, str) or not value or os.path.isabs(value):
            return value
        found = caffe_rooted(value, source_dir)
        if found is None:
            return value
        near = os.path.commonpath([found, target_dir]) != found.anchor  # else an absolute path reads better
        written = Path(os.path.relpath(found, target_dir)).as_posix() if near else str(found)
        return written + "/" if value.endswith("/") else written
    return move


def caffe_prefix_mover(source_dir, target_dir):
    """`move(prefix)` for a snapshot prefix (a folder and a file-name start) written in a Caffe solver of
    `source_dir`: its folder found as Caffe would find it, as a file in `target_dir` must write it. A folder
    found nowhere, and a bare file-name start (`lenet`: the folder Caffe runs in, whichever that is), stay as
    written."""
    move_folder = caffe_path_mover(source_dir, target_dir)

    def move(prefix):
        folder, stem = os.path.split(prefix) if isinstance(prefix, str) else ("", prefix)
        return Path(move_folder(folder), stem).as_posix() if folder else prefix
    return move


def require_file(path, what: str) -> Path:
    """`path` as a Path, where it is a file; else the problem `no such <what> file: <path>`."""
    from .errors import NetdefError, Problem
    if not Path(path).is_file():
        raise NetdefError(Problem(f"no such {what} file: {path}"))
    return Path(path)
