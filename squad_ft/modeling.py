"""Load the pre-trained encoder with a QA head, wrap it with LoRA, load a trained model back."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

from squad_ft.errors import UserError, first_line
from squad_ft.hub import check_local, hub_reachable, unreachable_note
from squad_ft.params import DECODING, WINDOW

if TYPE_CHECKING:
    from peft import PeftModel

QA_HEAD = "qa_outputs"
ALL_LINEAR = "all-linear"
ADAPTER_CONFIG = "adapter_config.json"
# In a packaged model folder: the window and decoding settings it was evaluated with, which predict uses
SETTINGS_FILE = "inference_settings.json"
# Where configs keep the dropout on attention probabilities: BERT-like models, DistilBERT-like models.
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def _load(loader, name: str, revision: str | None = None, **kwargs):
    """`loader.from_pretrained(name, **kwargs)`: a local directory, or a Hub id at `revision` (from the
    cache when the Hub is unreachable)."""
    local = check_local(name, "model.name")
    if not local:
        hub_reachable()  # if the Hub does not answer, the loader reads the cache only: no half-minute of retries
        kwargs["revision"] = revision
    try:
        return loader.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:
        reason = first_line(err)
        where = "is not a loadable model directory" if local else (
            f"at revision {revision or 'main'} cannot be loaded (not reachable and not cached)")
        raise UserError(
            f"model.name: {name!r} {where}: {reason}.{'' if local else unreachable_note() + ' Check model.revision.'} "
            "Set model.name to a local model directory instead, e.g. "
            "`dvc exp run -S model.name=path/to/distilbert-base-uncased`"
        ) from err


def load_tokenizer(name: str, revision: str | None = None):
    """The model's fast tokenizer, from the Hub (at `revision`) or a local directory."""
    return _load(AutoTokenizer, name, revision)


def load_pretrained(name: str, attention_dropout: float | None = None, revision: str | None = None) -> torch.nn.Module:
    """The pre-trained encoder with a freshly initialised span-prediction head.

    `attention_dropout` replaces the model's dropout on attention probabilities (None keeps it).
    At 0, PyTorch's fused attention kernel runs on CPU too: it never materialises the attention
    matrix, which the dropout needs.
    """
    config = with_attention_dropout(_load(AutoConfig, name, revision), attention_dropout)
    return _load(AutoModelForQuestionAnswering, name, revision, config=config)


def with_attention_dropout(config, attention_dropout: float | None):
    """`config` with its dropout on attention probabilities set to `attention_dropout` (None keeps it)."""
    if attention_dropout is not None:
        key = next((key for key in ATTENTION_DROPOUT_KEYS if hasattr(config, key)), None)
        if key is None:
            raise UserError(f"train.attention_dropout: this {config.model_type} model has no attention dropout "
                            "setting; set train.attention_dropout to null")
        setattr(config, key, attention_dropout)
    return config


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Short names of the encoder's linear layers, the modules LoRA can adapt."""
    return sorted({
        name.rsplit(".", 1)[-1] for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.startswith(QA_HEAD)
    })


def add_lora(model: torch.nn.Module, r: int, alpha: float, dropout: float, target_modules, fused: bool = True,
             use_rslora: bool = False) -> PeftModel:
    """Wrap `model` with LoRA adapters on `target_modules` and train the QA head fully.

    `target_modules` is "all-linear" (every linear layer of the encoder) or a list of module
    names; names are checked against the model, since they differ by architecture
    (DistilBERT: q_lin, v_lin, ...; BERT: query, value, ...). `use_rslora` scales the adapters' output by
    alpha / sqrt(r) instead of alpha / r (rank-stabilised LoRA), so that a higher rank does not shrink each
    direction's update at a fixed rate. With `fused` (lora.fused), adapted
    layers compute through `FusedLoraLinear`, and those fed by a GELU save its input rather than its
    output (`keep_gelu_inputs`); without, they are peft's own.
    """
    # peft is imported here, not with the module: it takes seconds, and the stages that never build
    # or load an adapter (tokenize, evaluating or packaging the full model) do not need it
    from peft import LoraConfig, TaskType, get_peft_model

    from squad_ft.fused_lora import FusedLoraLinear, keep_gelu_inputs

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
        use_rslora=use_rslora,
        target_modules=target_modules,
        exclude_modules=[QA_HEAD],
    )
    if fused:
        config._register_custom_module({torch.nn.Linear: FusedLoraLinear})
    model = get_peft_model(model, config)
    if fused:
        keep_gelu_inputs(model)
    # peft's default, save_embedding_layers="auto", asks the Hub for the base model's config at its main
    # branch (not the pinned revision) to see whether the vocabulary was resized; these adapters never are
    model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=False)
    return model


