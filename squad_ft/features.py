"""Turn SQuAD examples into model features: windows of `max_length` tokens over long contexts.

As in the transformers question-answering example, a context longer than the window is cut
into several features that overlap by `doc_stride` tokens. Training features carry the gold
start/end token positions (the CLS position when the answer is not inside the window);
evaluation features keep their example id and the character offsets of their context tokens.
Nothing is padded here: batches are padded when they are formed.
"""
from __future__ import annotations

import datasets
from transformers import PreTrainedTokenizerFast

from squad_ft.errors import UserError


def _encode(examples: dict, tokenizer: PreTrainedTokenizerFast, max_length: int, doc_stride: int):
    return tokenizer(
        [question.lstrip() for question in examples["question"]],
        examples["context"],
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def _context_span(sequence_ids: list) -> tuple[int, int]:
    """First and last token index of the context (sequence 1) in one feature."""
    start = sequence_ids.index(1)
    end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return start, end


def train_features(examples: dict, tokenizer, max_length: int, doc_stride: int) -> dict:
    """Batched map function: features with `start_positions` and `end_positions` labels."""
    encoded = _encode(examples, tokenizer, max_length, doc_stride)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    offsets_per_feature = encoded.pop("offset_mapping")
    encoded["start_positions"], encoded["end_positions"] = [], []
    for i, offsets in enumerate(offsets_per_feature):
        cls_index = encoded["input_ids"][i].index(tokenizer.cls_token_id)
        answers = examples["answers"][sample_map[i]]
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        context_start, context_end = _context_span(encoded.sequence_ids(i))
        if offsets[context_start][0] > start_char or offsets[context_end][1] < end_char:
            encoded["start_positions"].append(cls_index)
            encoded["end_positions"].append(cls_index)
            continue
        token_start = context_start
        while token_start <= context_end and offsets[token_start][0] <= start_char:
            token_start += 1
        token_end = context_end
        while token_end >= context_start and offsets[token_end][1] >= end_char:
            token_end -= 1
        encoded["start_positions"].append(token_start - 1)
        encoded["end_positions"].append(token_end + 1)
    return encoded


def eval_features(examples: dict, tokenizer, max_length: int, doc_stride: int) -> dict:
    """Batched map function: features with `example_id` and context-only `offset_mapping`."""
    encoded = _encode(examples, tokenizer, max_length, doc_stride)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    encoded["example_id"] = []
    for i in range(len(encoded["input_ids"])):
        sequence_ids = encoded.sequence_ids(i)
        encoded["example_id"].append(examples["id"][sample_map[i]])
        encoded["offset_mapping"][i] = [
            offset if sequence_ids[k] == 1 else None for k, offset in enumerate(encoded["offset_mapping"][i])
        ]
    return encoded


def check_window(tokenizer, max_length: int, doc_stride: int) -> None:
    """Raise a UserError for window settings the tokenizer cannot honour."""
    if not tokenizer.is_fast:
        raise UserError("model.name: the tokenizer must be a fast tokenizer (offset mappings are needed)")
    if tokenizer.padding_side != "right":
        raise UserError("model.name: only tokenizers that pad on the right are supported")
    if not 0 < doc_stride < max_length:
        raise UserError(f"model.doc_stride must be between 0 and model.max_length ({max_length}), got {doc_stride}")
    if max_length > tokenizer.model_max_length:
        raise UserError(
            f"model.max_length {max_length} exceeds the model's limit of {tokenizer.model_max_length} tokens"
        )


def tokenize(
    examples: datasets.Dataset, tokenizer, max_length: int, doc_stride: int, training: bool, num_proc: int = 1
):
    """Training features (with labels) or evaluation features (with offsets) for `examples`,
    in batches (`num_proc` processes), written to Arrow as they come."""
    check_window(tokenizer, max_length, doc_stride)
    if num_proc < 1:
        raise UserError(f"model.num_proc must be at least 1, got {num_proc}")
    return examples.map(
        train_features if training else eval_features,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "doc_stride": doc_stride},
        remove_columns=examples.column_names,
        num_proc=num_proc if num_proc > 1 else None,
        desc="Tokenizing " + ("training" if training else "evaluation") + " examples",
    )
