"""Stage train_full / train_lora: `python -m stages.train --mode {full,lora} ...`.

Both modes share one code path; they differ only in how the model is wrapped (LoRA adds
adapters) and in their own section of params.yaml, merged over the shared `train` section.
"""
import datasets
from transformers import set_seed

from squad_ft.modeling import add_lora, load_pretrained, load_tokenizer
from squad_ft.stage import atomic_output, load_params, run_stage, stage_arguments, write_json
from squad_ft.training import SUMMARY_FILE, train


def main() -> None:
    paths = stage_arguments(__doc__.splitlines()[0], "features", "model-dir", "live-dir", mode=True)
    params = load_params()
    hyper = {**params["train"], **params[paths.mode]}
    features = datasets.load_from_disk(str(paths.features))
    set_seed(params["train"]["seed"])  # before the QA head and LoRA weights are initialised
    tokenizer = load_tokenizer(str(params["model"]["name"]))
    model = load_pretrained(str(params["model"]["name"]))
    if paths.mode == "lora":
        lora = params["lora"]
        model = add_lora(model, lora["r"], lora["alpha"], lora["dropout"], lora["target_modules"])
    with atomic_output(paths.model_dir) as model_dir, atomic_output(paths.live_dir) as live_dir:
        summary = train(model, tokenizer, features, hyper, params["train"]["seed"], model_dir, live_dir)
        summary = {"mode": paths.mode, **summary}
        write_json(model_dir / SUMMARY_FILE, summary)
    print(summary)


if __name__ == "__main__":
    run_stage(main)
