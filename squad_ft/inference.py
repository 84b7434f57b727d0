"""Answer questions with a trained model: load it, window the contexts, predict, decode.

The one inference path: the `evaluate` stage and any later command use it as it is.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import DataCollatorWithPadding, Trainer

from squad_ft.device import trainer_arguments
from squad_ft.features import tokenize
from squad_ft.metric import squad_scores
from squad_ft.modeling import load_tokenizer, load_trained
from squad_ft.postprocess import answer_texts, best_answers

def load_model(path: str | Path, base_model: str | None = None):
    """(model, tokenizer) of a model folder written by training (full or LoRA; `base_model`
    overrides the base a LoRA folder records)."""
    return load_trained(path, base_model), load_tokenizer(str(path))


def predict_logits(model: torch.nn.Module, tokenizer, features: datasets.Dataset, batch_size: int,
                   precision: str = "auto"):
    """Start and end logits for every feature, padded with -100 to the longest feature, computed in
    `precision` (train.precision), `batch_size` features at a time."""
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model,
            args=trainer_arguments(scratch, precision, per_device_eval_batch_size=batch_size),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        return trainer_logits(trainer, features)


def trainer_logits(trainer: Trainer, features: datasets.Dataset):
    """`predict_logits` through `trainer`, with its model, precision and evaluation batch size: training
    scores its validation set with its own Trainer, so through the same code as the evaluate stage.

    Features are predicted longest first, so that each batch is padded little beyond its own longest feature
    (and a batch too large for memory fails at once), then put back in order.
    """
    longest_first = np.argsort([-len(ids) for ids in features["input_ids"]], kind="stable")
    start_logits, end_logits = trainer.predict(features.select(longest_first)).predictions
    in_order = np.argsort(longest_first)
    lengths = np.array([len(ids) for ids in features["input_ids"]])
    # as wide as the longest feature, whatever the batches were padded to (training's, to a multiple)
    start_logits, end_logits = (np.asarray(logits)[in_order, :lengths.max()] for logits in (start_logits, end_logits))
    beyond = np.arange(start_logits.shape[1]) >= lengths[:, None]
    start_logits[beyond] = end_logits[beyond] = -100  # a batch's padding: logits of no token of the feature
    return start_logits, end_logits


def answer_questions(
    model: torch.nn.Module, tokenizer, examples: datasets.Dataset, window: dict, decoding: dict,
    precision: str = "auto",
) -> dict[str, dict]:
    """{question id: {"text", "score", "start", "end"}} for `examples` (flat SQuAD schema; answers
    not needed), character offsets into each context.

    `window` holds `max_length`, `doc_stride` and `max_question_length` (the `model` params); `decoding` holds
    `batch_size`, `n_best` and `max_answer_length` (the `evaluate` params); `precision` is train.precision.
    """
    features = tokenize(examples, tokenizer, window, training=False)
    start_logits, end_logits = predict_logits(model, tokenizer, features, decoding["batch_size"], precision)
    return best_answers(
        examples, features, start_logits, end_logits, decoding["n_best"], decoding["max_answer_length"]
    )


class Validation:
    """The validation set as training scores it at the end of every epoch: its examples, tokenized once,
    answered through the training's own Trainer and decoded as the evaluate stage decodes."""

    def __init__(self, examples: datasets.Dataset, tokenizer, window: dict, decoding: dict):
        self.examples, self.decoding = examples, decoding
        self.features = tokenize(examples, tokenizer, window, training=False)
        self.references = {example["id"]: example["answers"]["text"] for example in examples}

    def scores(self, trainer: Trainer) -> dict[str, float]:
        """{"exact_match", "f1"} in percent of the trainer's model as it is now."""
        start_logits, end_logits = trainer_logits(trainer, self.features)
        answers = best_answers(self.examples, self.features, start_logits, end_logits, self.decoding["n_best"],
                               self.decoding["max_answer_length"])
        return squad_scores(answer_texts(answers), self.references)
