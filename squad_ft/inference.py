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
from squad_ft.modeling import load_tokenizer, load_trained
from squad_ft.postprocess import best_answers

def load_model(path: str | Path, base_model: str | None = None):
    """(model, tokenizer) of a model folder written by training (full or LoRA; `base_model`
    overrides the base a LoRA folder records)."""
    return load_trained(path, base_model), load_tokenizer(str(path))


def predict_logits(model: torch.nn.Module, tokenizer, features: datasets.Dataset, batch_size: int,
                   precision: str = "auto"):
    """Start and end logits for every feature, padded with -100 to the longest feature, computed in
    `precision` (train.precision).

    Features are predicted longest first, so that each batch is padded only to its own longest
    feature and barely at all (and a batch too large for memory fails at once), then put back in order.
    """
    longest_first = np.argsort([-len(ids) for ids in features["input_ids"]], kind="stable")
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model,
            args=trainer_arguments(scratch, precision, per_device_eval_batch_size=batch_size),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        start_logits, end_logits = trainer.predict(features.select(longest_first)).predictions
    in_order = np.argsort(longest_first)
    start_logits, end_logits = np.asarray(start_logits)[in_order], np.asarray(end_logits)[in_order]
    beyond = np.arange(start_logits.shape[1]) >= np.array([len(ids) for ids in features["input_ids"]])[:, None]
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
