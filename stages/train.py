"""Stage train@full / train@lora / train@head: `python -m stages.train --mode {full,lora,head} ...`.

Every mode shares one code path; they differ only in how the model is made ready (LoRA adds
adapters, head freezes the encoder) and in their own section of params.yaml, merged over the
shared `train` section. Every epoch ends with the validation set's EM and F1 (decoded as the evaluate
stage decodes); the model written is the epoch train.select chooses, and metrics/validation/MODE.json
holds its scores.
With train.nproc > 1 the stage runs itself under torchrun (DDP: gloo on CPU, NCCL on GPU).
"""
from pathlib import Path

import datasets
from transformers import set_seed

from squad_ft.data import load_jsonl
from squad_ft.device import is_main_process, world_size
from squad_ft.inference import Validation
from squad_ft.inputs import read_fingerprint
from squad_ft.memory import use_huge_pages
from squad_ft.modeling import build_model, load_tokenizer, record_base_model
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, relaunch_under_torchrun, run_stage, stage_arguments, write_record
from squad_ft.training import COSTS, run_key, train

CODE_DIRS = (Path("squad_ft"), Path("stages"))  # the code a checkpoint belongs to


def main() -> None:
    paths = stage_arguments(__doc__.splitlines()[0], "features", "validation", "inputs", "model-dir", "live-dir",
                            "checkpoints", "metrics", "validation-metrics", mode=True)
    use_huge_pages()  # before the model is loaded: PyTorch reads it at its first large allocation
    params = load_params()
    if params["train"]["nproc"] > 1 and world_size() == 1:
        relaunch_under_torchrun(params["train"]["nproc"])  # back here in each process, with WORLD_SIZE set
        return
    hyper = {**params["train"], **params[paths.mode]}
    inputs = {input_name: read_fingerprint(paths.inputs / f"{input_name}.json") for input_name in ("data", "model")}
    features = datasets.load_from_disk(str(paths.features))
    set_seed(params["train"]["seed"])  # before the QA head and LoRA weights are initialised
    name, revision = str(params["model"]["name"]), params["model"]["revision"]
    tokenizer = load_tokenizer(name, revision)
    model = build_model(name, paths.mode, params["train"]["attention_dropout"], params["lora"], revision)
    validation = Validation(load_jsonl(paths.validation), tokenizer, params["model"], params["evaluate"])
    print(f"{name}: pre-trained encoder, new span-prediction head (trained from scratch)")
    # keyed by the run's params, inputs, features and code: a checkpoint of other settings is never resumed
    key = run_key(paths.mode, params, inputs, (paths.features, paths.validation), CODE_DIRS)
    checkpoints = paths.checkpoints / f"{paths.mode}-{key}"
    if not is_main_process():  # under torchrun: train along, write nothing
        train(model, tokenizer, features, hyper, params["train"]["seed"], None, None, checkpoints, validation)
        return
    with atomic_output(paths.model_dir) as model_dir, atomic_output(paths.live_dir) as live_dir:
        summary = train(model, tokenizer, features, hyper, params["train"]["seed"], model_dir, live_dir, checkpoints,
                        validation)
        if paths.mode == "lora":
            record_base_model(model_dir, name, revision)
    # after the model folder is in place: no training record without its model
    chosen = summary.pop("validation")
    details = {"mode": paths.mode, **{key: value for key, value in summary.items() if key not in COSTS}, "inputs": inputs}
    write_record(paths.metrics, {key: summary[key] for key in COSTS}, details)
    write_record(paths.validation_metrics, {key: value for key, value in chosen.items() if key != "per_epoch"},
                 {"mode": paths.mode, "eval_set": "validation", "validation_examples": len(validation.examples),
                  "select": hyper["select"], "patience": hyper["patience"], "per_epoch": chosen["per_epoch"]})
    print(summary)


if __name__ == "__main__":
    run_stage(main)
