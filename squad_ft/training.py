"""One training code path (transformers Trainer) for full fine-tuning and LoRA alike."""
from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path

import datasets
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.integrations import DVCLiveCallback

from dvclive import Live
from squad_ft.errors import UserError
from squad_ft.modeling import count_parameters

SUMMARY_FILE = "train_summary.json"  # written beside the weights by the train stage


def device_and_precision() -> tuple[str, dict]:
    """A description of where training runs, and the Trainer's mixed-precision flags for it.

    CUDA with bf16 where the GPU supports it, else fp16; the CPU in full precision.
    """
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        precision = "bf16" if bf16 else "fp16"
        return f"cuda ({torch.cuda.get_device_name(0)}, {precision})", {"bf16": bf16, "fp16": not bf16}
    return f"cpu ({torch.get_num_threads()} threads, fp32)", {"use_cpu": True}


def trainer_arguments(output_dir: str, **kwargs) -> TrainingArguments:
    """TrainingArguments for this machine's device and precision, with no checkpoints or reporting."""
    _, precision = device_and_precision()
    return TrainingArguments(output_dir=output_dir, report_to="none", save_strategy="no", **precision, **kwargs)


def training_arguments(output_dir: str, hyper: dict, seed: int) -> TrainingArguments:
    """TrainingArguments from the shared `train` params merged with one mode's (`full` or `lora`)."""
    for key in ("epochs", "learning_rate", "batch_size"):
        if not hyper[key] > 0:
            raise UserError(f"{key} must be positive, got {hyper[key]!r}")
    if not 0 <= hyper["warmup_fraction"] < 1:
        raise UserError(f"train.warmup_fraction must be in [0, 1), got {hyper['warmup_fraction']!r}")
    return trainer_arguments(
        output_dir,
        num_train_epochs=hyper["epochs"],
        learning_rate=hyper["learning_rate"],
        per_device_train_batch_size=hyper["batch_size"],
        weight_decay=hyper["weight_decay"],
        warmup_steps=float(hyper["warmup_fraction"]),
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",
        logging_steps=hyper["logging_steps"],
        logging_first_step=True,
        seed=seed,
    )


class StepAlignedDVCLiveCallback(DVCLiveCallback):
    """transformers' DVCLive callback, logging against the optimizer step instead of a log counter."""

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if self.live is not None:
            self.live.step = state.global_step
        super().on_log(args, state, control, model=model, logs=logs, **kwargs)


def peak_memory_mb() -> float:
    """Peak GPU memory allocated (CUDA), else the process's peak resident memory (CPU)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def train(
    model: torch.nn.Module,
    tokenizer,
    features: datasets.Dataset,
    hyper: dict,
    seed: int,
    model_dir: Path,
    live_dir: Path,
) -> dict:
    """Train `model` on `features`, save it to `model_dir`, log to dvclive; return a summary."""
    trainable, total = count_parameters(model)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as scratch:
        live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)
        trainer = Trainer(
            model=model,
            args=training_arguments(scratch, hyper, seed),
            data_collator=DataCollatorWithPadding(tokenizer),
            train_dataset=features,
            processing_class=tokenizer,
            callbacks=[StepAlignedDVCLiveCallback(live=live)],
        )
        result = trainer.train()
    trainer.save_model(str(model_dir))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    device, _ = device_and_precision()
    return {
        "epochs": hyper["epochs"],
        "trainable_params": trainable,
        "total_params": total,
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "initial_loss": round(losses[0], 4),
        "final_loss": round(losses[-1], 4),
        "train_features": len(features),
        "device": device,
    }
