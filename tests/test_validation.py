"""The validation set: carved from unseen articles, scored every epoch, and the epoch it chooses.

The selection tests train in this process through `squad_ft.training.train`, the train stage's code
path, with a callback that keeps each epoch's weights to compare the written model with.
"""
from __future__ import annotations

import json

import datasets
import pytest
import safetensors.torch
import torch
from helpers import make_examples, run_stage, set_params, tiny_params, write_jsonl
from transformers import TrainerCallback, set_seed

from squad_ft.features import tokenize
from squad_ft.inference import Validation
from squad_ft.modeling import build_model, load_tokenizer
from squad_ft.params import load_params
from squad_ft.training import train

WINDOW = {key: tiny_params("x", "x")["model"][key] for key in ("max_length", "doc_stride", "max_question_length")}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_validation_and_heldout_share_no_article_or_question_and_test_is_untouched(tokenized):
    project = tokenized
    test_before = (project / "data/split/test.jsonl").read_bytes()
    unseen = make_examples(40, unseen=True)
    write_jsonl(read_jsonl(project / "data/split/train.jsonl") + unseen, project / "heldout-source.jsonl")
    set_params(project, "heldout", source=str(project / "heldout-source.jsonl"), n_examples=None)
    set_params(project, "validation", n_examples=15)
    assert run_stage("heldout", cwd=project).returncode == 0
    sets = {name: read_jsonl(project / f"data/split/{name}.jsonl") for name in ("train", "validation", "heldout")}
    for first, second in (("train", "validation"), ("train", "heldout"), ("validation", "heldout")):
        for key in ("id", "title", "context"):
            assert not {ex[key] for ex in sets[first]} & {ex[key] for ex in sets[second]}, (first, second, key)
    # every unseen example is in one of the two, in the source's order; validation holds whole articles
    validation_titles = {ex["title"] for ex in sets["validation"]}
    assert [ex["id"] for ex in sets["validation"]] == [ex["id"] for ex in unseen if ex["title"] in validation_titles]
    assert [ex["id"] for ex in sets["heldout"]] == [ex["id"] for ex in unseen if ex["title"] not in validation_titles]
    assert len(sets["validation"]) >= 15 and sets["heldout"]
    counts = json.loads((project / "metrics/heldout/data.details.json").read_text())
    assert (counts["validation_examples"], counts["heldout_examples"]) == (len(sets["validation"]), len(sets["heldout"]))
    assert (project / "data/split/test.jsonl").read_bytes() == test_before


def test_too_few_unseen_questions_for_validation_is_one_line_naming_the_parameter(tokenized):
    set_params(tokenized, "validation", n_examples=500)
    result = run_stage("heldout", cwd=tokenized)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "validation.n_examples is 500" in result.stderr
    assert not (tokenized / "data/split/validation.jsonl").exists()


