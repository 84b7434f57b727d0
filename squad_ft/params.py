"""params.yaml: read it and check every key and type, so that a bad value is one clear line."""
from __future__ import annotations

from pathlib import Path

import yaml

from squad_ft.errors import UserError

PARAMS_FILE = "params.yaml"


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return _integer(value) or isinstance(value, float)


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _flag(value) -> bool:
    return isinstance(value, bool)


def _positive(value) -> bool:
    return _number(value) and value > 0


def _positive_integer(value) -> bool:
    return _integer(value) and value > 0


def _optional_number(value) -> bool:
    return value is None or _number(value)


def _count(value) -> bool:
    return value is None or value == "all" or _integer(value)


def _revision(value) -> bool:
    return value is None or _text(value)


def _names(value) -> bool:
    return _text(value) or (isinstance(value, list) and all(_text(name) for name in value))


KINDS = {  # checker -> what the error says the value must be
    _integer: "an integer", _number: "a number", _text: "a non-empty string",
    _count: "an integer, null or all", _flag: "true or false", _optional_number: "a number or null",
    _names: "a string or a list of strings", _revision: "a commit hash, branch or tag, or null", _positive: "a positive number", _positive_integer: "a positive integer",
}
SCHEMA = {
    "data": {"source": _text, "revision": _revision, "n_examples": _count, "test_size": _number, "seed": _integer},
    "heldout": {"source": _text, "revision": _revision, "split": _text, "n_examples": _count},
    "model": {"name": _text, "revision": _revision, "max_length": _integer, "doc_stride": _integer,
              "max_question_length": _positive_integer, "num_proc": _integer},
    "train": {"batch_size": _positive_integer, "warmup_fraction": _number, "weight_decay": _number,
              "logging_steps": _positive_integer, "checkpoint_steps": _positive_integer, "nproc": _positive_integer,
              "seed": _integer,
              "attention_dropout": _optional_number, "gradient_checkpointing": _flag},
    "full": {"epochs": _positive, "learning_rate": _positive},
    "lora": {"epochs": _positive, "learning_rate": _positive, "r": _integer, "alpha": _number, "dropout": _number,
             "target_modules": _names},
    "evaluate": {"batch_size": _integer, "n_best": _integer, "max_answer_length": _integer},
    "bootstrap": {"resamples": _integer, "seed": _integer, "confidence": _number},
}


def _as_number(value):
    """YAML 1.1 (PyYAML) reads `2e-4` as a string where DVC's YAML 1.2 reads a float: accept both."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_params(params, path: str | Path = PARAMS_FILE) -> dict:
    """`params` with every section and key of SCHEMA present, known and of the right type."""
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected sections {', '.join(SCHEMA)}, found no mapping")
    for section, keys in SCHEMA.items():
        values = params.get(section)
        if not isinstance(values, dict):
            raise UserError(f"{path}: the section {section!r} is missing (it holds {', '.join(keys)})")
        for key, check in keys.items():
            if key not in values:
                raise UserError(f"{path}: {section}.{key} is missing")
            if check in (_number, _optional_number, _positive):
                values[key] = _as_number(values[key])
            if check is _count and values[key] == "all":
                values[key] = None
            if not check(values[key]):
                raise UserError(f"{path}: {section}.{key} must be {KINDS[check]}, got {values[key]!r}")
        unknown = [key for key in values if key not in keys]
        if unknown:
            raise UserError(
                f"{path}: {section}.{unknown[0]} is not a parameter; {section} has: {', '.join(keys)}"
            )
    return params


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    """Read and check params.yaml (DVC runs every stage from the project root)."""
    try:
        params = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read {path}: {err}") from err
    return check_params(params, path)
