"""Stage scripts: one-line errors, non-zero exit, no partial output; unreachable Hub inputs."""
import json

import pytest
import safetensors.torch
import torch
from helpers import assert_clean_failure, make_examples, run_stage, set_params, write_jsonl

from squad_ft.stage import atomic_output, read_record


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "result.json"
    target.parent.mkdir()
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as out:
        out.write_text("half")
        raise RuntimeError("killed")
    assert list(target.parent.iterdir()) == []
    with atomic_output(target) as out:
        out.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


@pytest.mark.parametrize("content, fragment", [
    ('{"version": "1.1", "data": [', "is not valid JSON"),
    (json.dumps({"data": [{"title": "t", "paragraphs": [{"qas": [{"id": "x", "question": "q", "answers": []}]}]}]}),
     "is missing the field 'context'"),
])
def test_subset_rejects_bad_files_without_output(project, content, fragment):
    (project / "bad.json").write_text(content)
    set_params(project, "data", source=str(project / "bad.json"))
    assert_clean_failure(run_stage("subset", cwd=project), "data.source", fragment)
    assert not (project / "data" / "subset.jsonl").exists()


def test_subset_rejects_a_mismatched_answer_and_too_many_examples(project):
    examples = make_examples(20)
    examples[7]["answers"]["answer_start"] = [3]
    write_jsonl(examples, project / "bad.jsonl")
    set_params(project, "data", source=str(project / "bad.jsonl"))
    assert_clean_failure(run_stage("subset", cwd=project), "example 7", "does not match the context")
    write_jsonl(make_examples(20), project / "good.jsonl")
    set_params(project, "data", source=str(project / "good.jsonl"), n_examples=21)
    assert_clean_failure(run_stage("subset", cwd=project), "data.n_examples is 21", "only 20")
    assert not (project / "data" / "subset.jsonl").exists()


def test_unreachable_hub_dataset_names_the_parameter(project):
    set_params(project, "data", source="squad-ft-tests/no-such-dataset")
    assert_clean_failure(run_stage("subset", cwd=project), "data.source", "Set data.source to a local")


def test_split_rejects_test_size_outside_0_1(tokenized):
    set_params(tokenized, "data", test_size=1.2)
    assert_clean_failure(run_stage("split", cwd=tokenized), "data.test_size must be a number strictly between 0 and 1")


def test_unreachable_hub_model_names_the_parameter(tokenized):
    set_params(tokenized, "model", name="distilbert-base-uncased-not-cached")
    assert_clean_failure(run_stage("tokenize", cwd=tokenized), "model.name", "Set model.name to a local")
    assert not (tokenized / "data" / "features").exists()


@pytest.mark.parametrize("lora, fragments", [
    ({"r": 0}, ["lora.r must be a positive integer"]),
    ({"target_modules": ["query", "value"]}, ["lora.target_modules", "q_lin, v_lin"]),
])
def test_train_rejects_bad_lora_settings_without_output(tokenized, lora, fragments):
    assert run_stage("tokenize", cwd=tokenized).returncode == 0
    set_params(tokenized, "lora", **lora)
    assert_clean_failure(run_stage("train@lora", cwd=tokenized), *fragments)
    assert not (tokenized / "data" / "trained" / "lora").exists()
    assert not (tokenized / "dvclive" / "lora").exists()


