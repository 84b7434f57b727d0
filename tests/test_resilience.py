"""Faults, tested with the real thing: real signals to real stage processes, a real SIGKILL and a
resumed run, missing paths, an unreachable Hub, bad params, and model folders that travel."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import assert_clean_failure, run_stage, set_params, stage_command

from squad_ft.errors import UserError
from squad_ft.modeling import load_pretrained, load_tokenizer, load_trained
from squad_ft.stage import read_record

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle"}


def start_stage(stage: str, cwd: Path) -> subprocess.Popen:
    command = stage_command(cwd, stage)
    return subprocess.Popen(
        [sys.executable, *command[1:]], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def checkpoints(project: Path) -> list[Path]:
    """Complete checkpoints (the Trainer writes trainer_state.json last)."""
    return list(project.glob(".checkpoints/*/checkpoint-*/trainer_state.json"))


@pytest.fixture
def long_training(tokenized):
    """Tiny-model trainings of 160 steps (about 10 s each), 8 steps an epoch, checkpointed every 16."""
    assert run_stage("tokenize", cwd=tokenized).returncode == 0
    set_params(tokenized, "train", batch_size=2, checkpoint_steps=16)
    set_params(tokenized, "lora", epochs=20)
    set_params(tokenized, "full", epochs=20)
    return tokenized


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_stage_with_one_line_and_no_partial_output(long_training, signum):
    process = start_stage("train@lora", long_training)
    wait_for(lambda: checkpoints(long_training))  # well into training
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"interrupted ({signal.Signals(signum).name})", stderr[-3000:]
    assert not [line for line in stderr.splitlines() if line.startswith("error: ")]
    for output in ("data/trained", "dvclive"):
        assert not [path for path in (long_training / output).rglob("*") if path.is_file() or ".tmp" in path.name]


def loss_rows(loss_log: Path) -> list[list[str]]:
    """dvclive's loss.tsv rows: (step, loss) under a header (dvclive writes no timestamps by default)."""
    rows = [line.split("\t") for line in loss_log.read_text().splitlines()]
    assert rows[0] == ["step", "loss"], rows[0]
    return rows


def mid_epoch_checkpoint(project: Path) -> int | None:
    """The step of a complete checkpoint inside an epoch after the first and between two logging steps
    (odd: losses are logged every 2 steps), if there is one."""
    for state_file in checkpoints(project):
        try:
            epoch = json.loads(state_file.read_text())["epoch"]
        except (OSError, ValueError):  # being written
            continue
        step = int(state_file.parent.name.split("-")[1])
        if epoch > 1 and epoch % 1 and step % 2:
            return step
    return None


