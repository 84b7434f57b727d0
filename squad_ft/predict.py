"""Ask a trained model questions: one question, or a whole file.

    python -m squad_ft.predict --model models/lora --question "..." --context "..."
    python -m squad_ft.predict --model models/full --input questions.json --output predictions.json

The model folder is one the pipeline wrote (`models/full`, `models/lora`, or a copy of one).
Answers come through the same inference path as the `evaluate` stage, with the window and
decoding settings the folder was evaluated with (its inference_settings.json); a flag
overrides one. A folder without that file (a training output) needs every setting as a flag. `--input` takes the formats of `data.source`
(nested SQuAD v1.1 JSON, JSON Lines, Parquet); answers are optional, and when every question
has them the predictions are scored (official SQuAD v1.1 exact match and F1).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import datasets

from squad_ft.data import read_questions
from squad_ft.errors import UserError
from squad_ft.features import count_long_questions
from squad_ft.inference import answer_questions, load_model
from squad_ft.metric import squad_scores
from squad_ft.modeling import SETTINGS_FILE, check_model_folder, recorded_settings
from squad_ft.params import DECODING, PRECISIONS, WINDOW, check_section, check_window
from squad_ft.postprocess import answer_texts
from squad_ft.stage import atomic_output, run_stage, write_json


def _flag(name: str) -> str:
    return name.replace("_", "-")


def settings(args) -> tuple[dict, dict, str]:
    """(window, decoding, precision): the model folder's recorded settings, each overridden by its flag if given."""
    recorded = recorded_settings(args.model)
    chosen = {}
    for group, names in (("window", WINDOW), ("decoding", DECODING)):
        given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
        chosen[group] = {**recorded[group], **given}
    missing = [f"--{_flag(name)}" for group, names in (("window", WINDOW), ("decoding", DECODING))
               for name in names if name not in chosen[group]]
    if missing:
        raise UserError(f"--model: {args.model} records no {SETTINGS_FILE} (it is not a packaged folder under "
                        f"models/): give {' '.join(missing)}")
    check_section("evaluate", dict(chosen["decoding"]), "predict settings")
    return chosen["window"], chosen["decoding"], args.precision or recorded.get("precision", "auto")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="a model folder written by the pipeline")
    parser.add_argument("--base-model", help="for a LoRA folder: the base model, if not the one it records")
    parser.add_argument("--question", help="one question (with --context)")
    parser.add_argument("--context", help="the text to find its answer in")
    parser.add_argument("--input", help="a file of questions (with --output)")
    parser.add_argument("--output", type=Path, help="where to write {question id: answer} (the official format)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="what to compute in, as train.precision (default: the folder's, else auto: bf16 where the "
                             "hardware computes it natively)")
    for name in (*WINDOW, *DECODING):
        parser.add_argument(f"--{_flag(name)}", type=int, help=f"default: the folder's {SETTINGS_FILE}")
    args = parser.parse_args()
    if bool(args.question) != bool(args.context) or bool(args.input) != bool(args.output):
        parser.error("give --question with --context, or --input with --output")
    if bool(args.question) == bool(args.input):
        parser.error("give either one question (--question, --context) or a file (--input, --output)")
    return args


def main() -> None:
    args = arguments()
    if not (args.model / "config.json").exists() and not (args.model / "adapter_config.json").exists():
        raise UserError(f"--model: {args.model} is not a model folder written by the pipeline")
    check_model_folder(args.model)
    window, decoding, precision = settings(args)
    model, tokenizer = load_model(args.model, args.base_model)
    check_window(window, tokenizer, "predict settings")
    print("window: " + ", ".join(f"{name} {value}" for name, value in window.items()) + "; decoding: "
          + ", ".join(f"{name} {value}" for name, value in decoding.items()) + f"; precision {precision}", file=sys.stderr)
    if args.question:
        examples = datasets.Dataset.from_list([{"id": "question", "context": args.context, "question": args.question}])
    else:
        examples = read_questions(args.input)
    cut = count_long_questions(examples, tokenizer, window["max_question_length"])
    if cut:
        print(f"{cut} question(s) longer than {window['max_question_length']} tokens, cut to that "
              "(--max-question-length)", file=sys.stderr)
    answers = answer_questions(model, tokenizer, examples, window, decoding, precision)
    if args.question:
        print(json.dumps(answers["question"], ensure_ascii=False))
        return
    with atomic_output(args.output) as out:
        write_json(out, answer_texts(answers))
    print(f"{len(answers)} answers -> {args.output}")
    if all(example["answers"]["text"] for example in examples):
        references = {example["id"]: example["answers"]["text"] for example in examples}
        scores = squad_scores(answer_texts(answers), references)
        print(json.dumps({name: round(value, 2) for name, value in scores.items()}))


if __name__ == "__main__":
    run_stage(main)
