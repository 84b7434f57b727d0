"""Helpers for the tests: synthetic SQuAD data, a copy of the pipeline, running stage scripts."""
from __future__ import annotations

import json
import os
import random
import re
import shlex
import subprocess
import sys
from itertools import product
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_SQUAD = ROOT.parent / "shared" / "data" / "squad" / "train-v1.1-first50-articles.json"
SAMPLE_SQUAD = ROOT / "data" / "sample" / "squad-v1.1-train-first10-articles.json"  # shipped: always there
PROJECT_FILES = ("dvc.yaml", "params.yaml", "stages", "squad_ft", "benchmarks/results")  # what dvc.yaml reads

CITIES = ["paris", "rome", "berlin", "madrid", "lisbon", "vienna", "prague", "warsaw", "oslo", "dublin"]
COUNTRIES = ["france", "italy", "germany", "spain", "portugal", "austria", "czechia", "poland", "norway", "ireland"]
FILLER = "it is a large country with many rivers , hills and old towns where people live and work ."
UNSEEN_FILLER = "its coast is long and its winters are cold , so many people travel south in the summer ."


def make_examples(n: int, seed: int = 0, unseen: bool = False) -> list[dict]:
    """`n` flat SQuAD examples about capitals: easy to learn, with exact answer offsets.

    `unseen`: the same questions about other articles ("... (travel)", with other paragraphs
    and ids), which share neither article nor paragraph with the default examples.
    """
    rng = random.Random(seed)
    filler, suffix, prefix_id = (UNSEEN_FILLER, " (travel)", "h") if unseen else (FILLER, "", "q")
    examples = []
    for i in range(n):
        k = rng.randrange(len(CITIES))
        prefix = f"{COUNTRIES[k].title()} is in europe . {filler} "
        context = f"{prefix}the capital of {COUNTRIES[k]} is {CITIES[k]} . {filler}"
        start = context.index(f" is {CITIES[k]} .") + len(" is ")
        examples.append({
            "id": f"{prefix_id}{i:04d}",
            "title": COUNTRIES[k].title() + suffix,
            "context": context,
            "question": f"What is the capital of {COUNTRIES[k]}?",
            "answers": {"text": [CITIES[k]], "answer_start": [start]},
        })
    return examples


def to_nested(examples: list[dict]) -> dict:
    """The same examples as nested SQuAD v1.1 JSON, one article and paragraph per example."""
    return {"version": "1.1", "data": [
        {"title": ex["title"], "paragraphs": [{"context": ex["context"], "qas": [{
            "id": ex["id"], "question": ex["question"],
            "answers": [{"text": t, "answer_start": s}
                        for t, s in zip(ex["answers"]["text"], ex["answers"]["answer_start"])],
        }]}]} for ex in examples
    ]}


def write_jsonl(examples: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(ex) + "\n" for ex in examples))
    return path


def write_project(directory: Path, **overrides: dict) -> Path:
    """Copy the pipeline into `directory` with params.yaml sections updated by `overrides`."""
    for name in PROJECT_FILES:
        source = ROOT / name
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            subprocess.run(["cp", "-r", str(source), str(directory / name)], check=True)
        else:
            (directory / name).write_bytes(source.read_bytes())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return directory


def _items(definition: dict) -> dict[str, object]:
    """{key: item} of a foreach or matrix stage, keyed as DVC names its stages (`train@full`, `evaluate@full-test`)."""
    if "matrix" in definition:
        names, values = zip(*definition["matrix"].items())
        return {"-".join(map(str, combination)): dict(zip(names, combination)) for combination in product(*values)}
    items = definition["foreach"]
    return items if isinstance(items, dict) else {item: item for item in items}


def stage_command(project: Path, stage: str) -> list[str]:
    """The command of `stage` (e.g. "train@lora", "evaluate@full-test") as the project's dvc.yaml defines it."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    name, _, key = stage.partition("@")
    definition = stages[name]
    cmd = definition.get("do", definition)["cmd"]
    if key:
        item = _items(definition)[key]
        cmd = cmd.replace("${key}", key)
        cmd = re.sub(r"\$\{item(?:\.(\w+))?\}", lambda m: str(item[m.group(1)] if m.group(1) else item), cmd)
    return shlex.split(cmd)


ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` in dvc.yaml
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost",
}


def run(repo: Path, *command: str, env: dict | None = None) -> str:
    result = subprocess.run(command, cwd=repo, env={**ENV, **(env or {})}, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def init_repo(directory: Path, run) -> None:
    """Make `directory` a git repository and a DVC project with this project's DVC config (its cache
    type), and commit what it holds; `run(directory, *command)` runs each command."""
    for command in (("git", "init", "-q"), ("dvc", "init", "-q")):
        run(directory, *command)
    (directory / ".dvc" / "config").write_bytes((ROOT / ".dvc" / "config").read_bytes())
    for command in (("git", "add", "-A"), ("git", "commit", "-qm", "pipeline")):
        run(directory, *command)


def run_stage(stage: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one stage's command as DVC would, from the project directory `cwd`, without DVC."""
    command = stage_command(cwd, stage)
    assert command[0] == "python", command
    return subprocess.run(
        [sys.executable, *command[1:]], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})},
    )


def tiny_params(source: Path, model_dir: Path, n_examples: int = 40, heldout: Path | None = None) -> dict:
    """params.yaml overrides for a pipeline run on synthetic data and the tiny model, in seconds.

    `heldout` defaults to `source` itself (its examples beyond the training split's articles).
    """
    return {
        "data": {"source": str(source), "n_examples": n_examples},
        "heldout": {"source": str(heldout or source), "n_examples": None},
        "validation": {"n_examples": 8},
        "bootstrap": {"resamples": 200},
        "model": {"name": str(model_dir), "max_length": 64, "doc_stride": 16, "max_question_length": 16},
        "train": {"batch_size": 8, "logging_steps": 2, "precision": "fp32"},  # tolerances are fp32's, on any CPU
        "full": {"epochs": 2, "learning_rate": 1e-3},
        "lora": {"epochs": 2, "learning_rate": 1e-2, "r": 4, "alpha": 8},
        "head": {"epochs": 2, "learning_rate": 1e-2},
        "evaluate": {"batch_size": 16},
    }


def assert_clean_failure(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def set_params(project, section, **values):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def tiny_distilbert(**config):
    """A 2-layer DistilBERT QA model, seeded; `config` overrides its settings (e.g. dropouts)."""
    import torch
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering

    torch.manual_seed(0)
    return DistilBertForQuestionAnswering(DistilBertConfig(
        vocab_size=50, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, **config))


def tiny_bert(**config):
    """A 2-layer BERT QA model, seeded; `config` overrides its settings (e.g. dropouts)."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    return BertForQuestionAnswering(BertConfig(**{
        "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64, **config}))
