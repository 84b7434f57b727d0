"""Where the Trainer computes: the processes, the device, the precision, and its arguments for them.

Shared by training and inference, so that evaluation needs none of training's code.
"""
from __future__ import annotations

import os

import torch
from transformers import TrainingArguments


def world_size() -> int:
    """How many processes train together (torchrun sets WORLD_SIZE; 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """The process that writes outputs, logs and metrics (rank 0 under torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def device_and_precision() -> tuple[str, dict]:
    """A description of where the Trainer runs, and its mixed-precision flags for it.

    CUDA with bf16 where the GPU supports it, else fp16; the CPU in full precision.
    """
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        precision = "bf16" if bf16 else "fp16"
        return f"cuda ({torch.cuda.get_device_name(0)}, {precision})", {"bf16": bf16, "fp16": not bf16}
    return f"cpu ({torch.get_num_threads()} threads, fp32)", {"use_cpu": True}


def trainer_arguments(output_dir: str, **kwargs) -> TrainingArguments:
    """TrainingArguments for this machine's device and precision, with no reporting (and no checkpoints
    unless `kwargs` ask for them)."""
    _, precision = device_and_precision()
    return TrainingArguments(
        output_dir=output_dir, report_to="none", **{"save_strategy": "no", **kwargs}, **precision
    )
