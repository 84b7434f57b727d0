"""Turn start/end logits over features back into one answer string per example (n-best decoding)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm


def best_answers(
    examples, features, start_logits: np.ndarray, end_logits: np.ndarray, n_best: int, max_answer_length: int
) -> dict[str, dict]:
    """{example id: {"text", "score", "start", "end"}}: the highest-scoring valid span over all of
    an example's features, with its character offsets in the context.

    For each feature, the `n_best` start and end positions are paired; a span is valid when both
    ends are context tokens (offset not None), end >= start, and it is at most `max_answer_length`
    tokens long. Its score is start logit + end logit; the answer is the context's characters
    between the span's offsets. An example with no valid span gets the empty answer (score None).
    """
    features_of = defaultdict(list)
    for index, example_id in enumerate(features["example_id"]):
        features_of[example_id].append(index)
    offset_mappings = features["offset_mapping"]
    answers = {}
    for example in tqdm(examples, desc="Decoding answers", disable=len(examples) < 1000):
        best_score, best_span = -np.inf, None
        for index in features_of[example["id"]]:
            offsets = offset_mappings[index]
            starts, ends = start_logits[index], end_logits[index]
            for start in np.argsort(starts)[::-1][:n_best]:
                for end in np.argsort(ends)[::-1][:n_best]:
                    if start >= len(offsets) or end >= len(offsets):
                        continue  # padding beyond this feature's length
                    if offsets[start] is None or offsets[end] is None:
                        continue
                    if end < start or end - start + 1 > max_answer_length:
                        continue
                    score = starts[start] + ends[end]
                    if score > best_score:
                        best_score, best_span = score, (offsets[start][0], offsets[end][1])
        start_char, end_char = best_span or (0, 0)
        answers[example["id"]] = {
            "text": example["context"][start_char:end_char],
            "score": round(float(best_score), 4) if best_span else None,
            "start": start_char,
            "end": end_char,
        }
    return answers


def answer_texts(answers: dict[str, dict]) -> dict[str, str]:
    """The official prediction format: {question id: answer text}."""
    return {question_id: answer["text"] for question_id, answer in answers.items()}
