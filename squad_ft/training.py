"""One training code path (transformers Trainer) for full fine-tuning, LoRA and the head alone."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import math

import datasets
import torch
from torch.utils.data import SequentialSampler
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from dvclive import Live
from squad_ft.device import cpu_model, device_and_precision, is_main_process, trainer_arguments, world_size
from squad_ft.errors import UserError
from squad_ft.inference import Validation
from squad_ft.memory import peak_memory_mb, start_memory_peak
from squad_ft.modeling import count_parameters

ORDER_STATE_FILE = "batch_order_rng_state_{rank}.pth"  # in each checkpoint, beside the Trainer's RNG states


def training_arguments(output_dir: str, hyper: dict, seed: int, eval_batch_size: int | None = None) -> TrainingArguments:
    """TrainingArguments from the shared `train` params merged with one mode's (`full`, `lora` or `head`);
    with `eval_batch_size`, a validation at the end of every epoch, whose F1 the Trainer tracks the best of."""
    processes = world_size()
    if hyper["batch_size"] % processes:  # params.py checks it against train.nproc; torchrun by hand may differ
        raise UserError(f"train.batch_size {hyper['batch_size']} does not split evenly over the {processes} processes "
                        "torchrun started: it is the global batch")
    validation = {"eval_strategy": "epoch", "per_device_eval_batch_size": eval_batch_size,
                  "metric_for_best_model": "f1", "greater_is_better": True,
                  # the early-stopping counter travels in the checkpoints too
                  "restore_callback_states_from_checkpoint": True} if eval_batch_size else {}
    distributed = {"ddp_backend": "nccl" if torch.cuda.is_available() else "gloo",
                   "ddp_find_unused_parameters": False} if processes > 1 else {}
    return trainer_arguments(
        output_dir,
        hyper["precision"],
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
        save_total_limit=1,  # and the best epoch's checkpoint, which the Trainer keeps while it is the best
        seed=seed,
        **validation,
    )


def at_epoch_end(state) -> bool:
    return state.epoch is not None and float(state.epoch).is_integer()


class LogWhenSaving(TrainerCallback):
    """Log the loss at every checkpoint's step too: a resumed run starts with no loss accumulated
    since the last log, so a checkpoint must hold none, or the resumed run logs other averages.

    With `validating`, every epoch's end is checkpointed too, after its validation (not before, as a
    step checkpoint falling there would be): the best epoch's weights are then a checkpoint, which the
    Trainer keeps, and a run resumed there has its validation already."""

    def __init__(self, validating: bool):
        self.validating = validating

    def on_step_end(self, args, state, control, **kwargs):
        if self.validating and at_epoch_end(state):
            control.should_save, control.should_log = False, True  # saved at on_epoch_end, after validation
        if control.should_save:  # set by the Trainer's own flow callback, which runs first
            control.should_log = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.validating:
            control.should_save = True
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

    With a `validation` set, `evaluate` scores it (the Trainer calls it at every epoch's end).
    Relies on non-public Trainer methods: `_get_train_sampler`, `_get_eval_sampler`, `_save_rng_state` and
    `_load_best_model` (docs/pipeline.md).
    """

    def __init__(self, *args, resume_from: Path | None = None, validation: Validation | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.order, self.resume_from, self.validation = None, resume_from, validation

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The validation set's EM and F1, logged (`eval_exact_match`, `eval_f1`): the Trainer calls it at
        every epoch's end, then tracks the best F1 and its step (`state.best_metric`, `best_global_step`)."""
        with torch.random.fork_rng(devices=[]):  # a DataLoader draws from the random stream: leave training's as it was
            scores = self.validation.scores(self)
        metrics = {f"{metric_key_prefix}_{name}": round(value, 4) for name, value in scores.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _get_eval_sampler(self, eval_dataset):
        """In order: under group_by_length the Trainer would shuffle evaluation batches by length too, and
        the validation's logits must come back in its features' order, as the evaluate stage's do."""
        if eval_dataset is None or self.args.world_size > 1:  # under DDP, the Trainer's own default
            return None
        return SequentialSampler(eval_dataset)

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


def run_key(mode: str, params: dict, inputs: dict, data: tuple[Path, ...], code_dirs: tuple[Path, ...]) -> str:
    """A hash of everything that determines a training run: its params (validation's decoding included),
    its inputs' fingerprints (another base model under the same name starts over), its data (features
    and validation set: files or folders) and the code."""
    digest = hashlib.sha256(json.dumps(
        [mode, params["model"], params["train"], params[mode], params["evaluate"], inputs], sort_keys=True).encode())
    files = [p for path in data for p in ([path] if path.is_file() else sorted(path.rglob("*")))]
    for path in files + sorted(p for d in code_dirs for p in d.rglob("*.py")):
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


def whole_run_loss(log_history: list[dict]) -> float:
    """The mean training loss over every step of the run, from its logged losses, each the mean over the
    steps since the log before: the Trainer's own `train_loss` covers only the steps a resumed run ran."""
    total, previous = 0.0, 0
    logged = [entry for entry in log_history if "loss" in entry]
    for entry in logged:
        total += entry["loss"] * (entry["step"] - previous)
        previous = entry["step"]
    return total / previous if previous else float("nan")


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
        for entry in log_history:  # against the epoch, so that runs of any length share the x axis
            if "eval_f1" in entry:
                live.step = math.ceil(entry["epoch"] - 1e-9)  # a last, partial epoch (epochs: 2.5) is the 3rd
                live.log_metric("validation/exact_match", entry["eval_exact_match"])
                live.log_metric("validation/f1", entry["eval_f1"])
        final = next((entry for entry in reversed(log_history) if "train_runtime" in entry), {})
        if "train_runtime" in final:  # of this process's part of the run: a resumed run's
            live.summary["train_runtime"] = final["train_runtime"]
        if "train_loss" in final:
            live.summary["train_loss"] = whole_run_loss(log_history)


# the figures of a training's summary that runs are compared by (the train stage's DVC metrics)
COSTS = ("trainable_params", "total_params", "train_runtime_s", "train_features_per_s", "model_memory_mb",
         "peak_memory_mb", "initial_loss", "final_loss")


def train(
    model: torch.nn.Module,
    tokenizer,
    features: datasets.Dataset,
    hyper: dict,
    seed: int,
    model_dir: Path | None,
    live_dir: Path | None,
    checkpoint_dir: Path,
    validation: Validation | None = None,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> dict:
    """Train `model` on `features`, save it to `model_dir`, log to dvclive; return a summary (its
    COSTS, and what the run was).

    With a `validation` set, it is scored at the end of every epoch; the model saved is the best epoch's
    by validation F1 (hyper["select"] "best") or the last's ("last"); with hyper["patience"], training
    stops after that many epochs without a better F1. The summary's "validation" holds every epoch's
    scores and the chosen one's.

    `callbacks` are extra Trainer callbacks (the benchmark times steps with one).
    Checkpoints go to `checkpoint_dir`; a complete one found there is resumed from, and the
    folder is removed once the model is saved. Under torchrun every process runs this; only
    the main one writes (`model_dir` and `live_dir` may be None in the others).
    """
    trainable, total = count_parameters(model)
    resume = last_checkpoint(checkpoint_dir) if checkpoint_dir.exists() else None
    resumed_step = int(resume.name.rsplit("-", 1)[1]) if resume else 0
    stopping = [EarlyStoppingCallback(hyper["patience"])] if validation and hyper.get("patience") else []
    trainer = ResumableTrainer(
        model=model,
        args=training_arguments(str(checkpoint_dir), hyper, seed,
                                validation.decoding["batch_size"] if validation else None),
        # each batch padded to its longest feature, rounded up to a multiple of train.pad_to_multiple_of
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=hyper["pad_to_multiple_of"]),
        train_dataset=features,
        eval_dataset=validation.features if validation else None,
        processing_class=tokenizer,
        callbacks=[LogWhenSaving(validation is not None), *stopping, *callbacks],
        resume_from=resume,
        validation=validation,
    )
    if resume and is_main_process():
        print(f"resuming from {resume} (step {resumed_step})", flush=True)
    model_memory = start_memory_peak()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    peak_memory = peak_memory_mb()
    chosen = validation and chosen_epoch(trainer, hyper["select"])
    steps_run = trainer.state.global_step - resumed_step
    # the epochs run: fewer than hyper["epochs"] when training stopped early
    features_trained = len(features) * trainer.state.epoch * steps_run / trainer.state.global_step
    if is_main_process():  # under torchrun, the other processes write nothing
        trainer.model.save_pretrained(str(model_dir))  # safetensors only: no pickled training arguments
        tokenizer.save_pretrained(str(model_dir))
        write_training_log(live_dir, trainer.state.log_history)
    trainer.accelerator.wait_for_everyone()
    if is_main_process():
        shutil.rmtree(checkpoint_dir)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    device, precision, _ = device_and_precision(hyper["precision"])
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
        "cpu": cpu_model(),
        "precision": precision,
        **({"validation": chosen} if validation else {}),
    }


def chosen_epoch(trainer: ResumableTrainer, select: str) -> dict:
    """Every epoch's validation scores and the chosen epoch's ("best": of highest F1, the first of equals;
    "last"); for "best", the trainer's model is then that epoch's, loaded from its checkpoint."""
    epochs = [{"epoch": math.ceil(entry["epoch"] - 1e-9), "exact_match": entry["eval_exact_match"], "f1": entry["eval_f1"]}
              for entry in trainer.state.log_history if "eval_f1" in entry]
    best = max(epochs, key=lambda epoch: epoch["f1"])  # max keeps the first of equals, as the Trainer does
    chosen = best if select == "best" else epochs[-1]
    if chosen is not epochs[-1]:
        trainer._load_best_model()  # the best epoch's checkpoint, which the Trainer kept for it
    return {"exact_match": chosen["exact_match"], "f1": chosen["f1"], "epoch": chosen["epoch"],
            "best_epoch": best["epoch"], "epochs_run": epochs[-1]["epoch"], "per_epoch": epochs}
