"""The real DVC pipeline end to end, in a temporary git repository, on a tiny model and data.

Checks what users rely on: `dvc repro` runs every stage once and then nothing; changing a LoRA
parameter re-runs only the LoRA branch and the report; `dvc metrics diff` shows only LoRA moved.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import yaml
from helpers import make_examples, tiny_params, write_jsonl, write_project

EVALUATIONS = {f"evaluate@{mode}-{eval_set}" for mode in ("full", "lora") for eval_set in ("test", "heldout")}
PACKAGES = {"package@full", "package@lora", "package@lora-merged"}
COMPARISONS = {"compare@test", "compare@heldout"}
ALL_STAGES = {"inputs", "subset", "split", "heldout", "tokenize", "train@full", "train@lora", *EVALUATIONS,
              *COMPARISONS, "report", *PACKAGES}
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


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("pipeline")
    # 40 training examples, then 30 from unseen articles; the held-out source is a copy of that file
    examples = make_examples(40) + make_examples(30, unseen=True)
    source, heldout = (write_jsonl(examples, root / name) for name in ("squad.jsonl", "heldout.jsonl"))
    model = shutil.copytree(tiny_model_dir, root / "model")  # its own copy: a test replaces its weights
    (root / "repo").mkdir()
    repo = write_project(root / "repo", **tiny_params(source, model, heldout=heldout))
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
    heldout_ids = {json.loads(line)["id"] for line in (repo / "data/heldout.jsonl").read_text().splitlines()}
    assert heldout_ids == {f"h{i:04d}" for i in range(30)}  # exactly the unseen articles
    data = json.loads((repo / "metrics/heldout/data.json").read_text())
    assert (data["candidates"], data["dropped_seen_article"], data["heldout_examples"]) == (70, 40, 30)
    for mode in ("full", "lora"):
        for eval_set, ids, prefix in (("test", test_ids, ""), ("heldout", heldout_ids, "heldout/")):
            metrics = json.loads((repo / f"metrics/{prefix}{mode}.json").read_text())
            for key in ("trainable_params", "total_params", "train_runtime_s", "train_features_per_s",
                        "model_memory_mb", "peak_memory_mb",
                        "initial_loss", "final_loss", "device"):
                assert key in metrics, key
            assert (metrics["mode"], metrics["eval_set"], metrics[f"{eval_set}_examples"]) == (mode, eval_set, len(ids))
            assert 0 <= metrics["exact_match"] <= metrics["f1"] <= 100
            for score in ("exact_match", "f1"):
                low, high = metrics[f"{score}_ci"]
                assert 0 <= low <= metrics[score] <= high <= 100
            assert set(json.loads((repo / f"data/predictions/{prefix}{mode}.json").read_text())) == ids
        assert (repo / f"dvclive/{mode}/plots/metrics/loss.tsv").exists()
        test_metrics = json.loads((repo / f"metrics/{mode}.json").read_text())
        assert test_metrics["test_paragraph_overlap"] == test_metrics["test_article_overlap"] == 1.0
        heldout_metrics = json.loads((repo / f"metrics/heldout/{mode}.json").read_text())
        assert heldout_metrics["heldout_paragraph_overlap"] == heldout_metrics["heldout_article_overlap"] == 0.0
    for prefix, n in (("", 8), ("heldout/", 30)):
        comparison = json.loads((repo / f"metrics/{prefix}lora_vs_full.json").read_text())
        assert comparison["questions"] == n
        low, high = comparison["f1_difference_ci"]
        assert low <= comparison["f1_difference"] <= high
    full, lora = (json.loads((repo / f"metrics/{m}.json").read_text()) for m in ("full", "lora"))
    assert full["trainable_params"] == full["total_params"]
    assert 66 < lora["trainable_params"] < full["trainable_params"]  # adapters + head, not the head alone
    report = (repo / "metrics/report.md").read_text()
    for row in ("| Trained params ", "| Test: F1 ", "| Held-out: exact match ", "| Held-out: questions "):
        assert row in report, row
    assert "Held-out F1, LoRA - full fine-tuning on the same 30 questions" in report
    assert (repo / "metrics/loss.png").read_bytes()[:4] == b"\x89PNG"


def predict(*args: str, cwd: Path, code: Path) -> str:
    """`python -m squad_ft.predict ...` from `cwd`, with the project's code from `code`."""
    return run(cwd, sys.executable, "-m", "squad_ft.predict", *args, "--max-length", "64", "--doc-stride", "16",
               "--max-question-length", "16", env={"PYTHONPATH": str(code)})


