"""Data-parallel training through ``torchrun``: process group, device per rank, rank-0-only I/O.

``torchrun --nproc_per_node N -m asr.cli train CONFIG.yaml`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; a plain ``asr train`` is the one-process case and never touches
``torch.distributed``. NCCL is used on CUDA, Gloo on CPU (which is how the tests run it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Pick the device and, under torchrun (``WORLD_SIZE`` > 1), join the process group.

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda".
    Raises:
        RuntimeError: "cuda" was asked for but no CUDA device is available.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one (a collective: all ranks call it)."""
    return any_rank_each([flag], info)[0]


def any_rank_each(flags: list[bool], info: DistInfo) -> list[bool]:
    """:func:`any_rank` of several flags in one collective (one all-reduce, one wait for it)."""
    if not info.enabled:
        return list(flags)
    t = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=info.device)  # (len(flags),)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


@contextlib.contextmanager
def main_rank_logs(info: DistInfo) -> Iterator[None]:
    """Within it, the log messages up to warnings of every rank but 0 are left out: for work that
    every rank does alike (reading and checking the same data), which rank 0 reports for all.
    Errors still show on every rank."""
    if info.is_main:
        yield
        return
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)


def gather_lists(items: list, info: DistInfo) -> list:
    """Every rank's ``items`` (picklable), rank by rank, on every rank (a collective: all ranks call it)."""
    if not info.enabled:
        return list(items)
    lists: list[list | None] = [None] * info.world_size
    dist.all_gather_object(lists, items)
    return [item for rank_items in lists for item in rank_items or []]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
