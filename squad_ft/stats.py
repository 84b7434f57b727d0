"""Confidence intervals: over questions for one run (a percentile bootstrap), over seeds and questions
for several runs pooled (Student's t).

One run: resample the questions with replacement `resamples` times, take the score of each resample,
and report the central `confidence` range of those scores. The paired version resamples the same
questions for both models, so that the difference is measured question by question and the noise they
share cancels. Several seeds: `seeds_and_questions_interval`.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm as normal, t as student_t

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


def _seeds_by_questions(per_seed: list) -> np.ndarray:
    values = np.asarray(per_seed, dtype=float)  # seeds x questions
    if values.ndim != 2:
        raise UserError("every seed must be scored on the same questions")
    return values


def seeds_and_questions_interval(per_seed: list, settings: dict) -> list[float]:
    """[low, high] interval, in percent, of the expected mean of per-question `values` (one row per seed, all
    on the same questions) over both training seeds and questions, for two seeds or more.

    The mean over S seeds and N questions of y[s, q] = mu + a[s] + b[q] + e[s, q] errs by the seeds drawn
    (a), the questions drawn (b, the same for every seed) and their interaction (e). Two parts, each with its
    own critical value: the seeds' part, var(seed means) / S (a and e), has S - 1 degrees of freedom, so
    Student's t with S - 1; the questions' part net of the interaction, var(question means) / N minus the
    residual mean square / (S N), has N - 1, so the normal. The half-width is the root of their scaled sum:
    t's interval where the seeds' spread dominates, the normal's where the questions' does, and on the safe
    side between (tests/test_stats.py measures its coverage). A percentile bootstrap over S seeds cannot
    do this: resampling with replacement recovers (S - 1) / S of the seeds' variance and has few distinct
    draws (10 at S = 3), so at few seeds its interval is far too narrow.
    """
    values = _seeds_by_questions(per_seed)
    seeds, questions = values.shape
    if seeds < 2:
        raise UserError("an interval over seeds needs two seeds or more")
    seed_means, question_means = values.mean(axis=1), values.mean(axis=0)
    seeds_part = seed_means.var(ddof=1) / seeds
    questions_part = 0.0
    if questions > 1:
        residuals = values - seed_means[:, None] - question_means[None, :] + values.mean()
        interaction = (residuals ** 2).sum() / ((seeds - 1) * (questions - 1)) / (seeds * questions)
        questions_part = max(question_means.var(ddof=1) / questions - interaction, 0.0)
    tail = (1 + settings["confidence"]) / 2
    half = np.sqrt(student_t.ppf(tail, seeds - 1) ** 2 * seeds_part + normal.ppf(tail) ** 2 * questions_part)
    return [round(100 * float(values.mean() - half), 2), round(100 * float(values.mean() + half), 2)]


def pooled_over_seeds(per_seed: list[np.ndarray], settings: dict) -> dict:
    """The mean over seeds of per-question `values` (0-1; one array per seed), in percent, with its interval
    (`seeds_and_questions_interval`); with one seed, the questions' bootstrap interval alone (`seeds`: 1 says so)."""
    values = _seeds_by_questions(per_seed)
    interval_ = seeds_and_questions_interval(values, settings) if len(values) > 1 else interval(values[0], settings)
    return {"mean": round(100 * float(values.mean()), 2), "interval": interval_, "seeds": len(values)}


def pooled_difference(per_seed_first: list, per_seed_second: list, settings: dict) -> dict:
    """`second` minus `first`, pooled over seeds: per seed paired on the same questions (each seed's
    `paired_difference`), pooled as the mean over seeds, with its interval over seeds and questions
    (`pooled_over_seeds` of the per-question differences)."""
    differences = []
    for first, second in zip(per_seed_first, per_seed_second, strict=True):
        first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
        if first.shape != second.shape:
            raise UserError("a paired comparison needs the same questions for both models")
        differences.append(second - first)
    pooled = pooled_over_seeds(differences, settings)
    return {"difference": pooled["mean"], "interval": pooled["interval"], "seeds": pooled["seeds"],
            "per_seed": [paired_difference(first, second, settings)
                         for first, second in zip(per_seed_first, per_seed_second)]}
