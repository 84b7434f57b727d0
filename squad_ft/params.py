"""params.yaml: read it and check every key's type and range, so that a bad value is one clear line.

Every check of a parameter's value lives here; other modules may assume checked values. Checks
that need the tokenizer (a window against the model's limits) are here too, as `check_window`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import yaml

from squad_ft.errors import UserError

PARAMS_FILE = "params.yaml"


class Check(NamedTuple):
    test: Callable[[object], bool]
    expected: str  # what the error says the value must be
    number: bool = False  # also accepts a number written as a string (see _as_number)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return _integer(value) or isinstance(value, float)


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _at_least(low: int) -> Check:
    return Check(lambda v: _integer(v) and v >= low, "a positive integer" if low == 1 else f"an integer >= {low}")


SEED = Check(lambda v: _integer(v) and 0 <= v < 2**32, "an integer from 0 to 2**32 - 1")
POSITIVE_INTEGER = _at_least(1)
POSITIVE = Check(lambda v: _number(v) and v > 0, "a positive number", number=True)
NON_NEGATIVE = Check(lambda v: _number(v) and v >= 0, "a number >= 0", number=True)
FRACTION = Check(lambda v: _number(v) and 0 < v < 1, "a number strictly between 0 and 1", number=True)
PROBABILITY = Check(lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)", number=True)
OPTIONAL_PROBABILITY = Check(lambda v: v is None or PROBABILITY.test(v), "a number in [0, 1) or null", number=True)
TEXT = Check(_text, "a non-empty string")
FLAG = Check(lambda v: isinstance(v, bool), "true or false")
COUNT = Check(lambda v: v is None or POSITIVE_INTEGER.test(v), "a positive integer, null or all")
OPTIONAL_POSITIVE_INTEGER = Check(lambda v: v is None or POSITIVE_INTEGER.test(v), "a positive integer or null")
SELECTIONS = ("best", "last")  # train.select: the epoch of best validation F1, or the last
SELECT = Check(lambda v: v in SELECTIONS, f"one of {', '.join(SELECTIONS)}")
REVISION = Check(lambda v: v is None or _text(v), "a commit hash, branch or tag, or null")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # train.precision; squad_ft.device chooses for auto
PRECISION = Check(lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}")
NAMES = Check(lambda v: _text(v) or (isinstance(v, list) and bool(v) and all(map(_text, v))),
              "a string or a non-empty list of strings")

SCHEMA = {
    "data": {"source": TEXT, "revision": REVISION, "n_examples": COUNT, "test_size": FRACTION, "seed": SEED},
    "heldout": {"source": TEXT, "revision": REVISION, "split": TEXT, "n_examples": COUNT},
    "validation": {"n_examples": POSITIVE_INTEGER},
    "model": {"name": TEXT, "revision": REVISION, "max_length": POSITIVE_INTEGER, "doc_stride": POSITIVE_INTEGER,
              "max_question_length": POSITIVE_INTEGER, "num_proc": POSITIVE_INTEGER},
    "train": {"batch_size": POSITIVE_INTEGER, "warmup_fraction": PROBABILITY, "weight_decay": NON_NEGATIVE,
              "logging_steps": POSITIVE_INTEGER, "checkpoint_steps": POSITIVE_INTEGER, "nproc": POSITIVE_INTEGER,
              "seed": SEED, "attention_dropout": OPTIONAL_PROBABILITY, "gradient_checkpointing": FLAG,
              "precision": PRECISION, "select": SELECT, "patience": OPTIONAL_POSITIVE_INTEGER,
              "pad_to_multiple_of": OPTIONAL_POSITIVE_INTEGER},
    "full": {"epochs": POSITIVE, "learning_rate": POSITIVE},
    "lora": {"epochs": POSITIVE, "learning_rate": POSITIVE, "r": POSITIVE_INTEGER, "alpha": POSITIVE,
             "use_rslora": FLAG, "dropout": PROBABILITY, "target_modules": NAMES, "fused": FLAG},
    "head": {"epochs": POSITIVE, "learning_rate": POSITIVE},
    "evaluate": {"batch_size": POSITIVE_INTEGER, "n_best": POSITIVE_INTEGER, "max_answer_length": POSITIVE_INTEGER},
    "bootstrap": {"resamples": _at_least(100), "seed": SEED, "confidence": FRACTION},
}
WINDOW = ("max_length", "doc_stride", "max_question_length")  # the `model` keys that window a context
DECODING = tuple(SCHEMA["evaluate"])  # how evaluation batches and decodes answers


def _as_number(value):
    """YAML 1.1 (PyYAML) reads `2e-4` as a string where DVC's YAML 1.2 reads a float: accept both."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_section(section: str, values: dict, where: str = PARAMS_FILE) -> dict:
    """`values` (a section, or some of its keys) with each key known and of the right type and range."""
    keys = SCHEMA[section]
    unknown = [key for key in values if key not in keys]
    if unknown:
        raise UserError(f"{where}: {section}.{unknown[0]} is not a parameter; {section} has: {', '.join(keys)}")
    for key, value in values.items():
        check = keys[key]
        if check.number:
            value = _as_number(value)
        if check is COUNT and value == "all":
            value = None
        if not check.test(value):
            raise UserError(f"{where}: {section}.{key} must be {check.expected}, got {value!r}")
        values[key] = value
    return values


def _check_together(params: dict, where: str) -> None:
    """The checks that relate two keys."""
    train = params["train"]  # the window's relations need the tokenizer: check_window
    if train["batch_size"] % train["nproc"]:
        raise UserError(f"{where}: train.batch_size {train['batch_size']} must be a multiple of train.nproc "
                        f"({train['nproc']}): it is the global batch, split evenly over the processes")


def check_params(params, where: str | Path = PARAMS_FILE) -> dict:
    """`params` with every section and key of SCHEMA present, known, and of the right type and range."""
    if not isinstance(params, dict):
        raise UserError(f"{where}: expected sections {', '.join(SCHEMA)}, found no mapping")
    for section, keys in SCHEMA.items():
        values = params.get(section)
        if not isinstance(values, dict):
            raise UserError(f"{where}: the section {section!r} is missing (it holds {', '.join(keys)})")
        missing = [key for key in keys if key not in values]
        if missing:
            raise UserError(f"{where}: {section}.{missing[0]} is missing")
        check_section(section, values, str(where))
    _check_together(params, str(where))
    return params


def check_window(window: dict, tokenizer, where: str = PARAMS_FILE) -> None:
    """A UserError unless `window` (model.max_length, doc_stride, max_question_length) fits the
    tokenizer's limit and leaves each window more context tokens than the stride."""
    max_length, doc_stride, max_question_length = (window[key] for key in WINDOW)
    check_section("model", {key: window[key] for key in WINDOW}, where)
    if not doc_stride < max_length:
        raise UserError(f"{where}: model.doc_stride must be below model.max_length ({max_length}), got {doc_stride}")
    if max_length > tokenizer.model_max_length:
        raise UserError(f"{where}: model.max_length {max_length} exceeds the model's limit of "
                        f"{tokenizer.model_max_length} tokens")
    room = max_length - max_question_length - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= doc_stride:
        raise UserError(
            f"{where}: model.max_question_length {max_question_length} leaves {max(room, 0)} context tokens per "
            f"window of model.max_length {max_length}, not more than model.doc_stride {doc_stride}: lower one of them"
        )


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    """Read and check params.yaml (DVC runs every stage from the project root)."""
    try:
        params = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read {path}: {err}") from err
    return check_params(params, path)
