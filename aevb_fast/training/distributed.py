"""Data-parallel training through torch.distributed: the process group that torchrun's environment
describes, and the few collectives the training loop needs.

    torchrun --nproc_per_node 2 -m aevb_fast train ...       # RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*

A process started without torchrun is rank 0 of 1 and makes no process group. Under torchrun (even
with one process) CPU runs use gloo and CUDA runs nccl, each rank on GPU LOCAL_RANK.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank of world_size, the device it computes on, and whether
    start() made the process group (and stop() takes it down)."""

    rank: int
    world_size: int
    device: torch.device
    made_group: bool = False

    @property
    def main(self) -> bool:
        """Rank 0, the one that writes checkpoints, metrics and figures."""
        return self.rank == 0


def check_device(device) -> None:
    """ValueError unless `device` names a CPU or CUDA device (whether one is here: start())."""
    try:
        where = torch.device(device)
    except (RuntimeError, TypeError):
        where = None
    if where is None or where.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not a device training runs on: give 'cpu', 'cuda' or 'cuda:N'")


def _usable(where: torch.device, what: str) -> torch.device:
    """where, if torch can compute on it here; else ValueError naming `what` asked for it."""
    if where.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch is a CPU build" if torch.version.cuda is None else "torch sees no CUDA device"
            raise ValueError(f"{what} asks for a GPU, but {build}: give --device cpu")
        count = torch.cuda.device_count()
        if where.index is not None and where.index >= count:
            raise ValueError(
                f"{what} asks for {where}, but torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    return where


def start(device: str) -> Ranks:
    """Joins the process group torchrun describes (if any) and picks this rank's device: `device`
    itself without torchrun, cuda:LOCAL_RANK for device "cuda" under it; ValueError if torch cannot
    compute there."""
    check_device(device)
    where = torch.device(device)
    if not dist.is_torchelastic_launched():
        return Ranks(0, 1, _usable(where, f"device={device!r}"))
    if where.type == "cuda":
        if where.index is not None:
            raise ValueError(f"device={device!r}: under torchrun each rank takes cuda:LOCAL_RANK; give device='cuda'")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        where = _usable(torch.device("cuda", local_rank), f"device='cuda' under torchrun (LOCAL_RANK={local_rank})")
        torch.cuda.set_device(where)
    made_group = not dist.is_initialized()  # a caller's own group is used as it is, and left to it
    if made_group:
        dist.init_process_group(
            "nccl" if where.type == "cuda" else "gloo", **({"device_id": where} if where.type == "cuda" else {})
        )
    return Ranks(dist.get_rank(), dist.get_world_size(), where, made_group)


def grouped() -> bool:
    """Whether this process is in a process group (it was started by torchrun)."""
    return dist.is_initialized()


def stop(ranks: Ranks) -> None:
    if ranks.made_group:
        dist.destroy_process_group()


def sum_over_ranks(values: list[float], ranks: Ranks) -> list[float]:
    """Each value summed over the ranks, in float64 (every rank gets the sums)."""
    if ranks.world_size == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=ranks.device)
    dist.all_reduce(total)
    return total.tolist()


def gather(value, ranks: Ranks) -> list:
    """Every rank's `value` (any picklable object), in rank order, on every rank."""
    if ranks.world_size == 1:
        return [value]
    values = [None] * ranks.world_size
    dist.all_gather_object(values, value)
    return values


def first_problem(problem: str | None, ranks: Ranks) -> str | None:
    """The first rank's problem (a message), or None if no rank has one: every rank gets the same,
    so that all stop together where one cannot go on. Also a barrier."""
    return next((p for p in gather(problem, ranks) if p is not None), None)