@pytest.mark.parametrize("mode, weights", [("full", "model.safetensors"), ("lora", "adapter_model.safetensors")])
def test_training_is_reproducible(tokenized, mode, weights):
    """Same params, same results: the same weights to the byte, the same predictions and scores (the QA head
    and LoRA's initialisation are seeded too)."""
    assert run_stage("tokenize", cwd=tokenized).returncode == 0
    runs = []
    for _ in range(2):
        for stage in (f"train@{mode}", f"evaluate@{mode}-test"):
            assert run_stage(stage, cwd=tokenized).returncode == 0, stage
        metrics = {**read_record(tokenized / f"metrics/test/{mode}.json"),
                   **read_record(tokenized / f"metrics/train/{mode}.json")}
        runs.append({
            "weights": (tokenized / f"data/trained/{mode}/{weights}").read_bytes(),
            "predictions": (tokenized / f"data/predictions/test/{mode}.json").read_text(),
            "scores": {key: metrics[key] for key in ("exact_match", "f1", "exact_match_ci_low", "exact_match_ci_high",
                                                     "f1_ci_low", "f1_ci_high")},
            "losses": {key: metrics[key] for key in ("initial_loss", "final_loss")},
        })
    assert runs[0] == runs[1]


@pytest.mark.parametrize("mode, weights", [("full", "model.safetensors"), ("lora", "adapter_model.safetensors")])
def test_gradient_checkpointing_recomputes_the_same_training(tokenized, mode, weights):
    """Recomputed activations are the same activations (dropout included): the same losses at every
    logged step and the same weights, up to float summation order."""
    assert run_stage("tokenize", cwd=tokenized).returncode == 0
    runs = []
    for checkpointing in (False, True):
        set_params(tokenized, "train", gradient_checkpointing=checkpointing)
        assert run_stage(f"train@{mode}", cwd=tokenized).returncode == 0
        log = (tokenized / f"dvclive/{mode}/plots/metrics/loss.tsv").read_text().splitlines()[1:]  # step, loss
        runs.append({"summary": read_record(tokenized / f"metrics/train/{mode}.json"),
                     "losses": [(int(step), float(loss)) for step, loss in (line.split("\t") for line in log)],
                     "weights": safetensors.torch.load_file(tokenized / f"data/trained/{mode}/{weights}")})
    without, with_ = runs
    assert [step for step, _ in without["losses"]] == [step for step, _ in with_["losses"]]
    assert [loss for _, loss in with_["losses"]] == pytest.approx([loss for _, loss in without["losses"]], rel=1e-4)
    assert without["weights"].keys() == with_["weights"].keys()
    for name, tensor in without["weights"].items():
        torch.testing.assert_close(with_["weights"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    for key in ("trainable_params", "total_params", "train_features", "epochs"):
        assert without["summary"][key] == with_["summary"][key], key
    for summary in (without["summary"], with_["summary"]):  # the memory figures are the training's, on top of the model
        assert 0 < summary["model_memory_mb"] <= summary["peak_memory_mb"]
        trained, runtime = summary["train_features"] * summary["epochs"], summary["train_runtime_s"]
        assert trained / (runtime + 0.05) <= summary["train_features_per_s"] <= trained / (runtime - 0.05)  # rounded


def training_split(project) -> list[dict]:
    return [json.loads(line) for line in (project / "data/split/train.jsonl").read_text().splitlines()]


def test_heldout_keeps_only_unseen_articles_in_order(tokenized):
    unseen = make_examples(5, unseen=True)
    write_jsonl(training_split(tokenized) + unseen, tokenized / "heldout.jsonl")
    set_params(tokenized, "heldout", source=str(tokenized / "heldout.jsonl"), n_examples=3)
    set_params(tokenized, "validation", n_examples=1)  # the first unseen article, whole
    assert run_stage("heldout", cwd=tokenized).returncode == 0
    kept = {name: [json.loads(line)["id"] for line in (tokenized / f"data/split/{name}.jsonl").read_text().splitlines()]
            for name in ("validation", "heldout")}
    assert kept["validation"] == [ex["id"] for ex in unseen if ex["title"] == unseen[0]["title"]]
    assert kept["heldout"] == [ex["id"] for ex in unseen if ex["title"] != unseen[0]["title"]][:3]
    counts = json.loads((tokenized / "metrics/heldout/data.details.json").read_text())
    assert (counts["candidates"], counts["dropped_seen_article"], counts["unseen"], counts["heldout_examples"]) == (
        21, 16, 5, 3)


def test_heldout_drops_a_seen_paragraph_under_another_title(tokenized):
    renamed = training_split(tokenized)[:2]  # training paragraphs, filed under a new article title
    for example in renamed:
        example["title"] = "Renamed"
    write_jsonl(renamed + make_examples(5, unseen=True), tokenized / "heldout.jsonl")
    set_params(tokenized, "heldout", source=str(tokenized / "heldout.jsonl"), n_examples=None)
    set_params(tokenized, "validation", n_examples=1)
    assert run_stage("heldout", cwd=tokenized).returncode == 0
    counts = json.loads((tokenized / "metrics/heldout/data.details.json").read_text())
    assert (counts["dropped_seen_article"], counts["dropped_seen_paragraph_only"], counts["unseen"]) == (0, 2, 5)


@pytest.mark.parametrize("heldout, fragments", [
    ({"source": "no/such/file.json"}, ["heldout.source: no such file"]),
    ({"source": "squad-ft-tests/no-such-dataset"}, ["heldout.source", "split 'validation'", "Set heldout.source"]),
    ({"n_examples": 0}, ["heldout.n_examples must be a positive integer, null or all"]),
    ({"n_examples": 99}, ["heldout.n_examples is 99", "not seen in training"]),
    ({"source": "data/split/train.jsonl"}, ["all 16 examples come from articles or paragraphs of the training"]),
])
def test_heldout_errors_name_the_parameter_and_leave_no_output(tokenized, heldout, fragments):
    write_jsonl(training_split(tokenized) + make_examples(5, unseen=True), tokenized / "heldout.jsonl")
    heldout = {"source": str(tokenized / "heldout.jsonl"), "n_examples": None, **heldout}
    set_params(tokenized, "heldout", **heldout)
    set_params(tokenized, "validation", n_examples=1)
    for output in ("data/split/validation.jsonl", "data/split/heldout.jsonl", "metrics/heldout/data.details.json"):
        (tokenized / output).unlink()  # the tokenized fixture's: the failing stage must write none
    assert_clean_failure(run_stage("heldout", cwd=tokenized), *fragments)
    for output in ("data/split/validation.jsonl", "data/split/heldout.jsonl", "metrics/heldout/data.details.json"):
        assert not (tokenized / output).exists(), output


def test_bf16_trains_and_evaluates_and_is_recorded(tokenized):
    """train.precision bf16 (mixed precision, the Trainer's autocast) through the stages, fused LoRA path included."""
    from squad_ft.device import cpu_has_native_bf16

    assert run_stage("tokenize", cwd=tokenized).returncode == 0
    set_params(tokenized, "train", precision="bf16")
    result = run_stage("train@lora", cwd=tokenized)
    assert result.returncode == 0, result.stderr
    assert ("emulated, slower than fp32" in result.stderr) == (not cpu_has_native_bf16())
    summary = read_record(tokenized / "metrics/train/lora.json")
    assert summary["precision"] == "bf16" and summary["device"].endswith(", bf16)")
    assert summary["final_loss"] < summary["initial_loss"]  # it learns in bf16 too
    assert run_stage("evaluate@lora-test", cwd=tokenized).returncode == 0
    assert read_record(tokenized / "metrics/test/lora.json")["eval_precision"] == "bf16"


def test_lora_fused_false_trains_the_same_parameters(tokenized):
    assert run_stage("tokenize", cwd=tokenized).returncode == 0
    summaries = []
    for fused in (True, False):
        set_params(tokenized, "lora", fused=fused)
        assert run_stage("train@lora", cwd=tokenized).returncode == 0
        summaries.append(read_record(tokenized / "metrics/train/lora.json"))
    assert summaries[0]["trainable_params"] == summaries[1]["trainable_params"]
    assert summaries[0]["initial_loss"] == pytest.approx(summaries[1]["initial_loss"], rel=1e-5)  # the same model
    assert summaries[0]["final_loss"] == pytest.approx(summaries[1]["final_loss"], rel=1e-3)
