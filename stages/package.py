"""Stage package@{full,lora,lora-merged}: a Hub-ready model folder with its model card.

`full` and `lora` are the trained folders as they are (safetensors, config, tokenizer);
`lora-merged` is the LoRA adapter merged into its base model, a plain `transformers` folder
for users without `peft`. Each gets a README.md model card from this run's params and metrics,
and the window and decoding settings it was evaluated with (inference_settings.json), which
`squad_ft.predict` uses.
"""
import shutil

from squad_ft.card import model_card
from squad_ft.modeling import SETTINGS_FILE, check_model_folder, load_tokenizer, load_trained, settings_of
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, read_record, run_stage, stage_arguments, write_json


def main() -> None:
    paths = stage_arguments(__doc__.splitlines()[0], "trained", "training", "metrics", "heldout-metrics", "out",
                            variant=True)
    params = load_params()
    training = read_record(paths.training)
    evaluations = {name: {**training, **read_record(path)} for name, path in
                   (("test", paths.metrics), ("heldout", paths.heldout_metrics))}
    with atomic_output(paths.out) as out:
        if paths.variant == "lora-merged":
            load_trained(paths.trained).save_pretrained(str(out))
            load_tokenizer(str(paths.trained)).save_pretrained(str(out))
        else:
            check_model_folder(paths.trained)
            # not peft's own README.md: the card replaces it (and, hard-linked into DVC's cache, it is read-only)
            shutil.copytree(paths.trained, out, ignore=shutil.ignore_patterns("README.md"))
        write_json(out / SETTINGS_FILE, settings_of(params))  # what predict windows and decodes with
        (out / "README.md").write_text(model_card(paths.variant, params, evaluations))
    print(f"{paths.variant} -> {paths.out}")


if __name__ == "__main__":
    run_stage(main)
