"""Data-parallel training across processes: one model, each rank a slice of every batch (torchrun + DDP).

torchrun starts one process per GPU (or per CPU slot) and tells each its ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; normlab reads them, joins the process group (nccl on CUDA, gloo on the CPU), and then:

- every rank draws the same shuffle and augmentation of each *global* batch of B images and trains on
  its own contiguous slice of about B/world images; DDP averages the ranks' gradients, and each rank's
  loss is scaled so that this average is the gradient of the mean loss over all B images. One step on
  ``world`` processes is one step of a single process with batch B (dropout draws its own masks per rank);
- the epoch metrics are summed across ranks;
- rank 0 alone logs, evaluates and writes the run folder; the other ranks receive its results.

Without torchrun (no ``WORLD_SIZE``, or 1) every helper here is a no-op and training is one process.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import NormlabError


class SharedError(NormlabError):
    """Rank 0's error, re-raised on the other ranks: rank 0 has already printed it."""


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world`` processes (one process: rank 0 of 1)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def prefix(self) -> str:
        """How this process signs its messages: "rank 1/2: " under torchrun, nothing alone."""
        return f"rank {self.rank}/{self.world}: " if self.enabled else ""

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise NormlabError(f"--batch-size {batch_size} is the global batch and must divide evenly over the "
                               f"{self.world} processes; pick a multiple of {self.world}")

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on each host: the LOCAL_RANK-th."""
        if self.enabled and device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise NormlabError(f"local rank {self.local_rank} has no GPU: this host has "
                                   f"{torch.cuda.device_count()}; start at most that many processes per node")
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    # --- the training step -------------------------------------------------------------------------
    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (slices differ by at most one image)."""
        return batch.tensor_split(self.world)[self.rank] if self.enabled else batch

    def batch_loss(self, logits: torch.Tensor, y: torch.Tensor, global_batch: int,
                   label_smoothing: float) -> torch.Tensor:
        """Cross-entropy of this rank's slice, scaled so that DDP's *average* of the ranks' gradients is
        the gradient of the mean over the whole global batch (slices of a short last batch may differ in
        size, hence a sum over the slice rather than its mean). One process: the plain mean."""
        if not self.enabled:
            return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        total = F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction="sum")
        return total * (self.world / global_batch)

    def wrap(self, model: torch.nn.Module, device: torch.device, sync_bn: bool) -> torch.nn.Module:
        """The model DDP-wrapped (the model itself for one process); ``sync_bn`` first turns every
        BatchNorm into a SyncBatchNorm, whose statistics cover the global batch instead of the slice."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if sync_bn and has_bn:
            if device.type != "cuda":
                raise NormlabError("--sync-bn needs CUDA GPUs: PyTorch's SyncBatchNorm has no CPU kernel; "
                                   "drop --sync-bn, or use gn/ln, whose statistics never span images")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameters, in place
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # --- collectives -------------------------------------------------------------------------------
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over all ranks (in place)."""
        if self.enabled:
            torch.distributed.all_reduce(tensor)
        return tensor

    def on_main(self, fn, *, share: bool = True):
        """Run ``fn`` on rank 0 alone. Every rank returns its result (``share=False``: rank 0 only, the
        others None) or raises its NormlabError, so that no rank waits for a partner that gave up."""
        if not self.enabled:
            return fn()
        box = [None]
        if self.is_main:
            try:
                value = fn()
            except NormlabError as exc:
                torch.distributed.broadcast_object_list([("error", str(exc))], src=0)
                raise
            box[0] = ("ok", value if share else None)
        torch.distributed.broadcast_object_list(box, src=0)
        status, payload = box[0]
        if status == "error":
            raise SharedError(payload)
        return value if self.is_main else payload

    def main_first(self, fn):
        """Run ``fn`` on rank 0, then (if it worked) on the other ranks: e.g. a download that must
        happen once before everyone reads the files."""
        value = self.on_main(fn, share=False)
        return value if self.is_main else fn()


SINGLE = Context()


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise NormlabError(f"${name} must be an integer, got {text!r}") from None


def from_env() -> Context:
    """The Context that torchrun's environment variables describe (one process without them)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise NormlabError(f"$RANK={rank} and $WORLD_SIZE={world} do not fit together; start normlab with torchrun")
    return Context(rank=rank, world=world, local_rank=_env_int("LOCAL_RANK", 0))


def init(ctx: Context, device: torch.device) -> None:
    """Join the process group (once per process): nccl on CUDA, gloo otherwise."""
    if not ctx.enabled or torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        torch.distributed.init_process_group(backend)
    except (ValueError, RuntimeError) as exc:
        raise NormlabError(f"rank {ctx.rank}: could not join the {backend} process group "
                           f"({first_line(exc)}); start normlab with torchrun") from None


def shutdown(finished: bool) -> None:
    """Leave the process group, if this process joined one. After a ``finished`` job the ranks meet at a
    barrier, so that none tears its connections down while a peer is still using them, and then each
    ends its process at once, exit status 0, without running gloo's teardown: that teardown raced with
    gloo's own threads and aborted a rank with "terminate called without an active exception" (SIGABRT)
    about one exit in ten without the barrier, and still now and then with it. Nothing is lost: every
    result and checkpoint was written atomically before this point, and the streams are flushed.
    After a failure there is no barrier (a peer that gave up would never arrive): leave normally."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if finished:
            torch.distributed.barrier()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        torch.distributed.destroy_process_group()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
