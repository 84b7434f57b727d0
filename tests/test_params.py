"""params.yaml's checks, all in squad_ft/params.py: each bad value is one line naming its section and key."""
import copy
import re

import pytest
import yaml
from helpers import ROOT

from squad_ft.errors import UserError
from squad_ft.params import check_params, check_window

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def error_for(section: str, **values) -> str:
    params = copy.deepcopy(DEFAULTS)
    params[section].update(values)
    with pytest.raises(UserError) as caught:
        check_params(params)
    return str(caught.value)


def test_the_committed_params_pass_unchanged():
    assert check_params(copy.deepcopy(DEFAULTS)) == {**DEFAULTS, "heldout": {**DEFAULTS["heldout"], "n_examples": None}}


@pytest.mark.parametrize("section, key, value, expected", [
    ("data", "n_examples", 0, "a positive integer, null or all"),
    ("data", "test_size", 1.2, "a number strictly between 0 and 1"),
    ("data", "test_size", 0, "a number strictly between 0 and 1"),
    ("heldout", "n_examples", -1, "a positive integer, null or all"),
    ("model", "max_length", 0, "a positive integer"),
    ("model", "doc_stride", 0, "a positive integer"),
    ("model", "max_question_length", 0, "a positive integer"),
    ("model", "num_proc", 0, "a positive integer"),
    ("train", "warmup_fraction", 1.0, "a number in [0, 1)"),
    ("train", "weight_decay", -0.01, "a number >= 0"),
    ("train", "attention_dropout", 1.5, "a number in [0, 1) or null"),
    ("train", "nproc", 0, "a positive integer"),
    ("train", "logging_steps", 0, "a positive integer"),
    ("train", "checkpoint_steps", -5, "a positive integer"),
    ("full", "epochs", 0, "a positive number"),
    ("lora", "r", 0, "a positive integer"),
    ("lora", "r", 2.5, "a positive integer"),
    ("lora", "alpha", 0, "a positive number"),
    ("lora", "dropout", 1, "a number in [0, 1)"),
    ("lora", "target_modules", [], "a string or a non-empty list of strings"),
    ("evaluate", "n_best", 0, "a positive integer"),
    ("evaluate", "max_answer_length", 0, "a positive integer"),
    ("evaluate", "batch_size", 0, "a positive integer"),
    ("bootstrap", "resamples", 10, "an integer >= 100"),
    ("bootstrap", "confidence", 95, "a number strictly between 0 and 1"),
])
def test_an_out_of_range_value_names_section_key_and_range(section, key, value, expected):
    assert error_for(section, **{key: value}) == f"params.yaml: {section}.{key} must be {expected}, got {value!r}"


def test_the_global_batch_must_split_evenly_over_the_processes():
    message = error_for("train", batch_size=16, nproc=3)
    assert message.startswith("params.yaml: train.batch_size 16 must be a multiple of train.nproc (3)")


def test_numbers_in_exponent_form_are_numbers():
    params = copy.deepcopy(DEFAULTS)
    params["full"]["learning_rate"] = "2e-4"  # how PyYAML reads `2e-4`, which DVC writes
    assert check_params(params)["full"]["learning_rate"] == 2e-4


@pytest.mark.parametrize("max_length, stride, max_question, message", [
    (128, 128, 64, "params.yaml: model.doc_stride must be below model.max_length (128), got 128"),
    (1024, 128, 64, "params.yaml: model.max_length 1024 exceeds the model's limit of 512 tokens"),
    (192, 128, 64, "params.yaml: model.max_question_length 64 leaves 125 context tokens per window of "
                   "model.max_length 192, not more than model.doc_stride 128: lower one of them"),
    (384, 0, 64, "params.yaml: model.doc_stride must be a positive integer, got 0"),
])
def test_a_window_the_tokenizer_cannot_honour_is_one_line(minilm_tokenizer, max_length, stride, max_question, message):
    with pytest.raises(UserError) as caught:
        check_window({"max_length": max_length, "doc_stride": stride, "max_question_length": max_question},
                     minilm_tokenizer)
    assert str(caught.value) == message


def test_no_module_but_params_checks_a_parameter_range():
    """The checks have one home: no other module raises an error naming `section.key must`."""
    sections = "|".join(DEFAULTS)
    for path in sorted((ROOT / "squad_ft").glob("*.py")) + sorted((ROOT / "stages").glob("*.py")):
        if path.name != "params.py":
            text = path.read_text()
            assert not [line for line in text.splitlines()  # a literal key, or one filled in
                        if re.search(rf"\b({sections})\.(\w+|\{{\w+\}}) must be|\}}\.\{{\w+\}} must be", line)], path.name