def test_model_folders_are_hub_ready_and_answer_from_anywhere(repo, tmp_path):
    repo, _ = repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for variant, mode in (("full", "full"), ("lora", "lora"), ("lora-merged", "lora")):
        folder = repo / "models" / variant
        assert not [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
        card = (folder / "README.md").read_text()
        metadata = yaml.safe_load(card.split("---")[1])
        assert metadata["pipeline_tag"] == "question-answering"
        [test, heldout] = metadata["model-index"][0]["results"]
        assert test["metrics"][1]["value"] == json.loads((repo / f"metrics/{mode}.json").read_text())["f1"]
        assert heldout["metrics"][0]["value"] == json.loads((repo / f"metrics/heldout/{mode}.json").read_text())[
            "exact_match"]
    assert json.loads((repo / "models/lora/adapter_config.json").read_text())["base_model_name_or_path"] == \
        params["model"]["name"]
    assert not (repo / "models/lora-merged/adapter_config.json").exists()  # a plain transformers folder

    # copied elsewhere, each folder answers; one question gives its answer, score and offsets
    context = "Italy is in europe . the capital of italy is rome . it has many hills ."
    elsewhere = tmp_path / "elsewhere"
    for variant in ("full", "lora", "lora-merged"):
        copy = shutil.copytree(repo / "models" / variant, elsewhere / variant)
        answer = json.loads(predict("--model", str(copy), "--question", "What is the capital of italy?",
                                    "--context", context, cwd=tmp_path, code=repo).strip().splitlines()[-1])
        assert set(answer) == {"text", "score", "start", "end"}
        assert context[answer["start"]:answer["end"]] == answer["text"]

    # a whole file: the same answers and scores as the evaluate stage (one inference path)
    output = predict("--model", str(repo / "models/full"), "--input", str(repo / "data/heldout.jsonl"),
                     "--output", str(tmp_path / "answers.json"), "--batch-size", "16", cwd=repo, code=repo)
    assert json.loads((tmp_path / "answers.json").read_text()) == json.loads(
        (repo / "data/predictions/heldout/full.json").read_text())
    scores = json.loads(output.strip().splitlines()[-1])
    metrics = json.loads((repo / "metrics/heldout/full.json").read_text())
    assert scores == {"exact_match": metrics["exact_match"], "f1": metrics["f1"]}


def test_second_repro_does_nothing_and_lora_change_reruns_only_lora(repo):
    repo, _ = repo
    output = run(repo, "dvc", "repro")
    assert stages_run(output) == {"inputs"}  # it always runs; what it found had not changed

    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "first run")
    output = run(repo, "dvc", "exp", "run", "-S", "lora.r=8")
    # the comparisons re-run only if LoRA's predictions changed (DVC compares their hashes)
    assert stages_run(output) - {"compare@test", "compare@heldout"} == {
        "inputs", "train@lora", "evaluate@lora-test", "evaluate@lora-heldout", "report", "package@lora", "package@lora-merged"}

    diff = json.loads(run(repo, "dvc", "metrics", "diff", "--json"))
    assert "metrics/full.json" not in diff and "metrics/heldout/full.json" not in diff  # full did not move
    trainable = diff["metrics/lora.json"]["trainable_params"]
    assert trainable["new"] == 2 * (trainable["old"] - 66) + 66  # rank 4 -> 8 doubles the adapters


def test_heldout_change_reruns_only_the_heldout_evaluations(repo):
    repo, _ = repo
    output = run(repo, "dvc", "exp", "run", "-S", "heldout.n_examples=12")
    # never training or the test-split evaluations; the model cards show the held-out scores
    assert stages_run(output) == {"inputs", "heldout", "evaluate@full-heldout", "evaluate@lora-heldout", "compare@heldout",
                                  "report", *PACKAGES}
    assert json.loads((repo / "metrics/heldout/data.json").read_text())["heldout_examples"] == 12
    assert len(json.loads((repo / "data/predictions/heldout/full.json").read_text())) == 12


def test_queued_seeds_are_summarised(repo):
    repo, _ = repo
    run(repo, "dvc", "exp", "run", "--queue", "-S", "train.seed=range(1,3)")  # seeds 1 and 2
    run(repo, "dvc", "exp", "run", "--run-all")
    exp_show = json.loads(run(repo, "dvc", "exp", "show", "--json"))
    table = run(repo, sys.executable, "-m", "squad_ft.sweep")

    # what the table must say, from the experiments' own metrics: LoRA's held-out F1 over the
    # seeds of the group that the queued runs belong to (heldout.n_examples=12, lora.r=8)
    f1_by_seed = {}
    for experiment in exp_show[1]["experiments"]:
        data = experiment["revs"][0]["data"]
        params = data["params"]["params.yaml"]["data"]
        if params["heldout"]["n_examples"] == 12:
            f1_by_seed[params["train"]["seed"]] = data["metrics"]["metrics/heldout/lora.json"]["data"]["f1"]
    assert {1, 2} <= set(f1_by_seed)
    scores = list(f1_by_seed.values())
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)) ** 0.5
    seeds = ", ".join(map(str, sorted(f1_by_seed)))
    row = next(line for line in table.splitlines() if re.match(r"\| 12 +\| lora +\| heldout ", line))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3:5] == [str(len(scores)), seeds]
    assert cells[6] == f"{mean:.1f} ± {std:.1f}"
    assert "train.seed" not in table.splitlines()[2]  # the seed is what varies within a group, not a column


