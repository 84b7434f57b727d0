"""Where the Trainer computes: the processes, the device, the precision, and its arguments for them.

Shared by training and inference, so that evaluation needs none of training's code.
"""
from __future__ import annotations

import functools
import os
import platform
import re
import sys
from pathlib import Path

import torch
from transformers import TrainingArguments

from squad_ft.errors import UserError
# x86 CPU flags of bf16 matrix arithmetic in hardware. oneDNN's "bf16 supported" is no guide: it is also
# true where bf16 is emulated, which is slower than fp32.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def world_size() -> int:
    """How many processes train together (torchrun sets WORLD_SIZE; 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """The process that writes outputs, logs and metrics (rank 0 under torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (/proc/cpuinfo, Linux); empty where unknown."""
    try:
        match = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        return frozenset()
    return frozenset(match.group(1).split()) if match else frozenset()


def cpu_has_native_bf16() -> bool:
    return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))


@functools.cache
def cpu_model() -> str:
    """This CPU's model name, as lscpu prints it (/proc/cpuinfo's "model name"), recorded beside every
    timing: timings compare only on one CPU model."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


@functools.cache
def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def device_and_precision(precision: str = "auto") -> tuple[str, str, dict]:
    """(where the Trainer runs, in words; the precision it computes in; its TrainingArguments flags).

    `precision` is train.precision. `auto`: on CUDA bf16 where the GPU supports it, else fp16; on
    a CPU bf16 where it computes bf16 natively (AMX or AVX512-BF16), else fp32; on Apple's MPS fp32.
    bf16 and fp16 are mixed precision (autocast; the weights stay fp32).
    """
    if torch.cuda.is_available():
        where, flags = f"cuda ({torch.cuda.get_device_name(0)}", {}
        native = torch.cuda.is_bf16_supported(including_emulation=False)  # not pre-Ampere GPUs' emulation
        if precision == "auto":
            precision = "bf16" if native else "fp16"
        elif precision == "bf16" and not native:
            raise UserError("train.precision bf16: this GPU does not support bf16; use fp16, fp32 or auto")
    elif torch.backends.mps.is_available():  # the Trainer's own choice of device
        where, flags = "mps (Apple GPU", {}
        precision = "fp32" if precision == "auto" else precision
    else:
        where, flags = f"cpu ({torch.get_num_threads()} threads", {"use_cpu": True}
        if precision == "auto":
            precision = "bf16" if cpu_has_native_bf16() else "fp32"
        elif precision == "fp16":
            raise UserError("train.precision fp16 needs a CUDA GPU; on a CPU use bf16, fp32 or auto")
        elif precision == "bf16" and not cpu_has_native_bf16():
            _warn("train.precision bf16 on a CPU without native bf16 (no AMX or AVX512-BF16): it is emulated, "
                  "slower than fp32")
    flags.update({"bf16": precision == "bf16", "fp16": precision == "fp16"})
    return f"{where}, {precision})", precision, flags


def trainer_arguments(output_dir: str, precision: str = "auto", **kwargs) -> TrainingArguments:
    """TrainingArguments for this machine's device and `precision` (train.precision), with no reporting
    (and no checkpoints unless `kwargs` ask for them)."""
    _, _, flags = device_and_precision(precision)
    return TrainingArguments(
        output_dir=output_dir, report_to="none", **{"save_strategy": "no", **kwargs}, **flags
    )
