"""The official SQuAD v1.1 metric on hand-checked cases."""
import json
import os
import subprocess
import sys

import pytest
from helpers import make_examples

from squad_ft.errors import UserError
from squad_ft.metric import compute, exact_match, f1, normalize_answer, question_scores, squad_scores


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


# compute(): the call shape of evaluate.load("squad").compute(predictions=..., references=...)

def as_evaluate_inputs(predictions: dict[str, str], references: dict[str, list[str]]):
    """The official-script dicts as evaluate's squad records (answer_start made up: it is not scored)."""
    return (
        [{"id": qid, "prediction_text": text} for qid, text in predictions.items()],
        [
            {"id": qid, "answers": {"text": texts, "answer_start": [7] * len(texts)}}
            for qid, texts in references.items()
        ],
    )


def test_compute_on_evaluates_docstring_example():
    predictions = [{"prediction_text": "1976", "id": "56e10a3be3433e1400422b22"}]
    references = [{"answers": {"answer_start": [97], "text": ["1976"]}, "id": "56e10a3be3433e1400422b22"}]
    assert compute(predictions=predictions, references=references) == {"exact_match": 100.0, "f1": 100.0}


def test_compute_by_hand():
    predictions = [
        {"id": "q3", "prediction_text": "2016"},                # P 1, R 1/3 -> F1 0.5; EM 0 (order of ids is free)
        {"id": "q1", "prediction_text": "the denver broncos"},  # EM 1, F1 1
        {"id": "q2", "prediction_text": "Santa Clara"},         # best reference: P 1, R 2/3 -> F1 0.8; EM 0
    ]
    references = [
        {"id": "q1", "answers": {"text": ["Denver Broncos", "The Denver Broncos"], "answer_start": [177, 177]}},
        {"id": "q2", "answers": {"text": ["Santa Clara, California", "Levi's Stadium"], "answer_start": [403, 355]}},
        {"id": "q3", "answers": {"text": ["February 7, 2016"], "answer_start": [334]}},
    ]
    scores = compute(predictions=predictions, references=references)
    assert set(scores) == {"exact_match", "f1"} and all(type(v) is float for v in scores.values())
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 0.8 + 0.5) / 3)


def test_compute_averages_over_references_like_evaluate():
    # q2 has no prediction: it scores 0 and still counts; "q9" is in no reference: ignored
    predictions = [{"id": "q1", "prediction_text": "Paris"}, {"id": "q9", "prediction_text": "Rome"}]
    references = [
        {"id": "q1", "answers": {"text": ["Paris"], "answer_start": [0]}},
        {"id": "q2", "answers": {"text": ["Rome"], "answer_start": [0]}},
    ]
    assert compute(predictions=predictions, references=references) == {"exact_match": 50.0, "f1": 50.0}
    assert compute(predictions=[], references=references) == {"exact_match": 0.0, "f1": 0.0}


def test_compute_does_not_score_answer_start():
    predictions, references = as_evaluate_inputs({"q": "red dog"}, {"q": ["big red dog", "dog"]})
    moved = [{**ref, "answers": {**ref["answers"], "answer_start": [0, 123]}} for ref in references]
    assert compute(predictions=predictions, references=references) == compute(predictions=predictions, references=moved)


def test_compute_equals_squad_scores_on_the_same_data():
    examples = make_examples(60)
    references = {ex["id"]: ex["answers"]["text"] for ex in examples}
    predictions = {}
    for k, ex in enumerate(examples):
        answer = ex["answers"]["text"][0]
        if k % 4 == 0:
            predictions[ex["id"]] = answer.upper() + "."          # exact after normalising
        elif k % 4 == 1:
            predictions[ex["id"]] = f"the city of {answer} today"  # partial overlap
        elif k % 4 == 2:
            predictions[ex["id"]] = "nowhere"                      # wrong
        # k % 4 == 3: unanswered
    predictions["not-a-question"] = "ignored"
    expected = squad_scores(predictions, references)
    assert 0 < expected["exact_match"] < expected["f1"] < 100
    preds, refs = as_evaluate_inputs(predictions, references)
    assert compute(predictions=preds, references=refs) == pytest.approx(expected)
    # evaluate-shaped records straight from flat SQuAD examples score the same
    flat = [{"id": ex["id"], "answers": ex["answers"]} for ex in examples]
    assert compute(predictions=preds, references=flat) == pytest.approx(expected)


