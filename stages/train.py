"""Stage train_full / train_lora: `python -m stages.train {full,lora}`.

Both modes share one code path; they differ only in how the model is wrapped (LoRA adds
adapters) and in their own section of params.yaml, merged over the shared `train` section.
"""
import json

import datasets
from transformers import set_seed

from squad_ft.modeling import add_lora, load_pretrained, load_tokenizer
from squad_ft.stage import atomic_output, load_params, mode_argument, run_stage
from squad_ft.training import train


def main() -> None:
    mode = mode_argument("stages.train")
    params = load_params()
    hyper = {**params["train"], **params[mode]}
    features = datasets.load_from_disk("data/features")["train"]
    set_seed(params["train"]["seed"])  # before the QA head and LoRA weights are initialised
    tokenizer = load_tokenizer(str(params["model"]["name"]))
    model = load_pretrained(str(params["model"]["name"]))
    if mode == "lora":
        lora = params["lora"]
        model = add_lora(model, lora["r"], lora["alpha"], lora["dropout"], lora["target_modules"])
    with atomic_output(f"models/{mode}") as model_dir, atomic_output(f"dvclive/{mode}") as live_dir:
        summary = train(model, tokenizer, features, hyper, params["train"]["seed"], model_dir, live_dir)
        (model_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    run_stage(main)
