"""Stage evaluate@full / evaluate@lora: predictions in the official format and SQuAD v1.1 scores."""
import json
from pathlib import Path

import datasets

from squad_ft.data import load_jsonl
from squad_ft.metric import squad_scores
from squad_ft.modeling import load_tokenizer, load_trained
from squad_ft.postprocess import best_answers
from squad_ft.stage import atomic_output, load_params, mode_argument, run_stage
from squad_ft.training import predict_logits


def main() -> None:
    mode = mode_argument("stages.evaluate")
    params = load_params()
    settings = params["evaluate"]
    examples = load_jsonl("data/split/test.jsonl")
    features = datasets.load_from_disk("data/features")["test"]
    model_dir = f"models/{mode}"
    start_logits, end_logits = predict_logits(
        load_trained(model_dir), load_tokenizer(model_dir), features, settings["batch_size"]
    )
    predictions = best_answers(
        examples, features, start_logits, end_logits, settings["n_best"], settings["max_answer_length"]
    )
    references = {example["id"]: example["answers"]["text"] for example in examples}
    metrics = {
        **json.loads(Path(model_dir, "train_summary.json").read_text()),
        **{name: round(value, 2) for name, value in squad_scores(predictions, references).items()},
        "test_examples": len(examples),
    }
    with atomic_output(f"data/predictions/{mode}.json") as out:
        out.write_text(json.dumps(predictions, indent=1, ensure_ascii=False) + "\n")
    with atomic_output(f"metrics/{mode}.json") as out:
        out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    run_stage(main)