@pytest.mark.parametrize("mode, weights", [("full", "model.safetensors"), ("lora", "adapter_model.safetensors")])
def test_a_training_killed_mid_epoch_resumes_and_ends_identical(long_training, mode, weights):
    """Checkpoints every 3 steps of 8-step epochs, losses logged every 2: the kill lands after one
    inside an epoch after the first (whose batch order was drawn before the checkpoint), between
    two logging steps. Four epochs (32 steps) leave room for the kill and keep the three runs short."""
    project = long_training
    set_params(project, "train", checkpoint_steps=3)
    set_params(project, mode, epochs=4)
    reference = run_stage(f"train@{mode}", cwd=project)
    assert reference.returncode == 0, reference.stderr
    assert "resuming" not in reference.stdout
    expected_weights = (project / f"data/trained/{mode}/{weights}").read_bytes()
    expected_summary = read_record(project / f"metrics/train/{mode}.json")
    expected_log = loss_rows(project / f"dvclive/{mode}/plots/metrics/loss.tsv")
    expected_train_loss = json.loads((project / f"dvclive/{mode}/metrics.json").read_text())["train_loss"]
    expected_validation = read_record(project / f"metrics/validation/{mode}.json")  # every epoch's, the chosen one
    validation_log = project / f"dvclive/{mode}/plots/metrics/validation/f1.tsv"
    expected_validation_log = validation_log.read_text()
    assert len(expected_validation["per_epoch"]) == 4 and expected_validation_log.count("\n") == 5
    assert not list(project.glob(".checkpoints/*")), "checkpoints are removed when the stage finishes"

    shutil.rmtree(project / f"data/trained/{mode}", ignore_errors=True)  # as dvc repro removes a stage's outputs
    process = start_stage(f"train@{mode}", project)
    wait_for(lambda: mid_epoch_checkpoint(project))
    process.kill()  # SIGKILL: nothing can clean up
    process.wait(timeout=30)
    # the latest is resumed from; beside it may be the best epoch's, kept for it
    killed_at = max(int(path.parent.name.split("-")[1]) for path in checkpoints(project))
    assert killed_at % 8 and 8 < killed_at < 32 and killed_at % 2, killed_at  # mid-epoch, between two logs

    resumed = run_stage(f"train@{mode}", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(step {killed_at})" in resumed.stdout  # resumed: only the remaining steps ran
    assert (project / f"data/trained/{mode}/{weights}").read_bytes() == expected_weights
    summary = read_record(project / f"metrics/train/{mode}.json")
    timings = {"train_runtime_s", "train_features_per_s", "model_memory_mb", "peak_memory_mb"}  # of the resumed part
    assert {key: value for key, value in summary.items() if key not in timings} == \
        {key: value for key, value in expected_summary.items() if key not in timings}
    assert loss_rows(project / f"dvclive/{mode}/plots/metrics/loss.tsv") == expected_log  # every step's loss
    # the summary's training loss is the whole run's, not the resumed steps' alone
    assert json.loads((project / f"dvclive/{mode}/metrics.json").read_text())["train_loss"] == expected_train_loss
    assert read_record(project / f"metrics/validation/{mode}.json") == expected_validation
    assert validation_log.read_text() == expected_validation_log
    assert not list(project.glob(".checkpoints/*"))


def test_a_checkpoint_is_not_resumed_onto_another_base_model_under_the_same_name(long_training, tmp_path):
    """Kill a training, replace the weights in the local model folder that model.name names, refresh the
    fingerprints as `dvc repro` does: the training starts over instead of resuming the old base's state."""
    import safetensors.torch

    project = long_training
    model = shutil.copytree(yaml.safe_load((project / "params.yaml").read_text())["model"]["name"], tmp_path / "base")
    set_params(project, "model", name=str(model))
    assert run_stage("inputs", cwd=project).returncode == 0
    process = start_stage("train@full", project)
    wait_for(lambda: checkpoints(project))
    process.kill()
    process.wait(timeout=30)
    weights = model / "model.safetensors"
    safetensors.torch.save_file({name: tensor * 0.5 for name, tensor in safetensors.torch.load_file(weights).items()},
                                weights)
    assert run_stage("inputs", cwd=project).returncode == 0
    result = run_stage("train@full", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stdout


def test_a_checkpoint_of_other_settings_is_never_resumed(long_training):
    project = long_training
    process = start_stage("train@lora", project)
    wait_for(lambda: checkpoints(project))
    process.kill()
    process.wait(timeout=30)
    killed = {path.name for path in project.glob(".checkpoints/*")}
    set_params(project, "lora", learning_rate=0.02)
    result = run_stage("train@lora", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "resuming" not in result.stdout
    assert {path.name for path in project.glob(".checkpoints/*")} == killed  # the other run's, left for its own resume


def test_model_folders_hold_no_pickle_and_a_copied_adapter_loads(long_training, tmp_path):
    project = long_training
    set_params(project, "lora", epochs=1)
    set_params(project, "full", epochs=1)
    for stage in ("train@full", "train@lora"):
        assert run_stage(stage, cwd=project).returncode == 0
    files = [path for path in (project / "data/trained").rglob("*") if path.is_file()]
    assert files and not [path for path in files if path.suffix in PICKLE_SUFFIXES]

    name = yaml.safe_load((project / "params.yaml").read_text())["model"]["name"]
    config = json.loads((project / "data/trained/lora/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == name  # as configured, not a path into a cache
    # elsewhere, where the recorded base model is not: the adapter loads on the base it is given
    copy = shutil.copytree(project / "data/trained/lora", tmp_path / "elsewhere" / "lora")
    config["base_model_name_or_path"] = str(tmp_path / "moved" / "base")  # a base model no longer where it was
    (copy / "adapter_config.json").write_text(json.dumps(config))
    base = shutil.copytree(name, tmp_path / "elsewhere" / "base")
    with pytest.raises(UserError, match="model.name: no such file or directory: .*moved/base"):
        load_trained(copy)
    original, copied = load_trained(project / "data/trained/lora").state_dict(), load_trained(copy, str(base)).state_dict()
    assert original.keys() == copied.keys()
    for key in original:
        assert original[key].equal(copied[key]), key


def predict(project: Path, folder: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "squad_ft.predict", "--model", str(folder), *flags,
                           "--question", "What is the capital of italy?", "--context", "the capital of italy is rome ."],
                          cwd=project, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture
def corrupt_model(tokenized, tiny_model_dir) -> Path:
    """A full model folder at data/trained/full whose weights file is cut in half, as a crash mid-copy leaves it."""
    folder = tokenized / "data/trained/full"
    load_pretrained(str(tiny_model_dir)).save_pretrained(folder)
    load_tokenizer(str(tiny_model_dir)).save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    for records in ("train", "test", "heldout"):  # what package reads first
        (tokenized / "metrics" / records).mkdir(parents=True, exist_ok=True)
        for name in ("full.json", "full.details.json"):
            (tokenized / "metrics" / records / name).write_text("{}")
    return folder


@pytest.mark.parametrize("command", ["evaluate@full-test", "package@full", "predict"])
def test_a_corrupt_model_folder_is_one_line_naming_the_file(corrupt_model, command):
    project = corrupt_model.parents[2]
    result = predict(project, corrupt_model) if command == "predict" else run_stage(command, cwd=project)
    assert_clean_failure(result, "data/trained/full: cannot read model.safetensors", "corrupt or incomplete")


def test_predict_needs_every_setting_for_a_folder_that_records_none(tokenized, tiny_model_dir):
    """A training output has no inference_settings.json: predict names the flags it needs, and with them answers."""
    folder = tokenized / "data/trained/full"
    load_pretrained(str(tiny_model_dir)).save_pretrained(folder)
    load_tokenizer(str(tiny_model_dir)).save_pretrained(folder)
    assert_clean_failure(predict(tokenized, folder), "records no inference_settings.json",
                         "give --max-length --doc-stride --max-question-length --batch-size --n-best --max-answer-length")
    flags = ("--max-length", "48", "--doc-stride", "8", "--max-question-length", "16", "--batch-size", "4",
             "--n-best", "5", "--max-answer-length", "10")
    result = predict(tokenized, folder, *flags)
    assert result.returncode == 0, result.stderr
    assert "window: max_length 48, doc_stride 8, max_question_length 16; decoding: batch_size 4, n_best 5, " \
        "max_answer_length 10" in result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert "the capital of italy is rome ."[answer["start"]:answer["end"]] == answer["text"]
    assert_clean_failure(predict(tokenized, folder, *flags[:-1], "0"), "evaluate.max_answer_length must be a positive integer")


@pytest.mark.parametrize("section, key, value, fragment", [
    ("model", "name", "/no/such/model-dir", "model.name: no such file or directory: /no/such/model-dir"),
    ("model", "name", "models/not-here", "model.name: no such file or directory: models/not-here"),
    ("data", "source", "data/nowhere", "data.source: no such file or directory: data/nowhere"),
    ("heldout", "source", "data/nowhere", "heldout.source: no such file or directory: data/nowhere"),
])
def test_a_missing_local_path_is_reported_at_once(tokenized, section, key, value, fragment):
    (tokenized / "models").mkdir(exist_ok=True)  # so that models/... reads as a path, not a Hub id
    set_params(tokenized, section, **{key: value})
    start = time.monotonic()
    result = run_stage({"model": "tokenize", "data": "subset", "heldout": "heldout"}[section], cwd=tokenized)
    assert time.monotonic() - start < 30
    assert_clean_failure(result, fragment)


@pytest.mark.parametrize("section, key, value, stage", [
    ("model", "name", "squad-ft-tests/no-such-model", "tokenize"),
    ("data", "source", "squad-ft-tests/no-such-dataset", "subset"),
])
def test_an_unreachable_hub_fails_fast_with_one_line(tokenized, section, key, value, stage):
    set_params(tokenized, section, **{key: value})
    env = {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HOME": str(tokenized / "hf-home")}  # nothing cached, nothing listening
    start = time.monotonic()
    result = run_stage(stage, cwd=tokenized, env=env)
    assert time.monotonic() - start < 30  # no half-minute of retries
    assert_clean_failure(result, f"{section}.{key}", "not reachable", f"Set {section}.{key}")


@pytest.mark.parametrize("edit, fragment", [
    (lambda p: p["lora"].pop("alpha"), "params.yaml: lora.alpha is missing"),
    (lambda p: p["lora"].update(alhpa=16), "params.yaml: lora.alhpa is not a parameter; lora has: "),
    (lambda p: p["lora"].update(alpha="sixteen"), "params.yaml: lora.alpha must be a positive number, got 'sixteen'"),
    (lambda p: p["train"].update(batch_size=2.5), "params.yaml: train.batch_size must be a positive integer, got 2.5"),
    (lambda p: p["full"].update(epochs=0), "params.yaml: full.epochs must be a positive number, got 0"),
    (lambda p: p["lora"].update(learning_rate="-2e-4"), "params.yaml: lora.learning_rate must be a positive number, got -0.0002"),
    (lambda p: p.pop("bootstrap"), "params.yaml: the section 'bootstrap' is missing"),
    (lambda p: p["train"].update(gradient_checkpointing="on"),
     "params.yaml: train.gradient_checkpointing must be true or false, got 'on'"),
    (lambda p: p["train"].update(attention_dropout="none"),
     "params.yaml: train.attention_dropout must be a number in [0, 1) or null, got 'none'"),
])
def test_a_missing_or_mistyped_parameter_is_one_line(tokenized, edit, fragment):
    params = yaml.safe_load((tokenized / "params.yaml").read_text())
    edit(params)
    (tokenized / "params.yaml").write_text(yaml.safe_dump(params))
    assert_clean_failure(run_stage("split", cwd=tokenized), fragment)
