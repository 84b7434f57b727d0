"""Stage evaluate@{full,lora}-{test,heldout}: predictions in the official format, SQuAD v1.1 scores.

The scores carry bootstrap confidence intervals; the details record how many of the
evaluated questions share their paragraph or article with the training split.
"""
import json

from squad_ft.data import load_jsonl, overlap_with
from squad_ft.device import device_and_precision
from squad_ft.features import count_long_questions
from squad_ft.inference import answer_questions, load_model
from squad_ft.metric import question_scores
from squad_ft.postprocess import answer_texts
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments, write_record
from squad_ft.stats import scores_with_intervals


def main() -> None:
    paths = stage_arguments(__doc__.splitlines()[0], "model", "examples", "train", "predictions", "metrics",
                            mode=True, eval_set=True)
    params = load_params()
    eval_set = paths.eval_set
    examples = load_jsonl(paths.examples)
    model, tokenizer = load_model(paths.model)
    answers = answer_questions(model, tokenizer, examples, params["model"], params["evaluate"], params["train"]["precision"])
    predictions = answer_texts(answers)
    references = {example["id"]: example["answers"]["text"] for example in examples}
    overlap = overlap_with(examples, load_jsonl(paths.train))
    scores = scores_with_intervals(question_scores(predictions, references), params["bootstrap"])
    details = {
        "mode": paths.mode,
        "eval_set": eval_set,
        f"{eval_set}_examples": len(examples),
        "eval_precision": device_and_precision(params["train"]["precision"])[1],
        "questions_cut": count_long_questions(examples, tokenizer, params["model"]["max_question_length"]),
        **{f"{eval_set}_{name}": value for name, value in overlap.items()},
    }
    with atomic_output(paths.predictions) as out:
        out.write_text(json.dumps(predictions, indent=1, ensure_ascii=False) + "\n")
    write_record(paths.metrics, scores, details)
    print(json.dumps({**scores, **details}, indent=2))


if __name__ == "__main__":
    run_stage(main)
