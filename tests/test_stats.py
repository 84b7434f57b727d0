"""Bootstrap intervals: they cover the score, shrink with more questions, and pair questions."""
import numpy as np
import pytest

from squad_ft.stats import interval, paired_difference, scores_with_intervals

SETTINGS = {"resamples": 2000, "seed": 0, "confidence": 0.95}


def test_interval_matches_the_normal_approximation_for_a_proportion():
    scores = [1.0] * 50 + [0.0] * 150  # 25% exact match on 200 questions
    low, high = interval(scores, SETTINGS)
    half_width = 1.96 * 100 * (0.25 * 0.75 / 200) ** 0.5  # 6.0 points
    assert low < 25 < high
    assert high - low == pytest.approx(2 * half_width, rel=0.1)


def test_interval_is_reproducible_and_narrows_with_more_questions():
    scores = [1.0, 0.0, 0.5, 0.0] * 50
    assert interval(scores, SETTINGS) == interval(scores, SETTINGS)
    wide, narrow = interval(scores, SETTINGS), interval(scores * 16, SETTINGS)
    assert narrow[1] - narrow[0] == pytest.approx((wide[1] - wide[0]) / 4, rel=0.15)


def test_all_equal_scores_have_a_point_interval():
    assert interval([1.0] * 30, SETTINGS) == [100.0, 100.0]


def test_paired_difference_cancels_what_both_models_share():
    rng = np.random.default_rng(1)
    hard = rng.random(400) < 0.5  # the questions both models get wrong
    full = np.where(hard, 0.0, 1.0)
    lora = full.copy()
    lora[np.flatnonzero(~hard)[:20]] = 0.0  # LoRA misses 20 more questions: -5 points
    paired = paired_difference(full, lora, SETTINGS)
    assert paired["difference"] == -5.0
    low, high = paired["interval"]
    assert high < 0  # a real difference, detected
    widths = [interval(scores, SETTINGS)[1] - interval(scores, SETTINGS)[0] for scores in (full, lora)]
    assert high - low < min(widths) / 2  # much tighter than either single-model interval


def test_identical_models_differ_by_exactly_zero():
    scores = [1.0, 0.0, 0.3] * 20
    assert paired_difference(scores, scores, SETTINGS) == {"difference": 0.0, "interval": [0.0, 0.0]}


def test_scores_with_intervals_in_percent():
    summary = scores_with_intervals({"exact_match": [1.0, 0.0, 0.0, 1.0], "f1": [1.0, 0.5, 0.0, 1.0]}, SETTINGS)
    assert summary["exact_match"] == 50.0 and summary["f1"] == 62.5
    assert 0 <= summary["f1_ci"][0] <= 62.5 <= summary["f1_ci"][1] <= 100
    assert 0 <= summary["exact_match_ci"][0] <= 50.0 <= summary["exact_match_ci"][1] <= 100
