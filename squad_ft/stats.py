"""Bootstrap confidence intervals over questions, for one model and for a paired difference.

Percentile bootstrap: resample the questions with replacement `resamples` times, take the
score of each resample, and report the central `confidence` range of those scores. The
paired version resamples the same questions for both models, so that the difference is
measured question by question and the noise they share cancels.
"""
from __future__ import annotations

import numpy as np

from squad_ft.errors import UserError

CHUNK = 1000  # resamples drawn at once: bounds memory at CHUNK x questions indices


def resampled_means(values: np.ndarray, settings: dict) -> np.ndarray:
    """The mean of `values` (questions on the last axis) over each bootstrap resample of the questions."""
    rng = np.random.default_rng(settings["seed"])
    n = values.shape[-1]
    means = []
    for start in range(0, settings["resamples"], CHUNK):
        indices = rng.integers(0, n, size=(min(CHUNK, settings["resamples"] - start), n))
        means.append(values[..., indices].mean(axis=-1))
    return np.concatenate(means, axis=-1)


def interval(values, settings: dict) -> list[float]:
    """[low, high] bootstrap interval of the mean of per-question `values` (0-1), in percent."""
    return _percentiles(resampled_means(np.asarray(values, dtype=float), settings), settings)


def paired_difference(first, second, settings: dict) -> dict:
    """Mean of `second` minus mean of `first` (percent) and its paired bootstrap interval."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape != second.shape:
        raise UserError("a paired comparison needs the same questions for both models")
    differences = resampled_means(second - first, settings)
    return {"difference": round(100 * float(second.mean() - first.mean()), 2),
            "interval": _percentiles(differences, settings)}


def _percentiles(means: np.ndarray, settings: dict) -> list[float]:
    tail = 100 * (1 - settings["confidence"]) / 2
    low, high = np.percentile(100 * means, [tail, 100 - tail])
    return [round(float(low), 2), round(float(high), 2)]


def scores_with_intervals(question_scores: dict[str, list[float]], settings: dict) -> dict:
    """Each score in percent, with its bootstrap interval's ends as `<name>_ci_low` and `<name>_ci_high`
    (numbers, not a list, so that `dvc metrics show` and `dvc metrics diff` show them)."""
    summary = {}
    for name, values in question_scores.items():
        summary[name] = round(100 * float(np.mean(values)), 2)
        summary[f"{name}_ci_low"], summary[f"{name}_ci_high"] = interval(values, settings)
    return summary


def interval_of(metrics: dict, key: str) -> list[float]:
    """[low, high] of `key`'s interval in a metrics file (`<key>_ci_low`, `<key>_ci_high`)."""
    return [metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]]


def seeds_and_questions_means(per_seed: list[np.ndarray], settings: dict) -> np.ndarray:
    """Two-level bootstrap of a mean over seeds, all scored on the same questions: each resample draws
    as many seeds as there are, with replacement, and the questions, with replacement, the same
    draw for every seed (they answered the same questions: a seed does not bring new ones); its
    value is the mean of the drawn seeds' scores on the drawn questions. The seed's variance and
    the questions' both widen the spread, as both move a score."""
    values = np.asarray(per_seed, dtype=float)  # seeds x questions
    if values.ndim != 2:
        raise UserError("every seed must be scored on the same questions")
    rng = np.random.default_rng(settings["seed"])
    seeds, questions = values.shape
    means = []
    for start in range(0, settings["resamples"], CHUNK):
        count = min(CHUNK, settings["resamples"] - start)
        drawn_seeds, drawn_questions = rng.integers(0, seeds, (count, seeds)), rng.integers(0, questions, (count, questions))
        total = np.zeros(count)
        for position in range(seeds):
            total += np.take_along_axis(values[drawn_seeds[:, position]], drawn_questions, axis=1).mean(axis=1)
        means.append(total / seeds)
    return np.concatenate(means)


def pooled_over_seeds(per_seed: list[np.ndarray], settings: dict) -> dict:
    """The mean over seeds of per-question `values` (0-1; one array per seed), in percent, with its
    interval from `seeds_and_questions_means`."""
    mean = np.mean([np.mean(values) for values in per_seed])
    return {"mean": round(100 * float(mean), 2),
            "interval": _percentiles(seeds_and_questions_means(per_seed, settings), settings)}


def pooled_difference(per_seed_first: list, per_seed_second: list, settings: dict) -> dict:
    """`second` minus `first`, pooled over seeds: per seed paired on the same questions (each seed's
    `paired_difference`), pooled as the mean over seeds, with a two-level bootstrap interval
    (seeds, then questions within each; `seeds_and_questions_means`)."""
    differences = []
    for first, second in zip(per_seed_first, per_seed_second, strict=True):
        first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
        if first.shape != second.shape:
            raise UserError("a paired comparison needs the same questions for both models")
        differences.append(second - first)
    pooled = pooled_over_seeds(differences, settings)
    return {"difference": pooled["mean"], "interval": pooled["interval"],
            "per_seed": [paired_difference(first, second, settings)
                         for first, second in zip(per_seed_first, per_seed_second)]}
