"""Where training loops run: one rule shared by the patch, the attack and the baselines, and which process of an
``accelerate launch`` this is (accelerate owns the process group; nothing here makes one)."""

from __future__ import annotations

import atexit
import copy
import functools
import os
import time

import torch

from mudjacking.errors import ConfigError


def launched() -> bool:
    """Whether this process is one of several started by ``accelerate launch`` (or ``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state():  # accelerate.PartialState; imported late so a single process never sets one up
    """Accelerate's view of the launch (its rank, count and device); set up on first use. Without CUDA (or with
    ``ACCELERATE_USE_CPU`` set) the processes talk over gloo on the CPU: accelerate only does so when asked."""
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    if launched():
        _close_at_exit()
    return state


@functools.cache
def _close_at_exit() -> None:
    """Registers the closing once. A process group left to the interpreter's exit aborted a gloo process 1 time in
    ~5 ("terminate called without an active exception"); closed first, 16 runs were clean, yet one fresh-clone run
    still aborted after its work."""
    atexit.register(_close_process_group)


def _close_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # no process leaves while another still talks to it
        torch.distributed.destroy_process_group()


def is_main_process() -> bool:
    """True in a single process, and in the first process of a launch: the one that writes and prints."""
    return not launched() or process_state().is_main_process


PRECISIONS = ("fp32", "bf16", "auto")


def check_precision(precision: str) -> None:
    """Refuses a precision the patch and the baselines do not know."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be fp32, bf16 or auto, got {precision!r}")


def autocast_bf16(precision: str, device: torch.device) -> bool:
    """Whether a forward pass runs under bfloat16 autocast: ``"bf16"`` always, ``"auto"`` where ``device`` computes
    bfloat16 natively (a CUDA GPU that supports it; a CPU with AVX-512 BF16 or AMX), ``"fp32"`` never. Without native
    units autocast only adds casts: a MiniLM patch step took 16% longer in bf16 on a CPU without them."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and native_cpu_bf16()


@functools.cache
def native_cpu_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic units (Linux ``/proc/cpuinfo`` flags; ``False`` where unreadable)."""
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; ``"cpu"`` and ``"cuda"`` are taken as given. Under a launch of
    several processes, ``auto`` and ``cuda`` are this process's own device (``cuda:RANK``, or the CPU for ``--cpu``)."""
    if launched() and name != "cpu":
        return process_state().device
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Processes:
    """A training loop's view of the launch: its share of each batch, gradients averaged by DDP (or, under
    ``--use_fsdp``, the model sharded: :mod:`mudjacking.sharding`), and decisions (data order, time budget, early
    stop) taken once on the main process and shared. In a single process every method is the identity and nothing
    of accelerate is set up. A loop builds its optimiser after :meth:`wrap` (sharding replaces the parameters) and
    hands back :meth:`gathered`."""

    def __init__(self, device: torch.device) -> None:
        from mudjacking.sharding import sharding_asked

        self.accelerator, self.device = None, device
        self.count, self.rank = 1, 0
        self.sharded = sharding_asked()
        if self.sharded:  # FSDP2 over accelerate's process group; accelerate's own FSDP runs on accelerators only
            state = process_state()
            self.count, self.rank = state.num_processes, state.process_index
        elif launched():
            from accelerate import Accelerator

            process_state()  # sets up the process group (and its closing at exit) before the accelerator reads it
            self.accelerator = Accelerator(cpu=device.type == "cpu")
            self.count, self.rank = self.accelerator.num_processes, self.accelerator.process_index

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def alone(self) -> bool:
        """One process with a whole model: what checkpoints and the cache of frozen lower layers need."""
        return self.count == 1 and not self.sharded

    def wrap(self, model: torch.nn.Module, example) -> torch.nn.Module:
        """``model`` under DDP (the module itself stays reachable and is what the loop returns), or sharded in
        place (from wherever it is: each shard goes to this process's device). Under DDP, trainable parameters the
        output does not depend on for ``example`` (a pooler the embedding does not read) are frozen first: DDP would
        otherwise wait for their gradients forever; FSDP leaves their gradients empty on every process alike."""
        if self.sharded:
            from mudjacking.sharding import shard

            return shard(model, self.device, self.count)
        if self.accelerator is None:
            return model
        model.zero_grad(set_to_none=True)
        model(example).float().sum().backward()
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.grad is None:
                parameter.requires_grad_(False)
        model.zero_grad(set_to_none=True)
        return self.accelerator.prepare_model(model, device_placement=False)

    def gathered(self, model: torch.nn.Module, like: torch.nn.Module) -> torch.nn.Module:
        """The trained ``model`` whole, as the loop hands it back: itself, or, sharded, a copy of ``like`` (the
        untrained original) on the CPU holding the gathered weights on the main process; the other processes,
        which write nothing, keep ``like``'s weights. Every process must call it."""
        if not self.sharded:
            return model
        from mudjacking.sharding import full_weights

        weights = full_weights(model)
        plain = copy.deepcopy(like).cpu().eval()
        if self.is_main:
            plain.load_state_dict(weights)
        return plain

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward() if self.accelerator is None else self.accelerator.backward(loss)

    def same_order(self, order: torch.Tensor) -> torch.Tensor:
        """The main process's permutation, on every process."""
        if self.count == 1:
            return order
        from accelerate.utils import broadcast

        return broadcast(order.to(self.device), from_process=0).cpu()

    def shard(self, batch_index: torch.Tensor) -> torch.Tensor | None:
        """This process's part of a batch; ``None`` (on every process alike) when the batch has fewer items than
        there are processes."""
        if self.count == 1:
            return batch_index
        return batch_index.tensor_split(self.count)[self.rank] if len(batch_index) >= self.count else None

    def agree(self, flag: bool) -> bool:
        """The main process's ``flag`` (e.g. "the time budget is spent"), so no process stops alone."""
        if self.count == 1:
            return flag
        from accelerate.utils import broadcast

        return bool(broadcast(torch.tensor([float(flag)], device=self.device), from_process=0).item())

    def budget_spent(self, started: float, max_seconds: float) -> bool:
        """Whether ``max_seconds`` (0 = no budget) have passed since ``started``, as the main process sees it."""
        return self.agree(bool(max_seconds) and time.perf_counter() - started >= max_seconds)

    def share(self, value):
        """The main process's ``value`` (any picklable object) on every process."""
        if self.count == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]
