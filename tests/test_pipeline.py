"""The real DVC pipeline end to end, in a temporary git repository, on a tiny model and data.

Checks what users rely on: `dvc repro` runs every stage once and then nothing; changing a LoRA
parameter re-runs only the LoRA branch and the report; `dvc metrics diff` shows only LoRA moved.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_examples, tiny_params, write_jsonl, write_project

ALL_STAGES = {"subset", "split", "tokenize", "train_full", "train_lora", "evaluate@full", "evaluate@lora", "report"}
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` in dvc.yaml
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost",
}


def run(repo: Path, *command: str) -> str:
    result = subprocess.run(command, cwd=repo, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("pipeline")
    source = write_jsonl(make_examples(40), root / "squad.jsonl")
    (root / "repo").mkdir()
    repo = write_project(root / "repo", **tiny_params(source, tiny_model_dir))
    run(repo, "git", "init", "-q")
    run(repo, "dvc", "init", "-q")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "pipeline")
    return repo, run(repo, "dvc", "repro")


def test_repro_runs_every_stage_and_writes_the_outputs(repo):
    repo, first_run = repo
    assert stages_run(first_run) == ALL_STAGES
    test_ids = {json.loads(line)["id"] for line in (repo / "data/split/test.jsonl").read_text().splitlines()}
    assert len(test_ids) == 8
    for mode in ("full", "lora"):
        metrics = json.loads((repo / f"metrics/{mode}.json").read_text())
        for key in ("exact_match", "f1", "trainable_params", "total_params", "train_runtime_s", "peak_memory_mb",
                    "initial_loss", "final_loss", "device"):
            assert key in metrics, key
        assert 0 <= metrics["exact_match"] <= metrics["f1"] <= 100
        assert set(json.loads((repo / f"data/predictions/{mode}.json").read_text())) == test_ids
        assert (repo / f"dvclive/{mode}/plots/metrics/loss.tsv").exists()
    full, lora = (json.loads((repo / f"metrics/{m}.json").read_text()) for m in ("full", "lora"))
    assert full["trainable_params"] == full["total_params"]
    assert 66 < lora["trainable_params"] < full["trainable_params"]  # adapters + head, not the head alone
    assert "| Trained params |" in (repo / "metrics/report.md").read_text()
    assert (repo / "metrics/loss.png").read_bytes()[:4] == b"\x89PNG"


def test_second_repro_does_nothing_and_lora_change_reruns_only_lora(repo):
    repo, _ = repo
    output = run(repo, "dvc", "repro")
    assert stages_run(output) == set()
    assert "up to date" in output

    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "first run")
    output = run(repo, "dvc", "exp", "run", "-S", "lora.r=8")
    assert stages_run(output) == {"train_lora", "evaluate@lora", "report"}

    diff = json.loads(run(repo, "dvc", "metrics", "diff", "--json"))
    assert set(diff) == {"metrics/lora.json"}  # the full model's metrics did not move
    trainable = diff["metrics/lora.json"]["trainable_params"]
    assert trainable["new"] == 2 * (trainable["old"] - 66) + 66  # rank 4 -> 8 doubles the adapters
