"""The official SQuAD v1.1 exact match and F1, computed offline.

A faithful copy of the definitions in the official `evaluate-v1.1.py`: answers are normalised
(lower case, punctuation and the articles a/an/the removed, whitespace collapsed); each
prediction takes its best score over the reference answers; scores are averaged over all
questions and given in percent. A question with no prediction scores 0.

`squad_scores` takes the official script's dicts ({id: answer}, {id: [answers]}); `compute` takes
the lists of records of Hugging Face `evaluate.load("squad").compute(...)`.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from squad_ft.errors import UserError

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, remove punctuation, articles and extra whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def f1(prediction: str, reference: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    reference_tokens = normalize_answer(reference).split()
    common = Counter(prediction_tokens) & Counter(reference_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def question_scores(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, list[float]]:
    """Per-question exact match and F1 (0-1), in the order of `references`; a missing prediction scores 0."""
    scores = {"exact_match": [], "f1": []}
    for question_id, answers in references.items():
        prediction = predictions.get(question_id)
        for name, score in (("exact_match", exact_match), ("f1", f1)):
            scores[name].append(0.0 if prediction is None else max(score(prediction, answer) for answer in answers))
    return scores


def squad_scores(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """{"exact_match", "f1"} in percent over all questions in `references`."""
    return {
        name: 100.0 * sum(values) / len(references)
        for name, values in question_scores(predictions, references).items()
    }


def compute(*, predictions: Iterable[Mapping[str, Any]], references: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """{"exact_match", "f1"} in percent, with the call shape of `evaluate.load("squad").compute`.

    predictions: [{"id": str, "prediction_text": str}, ...]
    references:  [{"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}, ...]

    Matches Hugging Face evaluate's `metrics/squad` (squad.py and its copy of the official script,
    compute_score.py): scores are averaged over the references; a reference whose id has no
    prediction scores 0 and still counts (evaluate also prints "Unanswered question ... will
    receive score 0." to stderr; this is silent); a prediction whose id is in no reference is
    ignored; `answer_start` must be there but its values are not used.

    Where evaluate would fail obscurely or score silently, this raises a one-line UserError:
    a record that is not a dict or lacks a key, an id or text that is not a string, no
    reference answers, no references at all (evaluate: ZeroDivisionError), and a duplicate id
    (evaluate keeps the last of two predictions and counts a repeated reference twice). Unlike
    evaluate's generic `Metric.compute`, it does not require as many predictions as references.
    """
    answers_by_id = {
        ref["id"]: _answer_texts(ref["answers"], f"references[{i}]")
        for i, ref in _records(references, "references", ("id", "answers"))
    }
    if not answers_by_id:
        raise UserError("references is empty: there is nothing to score")
    prediction_by_id = {
        pred["id"]: _string(pred["prediction_text"], f"predictions[{i}].prediction_text")
        for i, pred in _records(predictions, "predictions", ("id", "prediction_text"))
    }
    return squad_scores(prediction_by_id, answers_by_id)


def _records(items: Iterable[Mapping[str, Any]], name: str, keys: tuple[str, ...]):
    """(index, record) for each record of `items`, checked: a dict with `keys` and a string id unique in `items`."""
    if isinstance(items, (str, bytes, Mapping)):
        raise UserError(
            f"{name} must be a list of dicts with keys {', '.join(keys)}, got {type(items).__name__}"
        )
    first_index: dict[str, int] = {}
    for i, record in enumerate(items):
        if not isinstance(record, Mapping):
            raise UserError(f"{name}[{i}] must be a dict with keys {', '.join(keys)}, got {type(record).__name__}")
        missing = [key for key in keys if key not in record]
        if missing:
            raise UserError(f"{name}[{i}] has no key {', '.join(map(repr, missing))}")
        question_id = _string(record["id"], f"{name}[{i}].id")
        if question_id in first_index:
            raise UserError(f"{name}[{i}] repeats the id {question_id!r} of {name}[{first_index[question_id]}]")
        first_index[question_id] = i
        yield i, record


def _answer_texts(answers: Any, where: str) -> list[str]:
    """The reference answer texts of a SQuAD `answers` dict, checked."""
    if not isinstance(answers, Mapping):
        raise UserError(f"{where}.answers must be a dict with keys text, answer_start, got {type(answers).__name__}")
    missing = [key for key in ("text", "answer_start") if key not in answers]
    if missing:
        raise UserError(f"{where}.answers has no key {', '.join(map(repr, missing))}")
    texts, starts = answers["text"], answers["answer_start"]
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise UserError(f"{where}.answers.text must be a list of strings, got {type(texts).__name__}")
    texts = [_string(text, f"{where}.answers.text[{j}]") for j, text in enumerate(texts)]
    if not texts:
        raise UserError(f"{where}.answers.text is empty: a SQuAD v1.1 question needs at least one answer")
    if isinstance(starts, (str, bytes)) or not isinstance(starts, Iterable) or len(list(starts)) != len(texts):
        raise UserError(f"{where}.answers.answer_start must be a list with one start per answer text ({len(texts)})")
    return texts


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{where} must be a string, got {type(value).__name__}")
    return value
