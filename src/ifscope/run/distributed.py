"""Training-set sharding over ``torch.distributed`` ranks: each rank embeds and scores a block of whole batches.

Inside an initialised process group (``torchrun``, or ``torch.distributed.init_process_group`` in the caller),
:class:`ifscope.Influence` gives rank ``r`` of ``W`` the ``r``-th contiguous block of training *batches* and gathers
the pieces, so every rank returns the same result as one process: batches are cut exactly as in one process, and
per-example values do not depend on which rank computed them. The fit (curvature, eigenbasis) is replicated: it is
deterministic given the seed. Gloo carries CPU tensors; with NCCL the pieces travel through the rank's GPU.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

from ..core.errors import ConfigError
from ..core.scores import TopInfluences


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, or ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return world()[1] > 1


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...), if any.

    Picks NCCL when CUDA is available, else gloo; returns whether a multi-rank group is active afterwards.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return is_distributed()


def shutdown(wait: bool = True) -> None:
    """Wait for every rank (``wait``), then leave the process group: a rank that exits while others still talk
    aborts them."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def block_bounds(n: int, batch_size: int, rank: int, size: int) -> tuple[int, int]:
    """``[start, end)`` of the training positions rank ``rank`` of ``size`` owns: a contiguous block of whole batches."""
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"rank {rank} is outside a world of {size} processes")
    n_batches = -(-n // batch_size)
    per, extra = divmod(n_batches, size)
    first = rank * per + min(rank, extra)
    count = per + (1 if rank < extra else 0)
    return min(n, first * batch_size), min(n, (first + count) * batch_size)


def local_positions(n: int, batch_size: int) -> Tensor:
    """The training positions this rank embeds (all of them outside a process group)."""
    rank, size = world()
    start, end = block_bounds(n, batch_size, rank, size)
    return torch.arange(start, end)


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather_padded(local: Tensor, lengths: list[int], dim: int) -> list[Tensor]:
    """Every rank's ``local`` (whose size along ``dim`` is ``lengths[rank]``), in rank order."""
    width = max(lengths)
    pad = list(local.shape)
    pad[dim] = width - local.shape[dim]
    dev = _device()
    x = torch.cat([local, local.new_zeros(pad)], dim).to(dev).contiguous()
    parts = [torch.empty_like(x) for _ in lengths]
    dist.all_gather(parts, x)
    return [p.narrow(dim, 0, m).cpu() for p, m in zip(parts, lengths)]


def gather_blocks(local: Tensor, n: int, batch_size: int, dim: int = 0) -> Tensor:
    """Concatenate each rank's block (rows, or columns with ``dim=1``) into the full ``n``-long result on every rank."""
    if not is_distributed():
        return local
    rank, size = world()
    lengths = [e - s for s, e in (block_bounds(n, batch_size, r, size) for r in range(size))]
    if local.shape[dim] != lengths[rank]:
        raise ConfigError(f"rank {rank} holds {local.shape[dim]} training examples, expected {lengths[rank]}; every "
                          "rank must run the same Influence call with the same training set and batch_size")
    return torch.cat(_gather_padded(local, lengths, dim), dim)


def merge_top(local: TopInfluences, k: int) -> TopInfluences:
    """The global top-``k`` proponents and opponents from each rank's own top-``k`` over its block."""
    if not is_distributed():
        return local
    _, size = world()
    q = local.proponents.shape[0]

    def side(ids: Tensor, vals: Tensor, sign: float) -> tuple[Tensor, Tensor]:
        # a rank with fewer than k examples pads with -inf, which never beats a real score
        m = ids.shape[1]
        key = torch.cat([sign * vals, vals.new_full((q, k - m), -torch.inf)], 1)
        pos = torch.cat([ids, ids.new_full((q, k - m), -1)], 1)
        keys = torch.cat(_gather_padded(key, [k] * size, 1), 1)
        poss = torch.cat(_gather_padded(pos, [k] * size, 1), 1)
        # stable order on ties: lower training position first, as a single process would meet it first
        order = torch.sort(poss, dim=1, stable=True).indices
        keys, poss = keys.gather(1, order), poss.gather(1, order)
        top = torch.topk(keys, k, dim=1, sorted=True)
        return poss.gather(1, top.indices), sign * top.values

    p_ids, p_vals = side(local.proponents, local.proponent_scores, 1.0)
    o_ids, o_vals = side(local.opponents, local.opponent_scores, -1.0)
    return TopInfluences(p_ids, p_vals, o_ids, o_vals)
