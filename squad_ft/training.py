"""One training code path (transformers Trainer) for full fine-tuning and LoRA alike."""
from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import sys
from pathlib import Path

import datasets
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from dvclive import Live
from squad_ft.errors import UserError
from squad_ft.modeling import count_parameters

# PyTorch's CPU tensors of 2 MB and more: 2 MB-aligned and backed by transparent huge pages.
# PyTorch reads this once, at the first large allocation (none happens on import). Training
# allocates and frees large activations of ever-different sizes at every step, which fragments
# glibc's heap: resident memory grows past what is in use (README, "Performance").
# THP_MEM_ALLOC_ENABLE=0 turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

SUMMARY_FILE = "train_summary.json"  # written beside the weights by the train stage
ORDER_STATE_FILE = "batch_order_rng_state_{rank}.pth"  # in each checkpoint, beside the Trainer's RNG states


def world_size() -> int:
    """How many processes train together (torchrun sets WORLD_SIZE; 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """The process that writes outputs, logs and metrics (rank 0 under torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


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
    """TrainingArguments for this machine's device and precision, with no reporting (and no checkpoints
    unless `kwargs` ask for them)."""
    _, precision = device_and_precision()
    return TrainingArguments(
        output_dir=output_dir, report_to="none", **{"save_strategy": "no", **kwargs}, **precision
    )


def training_arguments(output_dir: str, hyper: dict, seed: int) -> TrainingArguments:
    """TrainingArguments from the shared `train` params merged with one mode's (`full` or `lora`)."""
    if not 0 <= hyper["warmup_fraction"] < 1:
        raise UserError(f"train.warmup_fraction must be in [0, 1), got {hyper['warmup_fraction']!r}")
    processes = world_size()
    if hyper["batch_size"] % processes:
        raise UserError(f"train.batch_size {hyper['batch_size']} must be a multiple of train.nproc ({processes}): "
                        "it is the global batch, split evenly over the processes")
    distributed = {"ddp_backend": "nccl" if torch.cuda.is_available() else "gloo",
                   "ddp_find_unused_parameters": False} if processes > 1 else {}
    return trainer_arguments(
        output_dir,
        num_train_epochs=hyper["epochs"],
        learning_rate=hyper["learning_rate"],
        per_device_train_batch_size=hyper["batch_size"] // processes,
        **distributed,
        weight_decay=hyper["weight_decay"],
        warmup_steps=float(hyper["warmup_fraction"]),
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",
        activation_checkpointing=hyper["gradient_checkpointing"],  # transformers 5's name for it
        activation_checkpointing_kwargs={"use_reentrant": False},  # needs no input gradients (frozen embeddings)
        logging_steps=hyper["logging_steps"],
        logging_first_step=True,
        save_strategy="steps",
        save_steps=hyper["checkpoint_steps"],
        save_total_limit=1,
        seed=seed,
    )


class LogWhenSaving(TrainerCallback):
    """Log the loss at every checkpoint's step too: a resumed run starts with no loss accumulated
    since the last log, so a checkpoint must hold none, or the resumed run logs other averages."""

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:  # set by the Trainer's own flow callback, which runs first
            control.should_log = True
        return control


class ReplayableBatchOrder(LengthGroupedSampler):
    """The Trainer's length-grouped batch order, which also records the random state the current
    epoch's order was drawn from, and can draw its first epoch from a recorded state.

    The order is drawn from the global generator as the Trainer's own sampler draws it, so a run
    never interrupted trains exactly as before. A run resumed mid-epoch needs that epoch's order
    again, but the Trainer restores a checkpoint's random state only after the resumed epoch's
    order is drawn (that state is the one at the checkpoint, not at the epoch's start).
    """

    def __init__(self, sampler: LengthGroupedSampler, replay: torch.Tensor | None):
        super().__init__(sampler.batch_size, lengths=sampler.lengths)
        self.replay, self.drawn_from = replay, None

    def __iter__(self):
        if self.replay is None:
            self.generator, self.drawn_from = None, torch.get_rng_state()
        else:  # the first epoch of a run resumed mid-epoch
            self.generator = torch.Generator()
            self.generator.set_state(self.replay)
            self.drawn_from, self.replay = self.replay, None
        return super().__iter__()


class ResumableTrainer(Trainer):
    """The Trainer, whose checkpoints also hold the random state of the epoch's batch order, so that
    a run resumed from any checkpoint, mid-epoch included, trains exactly as an uninterrupted one.

    Relies on two non-public Trainer methods, `_get_train_sampler` and `_save_rng_state` (docs/pipeline.md).
    """

    def __init__(self, *args, resume_from: Path | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.order, self.resume_from = None, resume_from

    def _order_file(self, checkpoint: Path | str) -> Path:
        return Path(checkpoint) / ORDER_STATE_FILE.format(rank=self.args.process_index)

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if not isinstance(sampler, LengthGroupedSampler):
            return sampler
        mid_epoch = self.resume_from and TrainerState.load_from_json(
            str(self.resume_from / TRAINER_STATE_NAME)).epoch % 1  # at an epoch's end, the next one is drawn anew
        self.order = ReplayableBatchOrder(sampler, torch.load(self._order_file(self.resume_from)) if mid_epoch else None)
        return self.order

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        torch.save(self.order.drawn_from if self.order else None, self._order_file(output_dir))


def run_key(mode: str, params: dict, features_dir: Path, code_dirs: tuple[Path, ...]) -> str:
    """A hash of everything that determines a training run: its params, its features and the code."""
    digest = hashlib.sha256(json.dumps(
        [mode, params["model"], params["train"], params[mode]], sort_keys=True).encode())
    for path in sorted(features_dir.rglob("*")) + sorted(p for d in code_dirs for p in d.rglob("*.py")):
        if path.is_file():
            digest.update(str(path).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def last_checkpoint(folder: Path) -> Path | None:
    """The latest complete checkpoint in `folder`: the Trainer writes trainer_state.json last (on the
    main process), and each process its batch order's random state before it."""
    orders = [ORDER_STATE_FILE.format(rank=rank) for rank in range(world_size())]
    complete = [path for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                if all((path / name).exists() for name in (TRAINER_STATE_NAME, *orders))]
    return max(complete, key=lambda path: int(path.name.rsplit("-", 1)[1]), default=None)


def write_training_log(live_dir: Path, log_history: list[dict]) -> None:
    """dvclive logs of every logged training value against its optimizer step, and the run's summary.

    Written from the Trainer's log history after training, so that a resumed run logs exactly
    what an uninterrupted one does (the history travels in the checkpoints).
    """
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
        for entry in log_history:
            if "loss" not in entry:
                continue
            live.step = entry["step"]
            for key, value in entry.items():
                if key != "step" and isinstance(value, (int, float)):
                    live.log_metric(key, value)
        final = next((entry for entry in reversed(log_history) if "train_runtime" in entry), {})
        for key in ("train_loss", "train_runtime"):
            if key in final:
                live.summary[key] = final[key]


def _proc_status_mb(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MiB; None elsewhere."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 2**10 if match else None


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
    return _proc_status_mb("VmRSS") or peak_memory_mb()


def peak_memory_mb() -> float:
    """Peak GPU memory allocated (CUDA), else peak resident memory (CPU), since `start_memory_peak`."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def train(
    model: torch.nn.Module,
    tokenizer,
    features: datasets.Dataset,
    hyper: dict,
    seed: int,
    model_dir: Path | None,
    live_dir: Path | None,
    checkpoint_dir: Path,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> dict:
    """Train `model` on `features`, save it to `model_dir`, log to dvclive; return a summary.

    `callbacks` are extra Trainer callbacks (the benchmark times steps with one).
    Checkpoints go to `checkpoint_dir`; a complete one found there is resumed from, and the
    folder is removed once the model is saved. Under torchrun every process runs this; only
    the main one writes (`model_dir` and `live_dir` may be None in the others).
    """
    trainable, total = count_parameters(model)
    resume = last_checkpoint(checkpoint_dir) if checkpoint_dir.exists() else None
    resumed_step = int(resume.name.rsplit("-", 1)[1]) if resume else 0
    trainer = ResumableTrainer(
        model=model,
        args=training_arguments(str(checkpoint_dir), hyper, seed),
        data_collator=DataCollatorWithPadding(tokenizer),
        train_dataset=features,
        processing_class=tokenizer,
        callbacks=[LogWhenSaving(), *callbacks],
        resume_from=resume,
    )
    if resume and is_main_process():
        print(f"resuming from {resume} (step {resumed_step})", flush=True)
    model_memory = start_memory_peak()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    peak_memory = peak_memory_mb()
    steps_run = trainer.state.global_step - resumed_step
    features_trained = len(features) * hyper["epochs"] * steps_run / trainer.state.global_step
    if is_main_process():  # under torchrun, the other processes write nothing
        trainer.model.save_pretrained(str(model_dir))  # safetensors only: no pickled training arguments
        tokenizer.save_pretrained(str(model_dir))
        write_training_log(live_dir, trainer.state.log_history)
    trainer.accelerator.wait_for_everyone()
    if is_main_process():
        shutil.rmtree(checkpoint_dir)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    device, _ = device_and_precision()
    return {
        "epochs": hyper["epochs"],
        "trainable_params": trainable,
        "total_params": total,
        "train_runtime_s": round(result.metrics["train_runtime"], 1),
        "train_features_per_s": round(features_trained / result.metrics["train_runtime"], 2),
        "model_memory_mb": round(model_memory, 1),
        "peak_memory_mb": round(peak_memory, 1),
        "initial_loss": round(losses[0], 4),
        "final_loss": round(losses[-1], 4),
        "train_features": len(features),
        "world_size": world_size(),
        "device": device,
    }
