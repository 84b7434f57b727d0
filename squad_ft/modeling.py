"""Load the pre-trained encoder with a QA head, wrap it with LoRA, load a trained model back."""
from __future__ import annotations

from pathlib import Path

import torch
from peft import AutoPeftModelForQuestionAnswering, LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from squad_ft.errors import UserError

QA_HEAD = "qa_outputs"
ALL_LINEAR = "all-linear"


def _not_loadable(name: str, err: Exception) -> UserError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(
        f"model.name: cannot load {name!r} (not reachable and not cached: {reason}). Set model.name to a local "
        "model directory instead, e.g. `dvc exp run -S model.name=path/to/distilbert-base-uncased`"
    )


def load_tokenizer(name: str):
    """The model's fast tokenizer, from the Hub or a local directory."""
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise _not_loadable(name, err) from err


def load_pretrained(name: str) -> torch.nn.Module:
    """The pre-trained encoder with a freshly initialised span-prediction head."""
    try:
        return AutoModelForQuestionAnswering.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise _not_loadable(name, err) from err


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Short names of the encoder's linear layers, the modules LoRA can adapt."""
    return sorted({
        name.rsplit(".", 1)[-1] for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.startswith(QA_HEAD)
    })


def add_lora(model: torch.nn.Module, r: int, alpha: float, dropout: float, target_modules) -> PeftModel:
    """Wrap `model` with LoRA adapters on `target_modules` and train the QA head fully.

    `target_modules` is "all-linear" (every linear layer of the encoder) or a list of module
    names; names are checked against the model, since they differ by architecture
    (DistilBERT: q_lin, v_lin, ...; BERT: query, value, ...).
    """
    if not isinstance(r, int) or r <= 0:
        raise UserError(f"lora.r must be a positive integer, got {r!r}")
    if not 0 <= dropout < 1:
        raise UserError(f"lora.dropout must be in [0, 1), got {dropout!r}")
    available = linear_module_names(model)
    if target_modules != ALL_LINEAR:
        if isinstance(target_modules, str):
            target_modules = [target_modules]
        unknown = [name for name in target_modules or [] if name not in available]
        if unknown or not target_modules:
            raise UserError(
                f"lora.target_modules: {unknown or 'empty'} not in this {model.config.model_type} model; "
                f"use {ALL_LINEAR!r} or a list of: {', '.join(available)}"
            )
    config = LoraConfig(
        task_type=TaskType.QUESTION_ANS,  # keeps the QA head trainable (modules_to_save)
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        exclude_modules=[QA_HEAD],
    )
    return get_peft_model(model, config)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def load_trained(path: str | Path) -> torch.nn.Module:
    """A model saved by training: a full model, or a LoRA adapter merged into its base model."""
    if (Path(path) / "adapter_config.json").exists():
        return AutoPeftModelForQuestionAnswering.from_pretrained(path).merge_and_unload()
    return AutoModelForQuestionAnswering.from_pretrained(path)