def edit_question(path: Path, index: int) -> None:
    """Change the text of one question of a JSON Lines file, in place: the same name, new content."""
    examples = [json.loads(line) for line in path.read_text().splitlines()]
    examples[index]["question"] = examples[index]["question"].replace("What is", "Which city is")
    write_jsonl(examples, path)


def test_an_edited_heldout_file_reruns_only_the_heldout_stages(repo):
    repo, _ = repo
    heldout = Path(yaml.safe_load((repo / "params.yaml").read_text())["heldout"]["source"])
    edit_question(heldout, 45)  # an unseen-article question, among the first 12 held out
    output = run(repo, "dvc", "repro")
    assert stages_run(output) == {"inputs", "heldout", "evaluate@full-heldout", "evaluate@lora-heldout",
                                  "compare@heldout", "report", *PACKAGES}
    questions = [json.loads(line)["question"] for line in (repo / "data/heldout.jsonl").read_text().splitlines()]
    assert "Which city is the capital" in " ".join(questions)
    fingerprint = json.loads((repo / "data/inputs/heldout.json").read_text())
    assert fingerprint["sha256"] == hashlib.sha256(heldout.read_bytes()).hexdigest()
    assert json.loads((repo / "metrics/heldout/data.json").read_text())["input"] == fingerprint


def test_an_edited_training_file_reruns_everything_downstream(repo):
    repo, _ = repo
    trained_on = {json.loads(line)["id"] for line in (repo / "data/split/train.jsonl").read_text().splitlines()}
    subset = [json.loads(line)["id"] for line in (repo / "data/subset.jsonl").read_text().splitlines()]
    index = next(i for i, question_id in enumerate(subset) if question_id in trained_on)
    edit_question(Path(yaml.safe_load((repo / "params.yaml").read_text())["data"]["source"]), index)
    output = run(repo, "dvc", "repro")
    # the comparisons re-run only if the predictions changed (DVC compares their hashes)
    assert stages_run(output) | COMPARISONS == ALL_STAGES
    assert "Which city is the capital" in (repo / "data/subset.jsonl").read_text().splitlines()[index]


def test_replaced_model_weights_invalidate_tokenize_and_training(repo):
    """What DVC would re-run (its status after the inputs stage), without running it: the stages that
    read the model, whose outputs then feed everything after them as in the edited-data test."""
    repo, _ = repo
    model = Path(yaml.safe_load((repo / "params.yaml").read_text())["model"]["name"])
    weights = model / "model.safetensors"
    original = weights.read_bytes()
    tensors = safetensors.torch.load_file(weights)
    safetensors.torch.save_file({name: tensor * 0.5 for name, tensor in tensors.items()}, weights)
    run(repo, "dvc", "repro", "inputs")
    status = json.loads(run(repo, "dvc", "status", "--json"))
    assert set(status) == {"inputs", "tokenize", "train@full", "train@lora"}  # inputs: always
    for stage in (status[name] for name in ("tokenize", "train@full", "train@lora")):
        assert {"changed deps": {"data/inputs/model.json": "modified"}} in stage
    fingerprint = json.loads((repo / "data/inputs/model.json").read_text())
    assert fingerprint["source"] == str(model) and fingerprint["files"] == len(list(model.iterdir()))
    weights.write_bytes(original)  # the weights the later tests' models were trained from
    run(repo, "dvc", "repro", "inputs")
    assert set(json.loads(run(repo, "dvc", "status", "--json"))) == {"inputs"}


def test_two_processes_under_torchrun_train_like_one(repo):
    repo, _ = repo
    before = {mode: json.loads((repo / f"metrics/{mode}.json").read_text()) for mode in ("full", "lora")}
    output = run(repo, "dvc", "exp", "run", "-S", "train.nproc=2")
    assert "under torchrun with 2 processes" in output
    assert {"train@full", "train@lora"} <= stages_run(output)
    for mode, one in before.items():
        two = json.loads((repo / f"metrics/{mode}.json").read_text())
        assert (one["world_size"], two["world_size"]) == (1, 2)
        assert two["initial_loss"] == pytest.approx(one["initial_loss"], rel=0.05)  # the same initialisation
        assert two["final_loss"] == pytest.approx(one["final_loss"], rel=0.1)  # the same global batch of 8
        # No comparison of scores: the tiny model ends near its initial loss, and its F1 on 8
        # test questions moved 100 -> 50 in a CI run whose final losses agreed to 0.05%.
    assert len(list((repo / "models/trained/lora").glob("adapter_model.safetensors"))) == 1
    assert not list(repo.glob("models/.*.tmp")) and not list(repo.glob(".checkpoints/*"))
