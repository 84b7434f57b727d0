"""Memory: the peak a piece of work needs (GPU memory allocated, or the CPU's resident memory), what
the backward pass keeps, and the allocator setting that keeps training's resident memory close to
what it uses."""
from __future__ import annotations

import os
import re
import resource
import sys
from pathlib import Path

import torch


def use_huge_pages() -> None:
    """Back PyTorch's CPU tensors of 2 MB and more with transparent huge pages (2 MB-aligned).

    Training allocates and frees large activations of ever-different sizes at every step, which
    fragments glibc's heap: resident memory grows past what is in use (docs/performance.md).
    PyTorch reads the setting once, at its first large allocation, so call this before loading a
    model. THP_MEM_ALLOC_ENABLE=0 in the environment turns it off.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def _proc_status_mb(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MiB; None elsewhere."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 2**10 if match else None


def resident_memory_mb() -> float | None:
    """The CPU's resident memory of this process now (Linux), in MiB; None elsewhere."""
    return _proc_status_mb("VmRSS")


def start_memory_peak() -> float:
    """Start measuring peak memory from now; return the memory in use now, in MiB.

    CUDA: GPU memory allocated. CPU: the resident memory (RSS); on Linux its peak is reset to it
    (/proc/self/clear_refs), so that the peak is the training's, not the loading's.
    """
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux: the peak stays the process's
        pass
    return resident_memory_mb() or peak_memory_mb()


def peak_memory_mb() -> float:
    """Peak GPU memory allocated (CUDA), else peak resident memory (CPU), since `start_memory_peak`."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def saved_for_backward_mb(model: torch.nn.Module, batch: dict) -> tuple[float, float]:
    """(all tensors autograd saves for the backward pass, the attention-matrix-sized ones among them), in
    MiB, after one forward pass of `model` on `batch`: each storage counted once, parameters excluded."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, tuple[int, tuple]] = {}

    def keep(tensor):
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in parameters:
            storages[pointer] = (tensor.untyped_storage().nbytes(), tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(**batch)
    batch_size, length = batch["input_ids"].shape
    heads = model.config.num_attention_heads
    square = sum(size for size, shape in storages.values()  # [batch, heads, T, T] or [batch x heads, T, T]
                 if shape[-2:] == (length, length) and (len(shape) == 4 or shape[0] == batch_size * heads))
    return sum(size for size, _ in storages.values()) / 2**20, square / 2**20
