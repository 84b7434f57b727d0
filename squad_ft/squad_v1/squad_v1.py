"""squad-ft's SQuAD v1.1 metric as a Hugging Face `evaluate` module, loaded from this folder: no Hub.

    import evaluate
    squad = evaluate.load("squad_ft/squad_v1")  # a local path (from the project's root): works offline
    squad.compute(predictions=[{"id": "q1", "prediction_text": "Denver Broncos"}],
                  references=[{"id": "q1", "answers": {"text": ["Denver Broncos"], "answer_start": [177]}}])
    # {'exact_match': 100.0, 'f1': 100.0}

The same call shape and scores as the Hub's `evaluate.load("squad")`, and the same code as the pipeline:
it calls `squad_ft.metric.compute` (the official evaluate-v1.1.py definitions), so `squad_ft` must be
importable (run from the project's root, or put it on PYTHONPATH).
"""
import datasets
import evaluate

from squad_ft.metric import compute

CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing",
    year = "2016",
    pages = "2383--2392",
}
"""
DESCRIPTION = """\
The official SQuAD v1.1 exact match and F1 (evaluate-v1.1.py), in percent: answers normalised (lower case,
punctuation and the articles a/an/the removed, whitespace collapsed), each prediction scored against its best
reference answer, averaged over the references; a reference without a prediction scores 0.
"""
INPUTS = """\
Args:
    predictions: a list of {"id": str, "prediction_text": str}.
    references: a list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}.
Returns:
    {"exact_match": float, "f1": float}, each 0-100.
"""


@evaluate.utils.file_utils.add_start_docstrings(DESCRIPTION, INPUTS)
class SquadV1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=DESCRIPTION,
            citation=CITATION,
            inputs_description=INPUTS,
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {"id": datasets.Value("string"), "answers": datasets.Sequence(
                    {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")})},
            }),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references):
        return compute(predictions=predictions, references=references)
