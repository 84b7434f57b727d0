"""Stage scripts: one-line errors, non-zero exit, no partial output; unreachable Hub inputs."""
import json
import shutil

import pytest
import yaml
from helpers import make_examples, run_module, tiny_params, write_jsonl, write_project

from squad_ft.stage import atomic_output


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


def assert_clean_failure(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    source = write_jsonl(make_examples(20), tmp_path / "squad.jsonl")
    (tmp_path / "project").mkdir()
    return write_project(tmp_path / "project", **tiny_params(source, tiny_model_dir, n_examples=20))


def set_params(project, section, **values):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize("content, fragment", [
    ('{"version": "1.1", "data": [', "is not valid JSON"),
    (json.dumps({"data": [{"title": "t", "paragraphs": [{"qas": [{"id": "x", "question": "q", "answers": []}]}]}]}),
     "is missing the field 'context'"),
])
def test_subset_rejects_bad_files_without_output(project, content, fragment):
    (project / "bad.json").write_text(content)
    set_params(project, "data", source=str(project / "bad.json"))
    assert_clean_failure(run_module("stages.subset", cwd=project), "data.source", fragment)
    assert not (project / "data" / "subset.jsonl").exists()


def test_subset_rejects_a_mismatched_answer_and_too_many_examples(project):
    examples = make_examples(20)
    examples[7]["answers"]["answer_start"] = [3]
    write_jsonl(examples, project / "bad.jsonl")
    set_params(project, "data", source=str(project / "bad.jsonl"))
    assert_clean_failure(run_module("stages.subset", cwd=project), "example 7", "does not match the context")
    set_params(project, "data", source=str(project / "bad.jsonl"), n_examples=21)
    assert_clean_failure(run_module("stages.subset", cwd=project), "data.n_examples is 21", "only 20")
    assert not (project / "data" / "subset.jsonl").exists()


def test_unreachable_hub_dataset_names_the_parameter(project):
    set_params(project, "data", source="squad-ft-tests/no-such-dataset")
    assert_clean_failure(run_module("stages.subset", cwd=project), "data.source", "Set data.source to a local")


@pytest.fixture
def tokenized(project):
    for module in ("stages.subset", "stages.split"):
        assert run_module(module, cwd=project).returncode == 0
    return project


def test_split_rejects_test_size_outside_0_1(tokenized):
    shutil.rmtree(tokenized / "data" / "split")  # as DVC removes a stage's outputs before running it
    set_params(tokenized, "data", test_size=1.2)
    assert_clean_failure(run_module("stages.split", cwd=tokenized), "data.test_size")
    assert not (tokenized / "data" / "split").exists()


def test_unreachable_hub_model_names_the_parameter(tokenized):
    set_params(tokenized, "model", name="distilbert-base-uncased-not-cached")
    assert_clean_failure(run_module("stages.tokenize", cwd=tokenized), "model.name", "Set model.name to a local")
    assert not (tokenized / "data" / "features").exists()


@pytest.mark.parametrize("lora, fragments", [
    ({"r": 0}, ["lora.r must be a positive integer"]),
    ({"target_modules": ["query", "value"]}, ["lora.target_modules", "q_lin, v_lin"]),
])
def test_train_rejects_bad_lora_settings_without_output(tokenized, lora, fragments):
    assert run_module("stages.tokenize", cwd=tokenized).returncode == 0
    set_params(tokenized, "lora", **lora)
    assert_clean_failure(run_module("stages.train", "lora", cwd=tokenized), *fragments)
    assert not (tokenized / "models" / "lora").exists()
    assert not (tokenized / "dvclive" / "lora").exists()


def test_training_is_reproducible(tokenized):
    """Same params, same results: the QA head and LoRA initialisation are seeded too."""
    assert run_module("stages.tokenize", cwd=tokenized).returncode == 0
    summaries = []
    for _ in range(2):
        assert run_module("stages.train", "lora", cwd=tokenized).returncode == 0
        summary = json.loads((tokenized / "models/lora/train_summary.json").read_text())
        summaries.append({key: summary[key] for key in ("initial_loss", "final_loss", "trainable_params")})
    assert summaries[0] == summaries[1]