def freeze_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with only its QA head trainable.

    With no parameter of the encoder requiring a gradient, autograd records nothing of the encoder's
    forward pass: the backward pass reaches the head alone and keeps only the head's input (the last
    hidden states), not the encoder's activations."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(f"{QA_HEAD}."))
    if not count_parameters(model)[0]:
        raise UserError(f"this {model.config.model_type} model has no QA head named {QA_HEAD!r} to train alone")
    return model


def for_mode(model: torch.nn.Module, mode: str, lora: dict) -> torch.nn.Module:
    """`model` (an encoder with its QA head) made ready for training `mode`: as it is for "full",
    wrapped with adapters of params.yaml's `lora` section for "lora", its encoder frozen for "head"."""
    if mode == "lora":
        return add_lora(model, lora["r"], lora["alpha"], lora["dropout"], lora["target_modules"], lora["fused"],
                        lora["use_rslora"])
    if mode == "head":
        return freeze_encoder(model)
    return model


def build_model(
    name: str, mode: str, attention_dropout: float | None, lora: dict, revision: str | None = None
) -> torch.nn.Module:
    """What a training run of `mode` (full, lora or head) starts from: the pre-trained encoder with a
    new QA head (`load_pretrained`), made ready for `mode` (`for_mode`)."""
    return for_mode(load_pretrained(name, attention_dropout, revision), mode, lora)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    parameters = list(model.parameters())
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def record_base_model(adapter_dir: Path, base_model: str, revision: str | None) -> None:
    """Record the base model of a saved LoRA adapter as the user named it (`model.name`), and its
    Hub revision in peft's own field for it (`revision`; null for a local directory).

    peft records the path the weights were read from: for a Hub model an absolute path into
    this machine's cache, useless elsewhere. A Hub id loads anywhere; a local path is kept as
    written (relative paths are relative to the project root) and can be overridden at load time.
    """
    config_file = Path(adapter_dir) / ADAPTER_CONFIG
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = base_model
    config["revision"] = None if check_local(base_model, "model.name") else revision
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def check_model_folder(path: str | Path) -> None:
    """A UserError naming the folder and the file, unless every weights file of `path` opens."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a model folder")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise UserError(f"{path}: no .safetensors weights file: not a model folder written by the pipeline")
    for file in weights:
        try:
            with safe_open(str(file), framework="pt"):  # checks the header against the file's size
                pass
        except Exception as err:  # safetensors raises its own error type, and OSError
            raise UserError(f"{path}: cannot read {file.name}: {first_line(err)} (corrupt or incomplete)") from err


def load_trained(path: str | Path, base_model: str | None = None) -> torch.nn.Module:
    """A model saved by training: a full model, or a LoRA adapter merged into its base model.

    `base_model` overrides the base recorded in a LoRA adapter (a Hub id or local directory); the
    recorded revision applies only to the recorded base.
    """
    check_model_folder(path)
    if not (Path(path) / ADAPTER_CONFIG).exists():
        return AutoModelForQuestionAnswering.from_pretrained(path)
    from peft import PeftModel  # only for an adapter folder (see add_lora)

    config = json.loads((Path(path) / ADAPTER_CONFIG).read_text())
    recorded = config["base_model_name_or_path"]
    revision = config.get("revision") if base_model in (None, recorded) else None
    model = PeftModel.from_pretrained(load_pretrained(base_model or recorded, revision=revision), str(path))
    return model.merge_and_unload()


def settings_of(params: dict) -> dict:
    """The inference settings of a run: its window (params `model`), decoding (params `evaluate`) and
    train.precision (`auto` chooses again on the machine that answers)."""
    return {"window": {key: params["model"][key] for key in WINDOW},
            "decoding": {key: params["evaluate"][key] for key in DECODING},
            "precision": params["train"]["precision"]}


def recorded_settings(folder: str | Path) -> dict:
    """The settings a packaged model folder records ({"window": {}, "decoding": {}} if none)."""
    path = Path(folder) / SETTINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {"window": {}, "decoding": {}}
