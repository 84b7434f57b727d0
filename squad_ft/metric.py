"""The official SQuAD v1.1 exact match and F1, computed offline.

A faithful copy of the definitions in the official `evaluate-v1.1.py`: answers are normalised
(lower case, punctuation and the articles a/an/the removed, whitespace collapsed); each
prediction takes its best score over the reference answers; scores are averaged over all
questions and given in percent. A question with no prediction scores 0.
"""
from __future__ import annotations

import re
import string
from collections import Counter

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