def test_compute_takes_keyword_arguments_only():
    with pytest.raises(TypeError):
        compute([], [])  # noqa


GOOD_PRED = {"id": "q1", "prediction_text": "Paris"}
GOOD_REF = {"id": "q1", "answers": {"text": ["Paris"], "answer_start": [0]}}


@pytest.mark.parametrize("predictions, references, message", [
    ([{"id": "q1"}], [GOOD_REF], r"predictions\[0\] has no key 'prediction_text'"),
    ([{"prediction_text": "Paris"}], [GOOD_REF], r"predictions\[0\] has no key 'id'"),
    ([GOOD_PRED], [{"id": "q1"}], r"references\[0\] has no key 'answers'"),
    ([GOOD_PRED], [{"id": "q1", "answers": {"text": ["Paris"]}}],
     r"references\[0\]\.answers has no key 'answer_start'"),
    ([GOOD_PRED, {"id": "q1", "prediction_text": "Rome"}], [GOOD_REF],
     r"predictions\[1\] repeats the id 'q1' of predictions\[0\]"),
    ([GOOD_PRED], [GOOD_REF, GOOD_REF], r"references\[1\] repeats the id 'q1' of references\[0\]"),
    ([GOOD_PRED], [], r"references is empty"),
    ({"q1": "Paris"}, [GOOD_REF], r"predictions must be a list of dicts .* got dict"),
    (["Paris"], [GOOD_REF], r"predictions\[0\] must be a dict"),
    ([{"id": 1, "prediction_text": "Paris"}], [GOOD_REF], r"predictions\[0\]\.id must be a string, got int"),
    ([{"id": "q1", "prediction_text": None}], [GOOD_REF], r"predictions\[0\]\.prediction_text must be a string"),
    ([GOOD_PRED], [{"id": "q1", "answers": {"text": "Paris", "answer_start": [0]}}], r"answers\.text must be a list"),
    ([GOOD_PRED], [{"id": "q1", "answers": {"text": [], "answer_start": []}}], r"answers\.text is empty"),
    ([GOOD_PRED], [{"id": "q1", "answers": {"text": ["Paris"], "answer_start": []}}], r"one start per answer text"),
    ([GOOD_PRED], [{"id": "q1", "answers": ["Paris"]}], r"references\[0\]\.answers must be a dict"),
])
def test_compute_rejects_malformed_input_in_one_line(predictions, references, message):
    with pytest.raises(UserError, match=message) as err:
        compute(predictions=predictions, references=references)
    assert "\n" not in str(err.value)


def test_the_evaluate_module_loads_offline_and_scores_like_compute(tmp_path):
    """`evaluate.load("squad_ft/squad_v1")` with the Hub unreachable, on real predictions (the committed
    reference run's, seed 42, full fine-tuning and LoRA) of the real questions of the embedded sample:
    the same scores as `squad_ft.metric.compute`, and the module's description and features."""
    from helpers import ROOT, SAMPLE_SQUAD

    from squad_ft.data import load_examples

    examples = {example["id"]: example for example in load_examples(str(SAMPLE_SQUAD), None)}
    run = ROOT / "docs/reference-runs/ref-seed42/data/predictions/test"
    cases = []
    for mode in ("full", "lora"):
        answers = json.loads((run / f"{mode}.json").read_text())
        ids = [question_id for question_id in answers if question_id in examples]
        cases.append({"predictions": [{"id": i, "prediction_text": answers[i]} for i in ids],
                      "references": [{"id": i, "answers": examples[i]["answers"]} for i in ids]})
    assert all(len(case["references"]) > 300 for case in cases)
    script = (
        "import json, sys, evaluate\n"
        "metric = evaluate.load('squad_ft/squad_v1')\n"
        "cases = json.load(open(sys.argv[1]))\n"
        "print(json.dumps({'scores': [metric.compute(**case) for case in cases], 'description': metric.description,"
        " 'features': sorted(metric.features), 'citation': metric.citation}))\n")
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "cases.json")], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["scores"] == [compute(**case) for case in cases]
    assert 40 < loaded["scores"][0]["exact_match"] < loaded["scores"][0]["f1"] < 100  # a real model's scores
    assert "exact match and F1" in loaded["description"] and "Rajpurkar" in loaded["citation"]
    assert loaded["features"] == ["predictions", "references"]
