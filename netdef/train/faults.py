"""What the solver does when something goes wrong that would otherwise lose work silently: a loss that is
not finite (`nan_policy`), and the first layer whose output is not finite, found by running the offending
batch again with a check on every layer's output."""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import torch

from ..build import module_name
from ..errors import NetdefError, Problem

NAN_POLICIES = ("stop", "skip", "ignore")


def non_finite(tensors) -> bool:
    """Whether any of `tensors` holds a NaN or an infinity (one read-back)."""
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    if not tensors:
        return False
    return not bool(torch.stack([torch.isfinite(t.detach()).all() for t in tensors]).all())


def first_non_finite_layer(phase_net, batch: dict, autocast) -> tuple:
    """Run `batch` through the compiled net again with a forward hook on every layer, in execution order:
    (layer name, layer type, whether its own parameters are non-finite) of the first layer whose output
    holds a NaN or an infinity; (None, None, False) if none does (the loss came out finite this time)."""
    found = []
    hooks = []
    for spec in phase_net.info.graph.layers:
        if not spec.impl.compiled():
            continue
        module = phase_net.net.get_submodule(module_name(spec.name))

        def hook(module, inputs, output, spec=spec):
            if not found and non_finite(output if isinstance(output, (tuple, list)) else [output]):
                found.append((spec.name, spec.type, non_finite(list(module.parameters()))))
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad(), autocast():
            phase_net.net(**batch)
    finally:
        for handle in hooks:
            handle.remove()
    return found[0] if found else (None, None, False)


def existing_snapshots(prefix: Path) -> list:
    """The snapshots `<prefix>_iter_<N>.pt` already there, by N."""
    prefix = Path(prefix)
    if not prefix.parent.is_dir():
        return []
    pattern = re.compile(re.escape(prefix.name) + r"_iter_(\d+)\.pt")
    found = [(int(m.group(1)), path) for path in prefix.parent.iterdir() if (m := pattern.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def check_fresh_prefix(prefix: Path, overwrite: bool, pos, notes: list) -> None:
    """A fresh run (no --snapshot) whose prefix already holds snapshots: NetdefError offering a resume,
    --overwrite or another snapshot_prefix; with `overwrite`, a note for the log."""
    found = existing_snapshots(prefix)
    if not found:
        return
    if overwrite:
        notes.append(f"--overwrite: {len(found)} snapshot(s) of {prefix} from an earlier run are overwritten as "
                     "this run reaches their iterations")
        return
    raise NetdefError(Problem(
        f"snapshots of an earlier run are already there: {len(found)} file(s) {prefix}_iter_*.pt, the newest "
        f"{found[-1]}; a fresh run would overwrite them", pos, expected="a snapshot prefix without snapshots",
        hint=f"resume with --snapshot {found[-1]}, start afresh over them with --overwrite, or set another "
             "snapshot_prefix"))


def check_later_snapshots(prefix: Path, resumed_at: int, overwrite: bool, pos, notes: list) -> None:
    """A resume from iteration N whose prefix holds snapshots past N (an older snapshot chosen, or another
    run's): NetdefError offering the newest or --overwrite, since the resumed run would overwrite them."""
    later = [path for path in existing_snapshots(prefix) if int(path.stem.rsplit("_iter_", 1)[1]) > resumed_at]
    if not later:
        return
    if overwrite:
        notes.append(f"--overwrite: {len(later)} snapshot(s) of {prefix} past iteration {resumed_at} are "
                     "overwritten as this run reaches their iterations")
        return
    raise NetdefError(Problem(
        f"resuming at iteration {resumed_at} would overwrite {len(later)} later snapshot(s) of {prefix}, the "
        f"newest {later[-1]}", pos, expected=f"no snapshots past iteration {resumed_at} under the prefix",
        hint=f"resume the newest with --snapshot {later[-1]}, overwrite them with --overwrite, or set another "
             "snapshot_prefix"))


def net_named_outputs(config) -> tuple:
    """--net: the snapshot prefix's file part becomes the net file's stem, and the run folder (unless the
    solver sets log_dir) runs/<net stem>, so that two nets trained with one solver keep apart. Returns the
    changed config and the log's notes."""
    from .run_folder import run_folder_path
    from .snapshot import snapshot_prefix
    stem = Path(config.net).stem
    prefix = snapshot_prefix(config).with_name(stem)  # relative to the current folder, or absolute
    written = str(prefix) if prefix.is_absolute() else os.path.relpath(prefix, config.path.parent)  # as the field is
    changes, notes = {"snapshot_prefix": written}, [f"--net: snapshots are {prefix}_iter_<N>.pt"]
    if not config.log_dir:
        changes["log_dir"] = str((Path("runs") / stem).resolve())
    config = config.replace(**changes)
    notes.append(f"--net: run folder {run_folder_path(config)}")
    return config, notes


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes no snapshot while training starts: a file of an earlier holder of the PID
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or no way to tell: leave its file alone
    return True


def remove_orphans(prefix: Path) -> list:
    """Delete the temporary files `.<prefix name>_iter_<N>.pt.<PID>.tmp` (snapshot.save_atomic's) left
    beside the snapshots by a process that was killed while writing one; files of live processes stay.
    Returns the files removed."""
    prefix = Path(prefix)
    if not prefix.parent.is_dir():
        return []
    pattern = re.compile(r"\." + re.escape(prefix.name) + r"_iter_\d+\.pt\.(\d+)\.tmp")
    removed = []
    for path in sorted(prefix.parent.iterdir()):
        match = pattern.fullmatch(path.name)
        if match and not _alive(int(match.group(1))):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


@contextlib.contextmanager
def prefix_lock(prefix: Path, pos=None):
    """One run per snapshot prefix: `.<prefix name>.lock` beside the snapshots holds the PID of the run writing its snapshots while
    it trains. A second run refuses to start; the lock of a run that was killed (its PID gone) is taken over."""
    prefix = Path(prefix)
    lock = prefix.with_name(f".{prefix.name}.lock")
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                raise NetdefError(Problem(f"another netdef train (process {holder}) is writing snapshots to "
                                          f"{prefix}_iter_*.pt", pos, hint=f"wait for it to end, or give this run "
                                          f"another snapshot_prefix ({lock} holds its process id)")) from None
            lock.unlink(missing_ok=True)  # its run was killed: the lock is stale
    else:
        raise NetdefError(Problem(f"cannot take the lock {lock}", pos))
    with os.fdopen(descriptor, "w") as stream:
        stream.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
