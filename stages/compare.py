"""Stage compare@{lora,head}-{test,heldout}: a model minus full fine-tuning, question by question (paired bootstrap)."""
import json

from squad_ft.data import load_jsonl
from squad_ft.metric import question_scores
from squad_ft.params import load_params
from squad_ft.stage import run_stage, stage_arguments, write_record
from squad_ft.stats import paired_difference


def main() -> None:
    paths = stage_arguments(__doc__, "examples", "full", "compared", "out", mode=True, eval_set=True)
    settings = load_params()["bootstrap"]
    examples = load_jsonl(paths.examples)
    references = {example["id"]: example["answers"]["text"] for example in examples}
    full, compared = (question_scores(json.loads(path.read_text()), references) for path in (paths.full, paths.compared))
    comparison = {}
    for name in ("exact_match", "f1"):
        difference = paired_difference(full[name], compared[name], settings)
        comparison[f"{name}_difference"] = difference["difference"]
        comparison[f"{name}_difference_ci_low"], comparison[f"{name}_difference_ci_high"] = difference["interval"]
    details = {"mode": paths.mode, "eval_set": paths.eval_set, "questions": len(references)}
    write_record(paths.out, comparison, details)
    print(json.dumps({**comparison, **details}, indent=2))


if __name__ == "__main__":
    run_stage(main)