class KeepEpochWeights(TrainerCallback):
    """Each epoch's final weights, by epoch number."""

    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.weights[round(state.epoch)] = {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def small_run(tiny_model_dir):
    """A tiny model, its training features and a validation set of unseen articles."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    features = tokenize(datasets.Dataset.from_list(make_examples(16)), tokenizer, WINDOW, training=True)
    examples = datasets.Dataset.from_list(make_examples(12, unseen=True))
    return tiny_model_dir, tokenizer, features, Validation(examples, tokenizer, WINDOW, {
        "batch_size": 16, "n_best": 20, "max_answer_length": 30})


def run_training(small_run, tmp_path, validate: bool = True, **hyper):
    model_dir, tokenizer, features, validation = small_run
    validation = validation if validate else None
    params = load_params()
    hyper = {**params["train"], **params["full"], "batch_size": 8, "logging_steps": 2, "precision": "fp32",
             "epochs": 8, "learning_rate": 1e-3, **hyper}
    set_seed(0)
    model = build_model(str(model_dir), "full", 0.0, params["lora"])
    keep = KeepEpochWeights()
    summary = train(model, tokenizer, features, hyper, 0, tmp_path / "model", tmp_path / "live",
                    tmp_path / "checkpoints", validation, callbacks=(keep,))
    written = safetensors.torch.load_file(tmp_path / "model" / "model.safetensors")
    return summary.get("validation"), written, keep.weights


def same_weights(written: dict, epoch_weights: dict) -> bool:
    return all(torch.equal(written[name], epoch_weights[name]) for name in written)


def test_the_model_written_is_the_best_epochs_when_validation_peaks_before_the_last(small_run, tmp_path):
    chosen, written, per_epoch = run_training(small_run, tmp_path, select="best", learning_rate=3e-3)
    scores = [epoch["f1"] for epoch in chosen["per_epoch"]]
    best = scores.index(max(scores)) + 1  # the first epoch of the highest F1
    assert len(scores) == 8 and best < 8, scores  # the peak comes first: the test has something to choose
    assert (chosen["epoch"], chosen["best_epoch"], chosen["f1"]) == (best, best, max(scores))
    assert same_weights(written, per_epoch[best]) and not same_weights(written, per_epoch[8])
    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert live["validation"]["f1"] == scores[-1]  # dvclive logs every epoch, against the epoch
    rows = (tmp_path / "live/plots/metrics/validation/f1.tsv").read_text().split()
    assert rows[:2] == ["step", "f1"] and [float(value) for value in rows[3::2]] == scores


def test_select_last_writes_the_last_epoch_and_patience_stops_early(small_run, tmp_path):
    chosen, written, per_epoch = run_training(small_run, tmp_path / "last", select="last", learning_rate=3e-3)
    assert chosen["epoch"] == 8 and same_weights(written, per_epoch[8])
    scores = [epoch["f1"] for epoch in chosen["per_epoch"]]
    best = scores.index(max(scores)) + 1
    assert best + 2 < 8, scores  # room to stop early
    stopped, written, per_epoch = run_training(small_run, tmp_path / "patience", select="best", patience=2,
                                               learning_rate=3e-3)
    assert stopped["epochs_run"] == best + 2  # two epochs without a better F1, then no more
    assert [epoch["f1"] for epoch in stopped["per_epoch"]] == scores[:best + 2]  # the same run, cut short
    assert stopped["epoch"] == best and same_weights(written, per_epoch[best])


def test_training_predicts_validation_in_its_features_order_as_the_evaluate_stage_does(small_run, tmp_path):
    """The Trainer would shuffle evaluation batches by length under group_by_length, as it does training's:
    the training's logits must be the evaluate stage's, feature by feature."""
    import numpy as np
    from transformers import DataCollatorWithPadding

    from squad_ft.inference import predict_logits, trainer_logits
    from squad_ft.training import ResumableTrainer, training_arguments

    model_dir, tokenizer, features, validation = small_run
    params = load_params()
    hyper = {**params["train"], **params["full"], "precision": "fp32"}
    set_seed(0)
    model = build_model(str(model_dir), "full", 0.0, params["lora"]).eval()
    # batches padded as training pads them (train.pad_to_multiple_of), wider than the evaluate stage's
    trainer = ResumableTrainer(model=model, args=training_arguments(str(tmp_path), hyper, 0, 4),
                               data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=48),
                               train_dataset=features,
                               eval_dataset=validation.features, processing_class=tokenizer, validation=validation)
    assert max(map(len, validation.features["input_ids"])) % 48  # so that the padding shows
    during_training = trainer_logits(trainer, validation.features)
    evaluate_stage = predict_logits(model, tokenizer, validation.features, 4, "fp32")
    assert len({row.tobytes() for row in evaluate_stage[0]}) > 5  # features that a shuffle would tell apart
    for ours, theirs in zip(during_training, evaluate_stage):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_validation_leaves_training_as_it_is_without(small_run, tmp_path):
    """Validation runs on a fork of the random stream: with `select: last` the model is byte for byte the
    one a run without validation writes (batch orders and dropout masks of every epoch unchanged)."""
    _, with_validation, _ = run_training(small_run, tmp_path / "with", select="last", epochs=3)
    _, without, _ = run_training(small_run, tmp_path / "without", validate=False, epochs=3)
    assert with_validation.keys() == without.keys()
    assert all(torch.equal(with_validation[name], without[name]) for name in without)


class BatchWidths(TrainerCallback):
    """The widths (tokens) of the training batches the Trainer's data loader gives."""

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.widths = {batch["input_ids"].shape[1] for batch in train_dataloader}


@pytest.mark.parametrize("multiple", [None, 24])
def test_training_batches_are_padded_to_a_multiple_of_pad_to_multiple_of(small_run, tmp_path, multiple):
    """Few batch widths, so that under bf16 oneDNN meets few shapes: each width is the batch's longest feature
    rounded up to a multiple of train.pad_to_multiple_of (null: the longest feature itself)."""
    model_dir, tokenizer, features, _ = small_run
    params = load_params()
    hyper = {**params["train"], **params["full"], "batch_size": 4, "precision": "fp32", "epochs": 1,
             "pad_to_multiple_of": multiple}
    widths = BatchWidths()
    train(build_model(str(model_dir), "full", 0.0, params["lora"]), tokenizer, features, hyper, 0, tmp_path / "model",
          tmp_path / "live", tmp_path / "checkpoints", callbacks=(widths,))
    longest = max(map(len, features["input_ids"]))
    # so that padding to a multiple shows, and is not padding to the window's length
    assert longest % 24 and -(-longest // 24) * 24 != WINDOW["max_length"]
    assert widths.widths == ({-(-longest // multiple) * multiple} if multiple else {longest})
