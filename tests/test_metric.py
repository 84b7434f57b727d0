"""The official SQuAD v1.1 metric on hand-checked cases."""
import pytest

from squad_ft.metric import exact_match, f1, normalize_answer, question_scores, squad_scores


@pytest.mark.parametrize("text, normalized", [
    ("The Denver Broncos", "denver broncos"),       # case and the article
    ("  an apple,  a day! ", "apple day"),           # articles, punctuation, whitespace
    ("the theory of the Atheists", "theory of atheists"),  # 'the' only as a whole word
    ("U.S.A.", "usa"),                               # punctuation removed, not replaced by spaces
    ("A", ""),
])
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match_ignores_case_punctuation_articles_and_whitespace():
    assert exact_match("the  Denver Broncos.", "Denver broncos") == 1.0
    assert exact_match("Denver", "Denver Broncos") == 0.0


def test_f1_by_hand():
    # prediction tokens: big red dog; reference tokens: red dog house -> overlap 2
    # precision 2/3, recall 2/3 -> F1 2/3
    assert f1("the big red dog", "red dog house") == pytest.approx(2 / 3)
    # repeated tokens count by multiplicity: overlap min(2,1) = 1; P = 1/2, R = 1 -> 2/3
    assert f1("dog dog", "dog") == pytest.approx(2 / 3)
    assert f1("cat", "dog") == 0.0
    assert f1("the", "a") == 0.0  # both normalise to nothing: no overlap, as in the official script


def test_scores_take_the_best_reference_and_average_in_percent():
    references = {
        "q1": ["Denver Broncos", "The Denver Broncos"],
        "q2": ["Santa Clara, California", "Levi's Stadium"],
        "q3": ["February 7, 2016"],
    }
    predictions = {
        "q1": "the denver broncos",     # EM 1, F1 1
        "q2": "Santa Clara",            # best reference: P 1, R 2/3 -> F1 0.8; EM 0
        "q3": "2016",                   # P 1, R 1/3 -> F1 0.5; EM 0
    }
    scores = squad_scores(predictions, references)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8 + 0.5) / 3)


def test_a_missing_prediction_scores_zero():
    scores = squad_scores({"q1": "yes"}, {"q1": ["yes"], "q2": ["no"]})
    assert scores == {"exact_match": 50.0, "f1": 50.0}


def test_question_scores_are_per_question_in_reference_order():
    references = {"a": ["Denver Broncos"], "b": ["Paris", "the city of Paris"], "c": ["four"]}
    predictions = {"b": "city of Paris", "a": "Broncos"}  # none for "c"
    scores = question_scores(predictions, references)
    assert scores["exact_match"] == [0.0, 1.0, 0.0]
    assert scores["f1"] == [pytest.approx(2 / 3), 1.0, 0.0]
    assert squad_scores(predictions, references)["f1"] == pytest.approx(100 * (2 / 3 + 1) / 3)
