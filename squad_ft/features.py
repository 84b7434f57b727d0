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
from squad_ft.params import check_window


def _questions(examples: dict, tokenizer, max_question_length: int) -> list[str]:
    """The questions, each cut to its first `max_question_length` tokens (at a token's end)."""
    questions = [question.lstrip() for question in examples["question"]]
    offsets = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [question if len(spans) <= max_question_length else question[:spans[max_question_length - 1][1]]
            for question, spans in zip(questions, offsets)]


def count_long_questions(examples: datasets.Dataset, tokenizer, max_question_length: int) -> int:
    """How many questions `tokenize` cuts to `max_question_length` tokens."""
    return sum(len(ids) > max_question_length for ids in tokenizer(
        [question.lstrip() for question in examples["question"]], add_special_tokens=False)["input_ids"])


def _encode(examples: dict, tokenizer: PreTrainedTokenizerFast, window: dict):
    return tokenizer(
        _questions(examples, tokenizer, window["max_question_length"]),
        examples["context"],
        truncation="only_second",
        max_length=window["max_length"],
        stride=window["doc_stride"],
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def _context_span(sequence_ids: list) -> tuple[int, int]:
    """First and last token index of the context (sequence 1) in one feature."""
    start = sequence_ids.index(1)
    end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
    return start, end


def train_features(examples: dict, tokenizer, window: dict) -> dict:
    """Batched map function: features with `start_positions` and `end_positions` labels."""
    encoded = _encode(examples, tokenizer, window)
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


def eval_features(examples: dict, tokenizer, window: dict) -> dict:
    """Batched map function: features with `example_id` and context-only `offset_mapping`."""
    encoded = _encode(examples, tokenizer, window)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    encoded["example_id"] = []
    for i in range(len(encoded["input_ids"])):
        sequence_ids = encoded.sequence_ids(i)
        encoded["example_id"].append(examples["id"][sample_map[i]])
        encoded["offset_mapping"][i] = [
            offset if sequence_ids[k] == 1 else None for k, offset in enumerate(encoded["offset_mapping"][i])
        ]
    return encoded


def check_tokenizer(tokenizer) -> None:
    """A UserError unless the tokenizer can window SQuAD contexts: fast (offsets), padding on the right."""
    if not tokenizer.is_fast:
        raise UserError("model.name: the tokenizer must be a fast tokenizer (offset mappings are needed)")
    if tokenizer.padding_side != "right":
        raise UserError("model.name: only tokenizers that pad on the right are supported")


def tokenize(examples: datasets.Dataset, tokenizer, window: dict, training: bool):
    """Training features (with labels) or evaluation features (with offsets) for `examples`, in batches,
    written to Arrow as they come.

    `window` holds `max_length`, `doc_stride` and `max_question_length` (the `model` params), and
    optionally `num_proc`, the processes that tokenize.
    """
    check_tokenizer(tokenizer)
    check_window(window, tokenizer)
    num_proc = window.get("num_proc", 1)
    window = {key: window[key] for key in ("max_length", "doc_stride", "max_question_length")}
    return examples.map(
        train_features if training else eval_features,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "window": window},
        remove_columns=examples.column_names,
        num_proc=num_proc if num_proc > 1 else None,
        desc="Tokenizing " + ("training" if training else "evaluation") + " examples",
    )
