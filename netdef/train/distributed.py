"""Data-parallel training on many processes, one or many machines: torch.distributed with torchrun's
environment (caffe.md: `caffe train -gpu 0,1`, batch_size per GPU, gradients averaged).

    torchrun --standalone --nproc_per_node 2 -m netdef train SOLVER     # or: netdef train --nproc 2 SOLVER

`World` is where this process stands (rank, size, local rank), read from the variables torchrun sets
(RANK, WORLD_SIZE, LOCAL_RANK; MASTER_ADDR and MASTER_PORT are read by torch itself). `session()` opens the
process group (gloo on the CPU, nccl on CUDA) with a timeout on every collective, and turns a collective
that fails because a rank died or stopped answering into a NetdefError naming that rank. The helpers
below are the few collectives the solver needs: gradient averaging (DistributedDataParallel), the mean of
logged figures over ranks, and agreement on signals and on rank 0's snapshot writes.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
import sys
import time
from dataclasses import dataclass

from ..errors import NetdefError, Problem

ALIVE_KEY = "netdef/alive/"  # a surviving rank sets ALIVE_KEY<rank> in the store when a collective fails
GRACE_SECONDS = 3.0  # how long survivors wait for each other's ALIVE_KEY before naming the missing ranks
# gloo reports a dead peer as a plain RuntimeError ("...gloo/transport/tcp/pair.cc: Read error ...: Connection
# reset by peer"), nccl and the store as DistError subclasses: these words tell a collective's failure from a bug
COLLECTIVE_FAILURE = re.compile(r"gloo|nccl|connection|timed out|timeout|peer", re.IGNORECASE)


@dataclass(frozen=True)
class World:
    """This process among `size` processes: `rank` is its global index, `local_rank` its index on its machine
    (its GPU). One process alone is World() (rank 0 of 1); its collectives do nothing."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, shows progress, writes TensorBoard events and snapshots."""
        return self.rank == 0

    # ---- collectives (no-ops for one process) ----

    def average(self, values: dict) -> dict:
        """Every tensor of `values` averaged over the ranks (one all-reduce), in the same key order."""
        if not self.distributed or not values:
            return values
        import torch
        import torch.distributed as dist
        keys = list(values)
        flat = torch.cat([values[k].detach().float().reshape(-1) for k in keys])
        dist.all_reduce(flat)
        flat /= self.size
        out, start = {}, 0
        for key in keys:
            count = values[key].numel()
            out[key] = flat[start:start + count].view(values[key].shape)
            start += count
        return out

    def any(self, flag: bool) -> bool:
        """Whether `flag` is true on any rank."""
        if not self.distributed:
            return flag
        return bool(self._reduce_max([float(flag)])[0])

    def agree(self, action: str | None) -> str | None:
        """A signal's request ('stop', 'snapshot' or None) on any rank, acted on by every rank at the same
        iteration: a signal may reach the ranks at different moments, or only some of them."""
        if not self.distributed:
            return action
        stop, snapshot = self._reduce_max([float(action == "stop"), float(action == "snapshot")])
        return "stop" if stop else "snapshot" if snapshot else None

    def from_main(self, number: int) -> int:
        """Rank 0's `number`, known to every rank (a seed from the clock; whether rank 0 wrote a snapshot,
        while the others waited for it)."""
        if not self.distributed:
            return number
        import torch
        import torch.distributed as dist
        tensor = torch.tensor([number], dtype=torch.int64, device=_collective_device())
        dist.broadcast(tensor, 0)
        return int(tensor.item())

    def _reduce_max(self, numbers: list) -> list:
        import torch
        import torch.distributed as dist
        tensor = torch.tensor(numbers, device=_collective_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()


def _collective_device():
    """nccl reduces CUDA tensors only; gloo CPU ones."""
    import torch
    import torch.distributed as dist
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def world_from_env(environ=None) -> World:
    """The World torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); one process when they are unset."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return World()
    try:
        size, rank = int(environ["WORLD_SIZE"]), int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise NetdefError(Problem("the torchrun environment is not made of integers",
                                  found=", ".join(f"{k}={environ.get(k)}" for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")),
                                  hint="start the processes with torchrun (or netdef train --nproc N)")) from None
    if not 0 <= rank < size:
        raise NetdefError(Problem(f"RANK {rank} is not below WORLD_SIZE {size}", expected=f"0 <= RANK < {size}"))
    return World(rank, size, local_rank)


@contextlib.contextmanager
def session(device_name: str, timeout_s: float):
    """The process group of this World for the training that runs inside, closed afterwards. `device_name`
    is the solver's device (cuda* and auto with a GPU take nccl and the GPU of LOCAL_RANK); every
    collective gives up after `timeout_s` seconds. A collective that fails (a rank died: its connections
    closed; or it hangs past the timeout) is raised as a NetdefError naming the missing ranks."""
    world = world_from_env()
    if not world.distributed:
        yield world
        return
    import torch
    import torch.distributed as dist
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s),
                            **({"device_id": torch.device("cuda", world.local_rank)} if cuda else {}))
    failed = False
    try:
        yield world
    except RuntimeError as exc:  # DistError is one
        if not (isinstance(exc, dist.DistError) or COLLECTIVE_FAILURE.search(str(exc))):
            raise
        failed = True
        raise NetdefError(Problem(_missing_ranks_message(world, exc, timeout_s),
                                  hint="the other ranks' own output says why they stopped")) from None
    finally:
        if not failed:
            dist.destroy_process_group()


def _missing_ranks_message(world: World, exc, timeout_s: float) -> str:
    """Which ranks did not answer: the survivors mark themselves alive in the rendezvous store and wait a
    moment for each other; the ranks left unmarked are named. When the store itself is gone, its host
    (rank 0 for a bare env:// start) is the one that died."""
    import torch.distributed as dist
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set(f"{ALIVE_KEY}{world.rank}", "1")
        deadline = time.monotonic() + GRACE_SECONDS
        others = [rank for rank in range(world.size) if rank != world.rank]
        while time.monotonic() < deadline and not all(store.check([f"{ALIVE_KEY}{r}"]) for r in others):
            time.sleep(0.1)
        missing = [rank for rank in others if not store.check([f"{ALIVE_KEY}{rank}"])]
    except Exception:  # noqa: BLE001  (the store went with the dead rank: nothing else can be asked)
        missing = None
    if missing is None:
        who = "the rendezvous store stopped answering (its host, rank 0 of a bare start, or the launcher, died)"
    elif missing:
        names = ", ".join(str(rank) for rank in missing)
        who = f"rank{'s' if len(missing) > 1 else ''} {names} of {world.size} stopped answering (died, or hung " \
              f"past the {timeout_s:g} s collective timeout)"
    else:
        who = "every rank is alive, but a collective failed"
    return f"rank {world.rank}: distributed training stopped: {who}; the failed collective said: {first_line}"


def data_parallel(net, world: World, device):
    """The module the training passes run through: `net` itself for one process; otherwise torch's
    DistributedDataParallel over it, which broadcasts rank 0's weights and buffers once and averages the
    gradients over the ranks in backward (Caffe 1.0 sums them and scales by 1/solver_count)."""
    if not world.distributed:
        return net
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def no_sync(module, last_pass: bool):
    """DDP's no_sync for the first iter_size - 1 passes: their gradients add up locally, and the last
    pass's backward averages the sum over the ranks once."""
    if last_pass or not hasattr(module, "no_sync"):
        return contextlib.nullcontext()
    return module.no_sync()


def launch(nproc: int, gpus: str | None, argv: list) -> int:
    """`netdef train --nproc N` / `--gpus 0,1`: the same command run by torch's launcher (torchrun's own
    `run`, in this process) on this machine, N processes (one per listed GPU, CUDA_VISIBLE_DEVICES set so
    that LOCAL_RANK picks it). Returns 0, or the exit status of the lowest failed rank (1 for one killed by a
    signal), with a line per failed rank instead of torchrun's traceback (a rank's own message says why)."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    threads = rank_threads(nproc)
    if threads:
        print(threads)
    from torch.distributed import run as torchrun  # after rank_threads: it must run before torch loads
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    try:
        torchrun.run(torchrun.parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "netdef", *argv]))
    except ChildFailedError as failed:
        ranks = sorted(failed.failures.items())
        for rank, failure in ranks:
            how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with status {failure.exitcode}"
            print(f"netdef: rank {rank} {how}", file=sys.stderr)
        status = ranks[0][1].exitcode
        return status if status > 0 else 1
    return 0


def rank_threads(nproc: int) -> str | None:
    """Each rank's share of this machine's free cores, set for the ranks to inherit (torchrun would give
    each rank 1 thread); the line the log shows, or None where the environment decided."""
    from .threads import choose_threads
    environ = {**os.environ, "LOCAL_WORLD_SIZE": str(nproc)}
    line = choose_threads(environ)
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        if key in environ:
            os.environ[key] = environ[key]
    return line
