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
from helpers import ENV, init_repo, make_examples, run, tiny_params, write_jsonl, write_project

from squad_ft.device import device_and_precision
from squad_ft.stage import read_record
from squad_ft.training import COSTS

MODES = ("full", "lora", "head")
EVALUATIONS = {f"evaluate@{mode}-{eval_set}" for mode in MODES for eval_set in ("test", "heldout")}
PACKAGES = {"package@full", "package@lora", "package@lora-merged", "package@head"}
COMPARISONS = {f"compare@{mode}-{eval_set}" for mode in ("lora", "head") for eval_set in ("test", "heldout")}
ALL_STAGES = {"inputs", "subset", "split", "heldout", "tokenize", "train@full", "train@lora", "train@head", *EVALUATIONS,
              *COMPARISONS, "report", *PACKAGES}
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
    init_repo(repo, run)
    first_run = run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "first run")
    return repo, first_run


def read_ids(path: Path) -> set[str]:
    return {json.loads(line)["id"] for line in path.read_text().splitlines()}


def read_json(path: Path):
    return json.loads(path.read_text())


def test_repro_runs_every_stage_once(repo):
    _, first_run = repo
    assert stages_run(first_run) == ALL_STAGES


def test_the_test_split_and_heldout_set_hold_the_right_questions(repo):
    repo, _ = repo
    assert len(read_ids(repo / "data/split/test.jsonl")) == 8
    validation, heldout = read_ids(repo / "data/split/validation.jsonl"), read_ids(repo / "data/split/heldout.jsonl")
    assert validation | heldout == {f"h{i:04d}" for i in range(30)} and not validation & heldout  # the unseen articles
    assert len(validation) >= 8 and heldout
    data = read_json(repo / "metrics/heldout/data.details.json")
    assert (data["candidates"], data["dropped_seen_article"]) == (70, 40)
    assert (data["validation_examples"], data["heldout_examples"]) == (len(validation), len(heldout))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("eval_set", ["test", "heldout"])
def test_each_evaluation_scores_its_own_questions_with_intervals(repo, mode, eval_set):
    repo, _ = repo
    ids = read_ids(repo / f"data/split/{eval_set}.jsonl")
    metrics = read_record(repo / f"metrics/{eval_set}/{mode}.json")
    assert (metrics["mode"], metrics["eval_set"], metrics[f"{eval_set}_examples"]) == (mode, eval_set, len(ids))
    assert set(read_json(repo / f"data/predictions/{eval_set}/{mode}.json")) == ids
    for score in ("exact_match", "f1"):
        low, high = metrics[f"{score}_ci_low"], metrics[f"{score}_ci_high"]
        assert 0 <= low <= metrics[score] <= high <= 100
    overlap = 1.0 if eval_set == "test" else 0.0  # the test split shares its paragraphs; held-out nothing
    assert metrics[f"{eval_set}_paragraph_overlap"] == metrics[f"{eval_set}_article_overlap"] == overlap


def test_declared_metrics_hold_numbers_to_compare_and_the_details_the_rest(repo):
    """What `dvc metrics show` lists: scores, intervals, differences and training costs, every one a
    number; what each run was (device, sources, counts) is in the NAME.details.json beside it."""
    repo, _ = repo
    shown = json.loads(run(repo, "dvc", "metrics", "show", "--json"))
    declared = {path: file["data"] for path, file in next(iter(shown.values()))["data"].items()}
    scores = {f"{score}{end}" for score in ("exact_match", "f1") for end in ("", "_ci_low", "_ci_high")}
    expected = {**{f"metrics/train/{mode}.json": set(COSTS) for mode in MODES},
                **{f"metrics/validation/{mode}.json": {"exact_match", "f1", "epoch", "best_epoch", "epochs_run"}
                   for mode in MODES},
                **{f"metrics/{eval_set}/{mode}.json": scores for eval_set in ("test", "heldout") for mode in MODES},
                **{f"metrics/{eval_set}/{mode}_vs_full.json": {key.replace("_ci", "_difference_ci") if "_ci" in key
                                                              else f"{key}_difference" for key in scores}
                   for eval_set in ("test", "heldout") for mode in ("lora", "head")}}
    assert {path: set(values) for path, values in declared.items()} == expected
    assert all(isinstance(value, (int, float)) for values in declared.values() for value in values.values())
    for path in declared:  # each as its stage wrote it, its details beside it
        assert read_json(repo / path) == declared[path]
    for mode in MODES:
        details = read_json(repo / f"metrics/train/{mode}.details.json")
        assert (details["mode"], details["device"]) == (mode, device_and_precision("fp32")[0])
        assert set(details["inputs"]) == {"data", "model"}
        assert read_json(repo / f"metrics/test/{mode}.details.json")["eval_precision"] == "fp32"
    assert read_json(repo / "metrics/test/lora_vs_full.details.json") == {"mode": "lora", "eval_set": "test", "questions": 8}


@pytest.mark.parametrize("mode", ["lora", "head"])
@pytest.mark.parametrize("eval_set", ["test", "heldout"])
def test_each_comparison_pairs_a_model_and_full_on_the_same_questions(repo, mode, eval_set):
    repo, _ = repo
    questions = len(read_ids(repo / f"data/split/{eval_set}.jsonl"))
    assert questions == 8 if eval_set == "test" else questions > 0
    comparison = read_record(repo / f"metrics/{eval_set}/{mode}_vs_full.json")
    full, compared = (read_json(repo / f"metrics/{eval_set}/{name}.json") for name in ("full", mode))
    assert (comparison["mode"], comparison["questions"]) == (mode, questions)
    for score in ("exact_match", "f1"):  # the mean of per-question differences is the difference of means
        assert comparison[f"{score}_difference"] == pytest.approx(compared[score] - full[score], abs=0.0151)  # each rounded to 2 decimals
        low, high = comparison[f"{score}_difference_ci_low"], comparison[f"{score}_difference_ci_high"]
        assert low <= comparison[f"{score}_difference"] <= high


def test_lora_trains_its_adapters_and_the_head_full_fine_tuning_everything_head_the_head_alone(repo):
    repo, _ = repo
    full, lora, head = (read_json(repo / f"metrics/train/{mode}.json") for mode in MODES)
    assert full["trainable_params"] == full["total_params"]
    assert 66 < lora["trainable_params"] < full["trainable_params"]  # adapters + head (2 x 32 + 2), not the head alone
    assert lora["total_params"] == full["total_params"] + lora["trainable_params"]  # + adapters + peft's head copy
    assert (head["trainable_params"], head["total_params"]) == (32 * 2 + 2, full["total_params"])  # the QA head alone
    # the encoder unchanged: every weight but the head's is the pre-trained model's
    trained = safetensors.torch.load_file(repo / "data/trained/head/model.safetensors")
    model = Path(yaml.safe_load((repo / "params.yaml").read_text())["model"]["name"])
    pretrained = safetensors.torch.load_file(model / "model.safetensors")
    # (the pre-trained folder is a bare DistilBertModel: its names lack the QA model's "distilbert." prefix)
    encoder = {name.removeprefix("distilbert."): tensor for name, tensor in trained.items() if not name.startswith("qa_outputs.")}
    assert encoder.keys() == pretrained.keys() and all((tensor == pretrained[name]).all() for name, tensor in encoder.items())


def test_the_report_has_every_row_and_the_loss_plot(repo):
    repo, _ = repo
    report = (repo / "metrics/report.md").read_text()
    for row in ("| Trained params ", "| Test: F1 ", "| Held-out: exact match ", "| Held-out: questions "):
        assert row in report, row
    heldout = len(read_ids(repo / "data/split/heldout.jsonl"))
    assert f"Held-out F1, LoRA - full fine-tuning on the same {heldout} questions" in report
    assert re.search(r"\| Epoch kept \(best validation F1\) +\| \d of 2 +\| \d of 2 +\| \d of 2 +\|", report)
    trained = [read_json(repo / f"metrics/train/{mode}.json")["trainable_params"] for mode in MODES]
    assert re.search(rf"\| Trained params +\| {trained[0]:,} +\| {trained[1]:,} +\| {trained[2]:,} +\|", report)  # the training's record
    # the reference experiment's rows: its published figures beside this run's, full, LoRA and head
    assert re.search(rf"\| Trained params +\| 66,364,418 +\| {trained[0]:,} +\| {trained[1]:,} +\| 1,538 +\| {trained[2]:,} +\|",
                     report)
    assert f"Held-out F1, head - full fine-tuning on the same {heldout} questions" in report
    assert (repo / "metrics/loss.png").read_bytes()[:4] == b"\x89PNG"


def test_outputs_have_one_home_and_shared_weights_are_stored_once(repo):
    repo, _ = repo
    def names(folder: Path) -> list[str]:
        return sorted(path.name for path in folder.iterdir() if path.name != ".gitignore")  # DVC's

    assert names(repo / "models") == ["full", "head", "lora", "lora-merged"]
    assert names(repo / "metrics") == ["heldout", "loss.png", "report.md", "test", "train", "validation"]
    records = {"train": ["full", "head", "lora"], "validation": ["full", "head", "lora"], "test": ["full", "head", "head_vs_full", "lora", "lora_vs_full"],
               "heldout": ["full", "head", "head_vs_full", "lora", "lora_vs_full"]}
    for folder, names_of_records in records.items():  # every metrics file with its details
        assert names(repo / "metrics" / folder) == sorted(
            [f"{name}{suffix}" for name in names_of_records for suffix in (".json", ".details.json")]
            + (["data.details.json"] if folder == "heldout" else []))
    for mode, weights in (("full", "model.safetensors"), ("lora", "adapter_model.safetensors")):
        trained, packaged = (repo / folder / mode / weights for folder in ("data/trained", "models"))
        assert trained.read_bytes() == packaged.read_bytes()
        assert trained.stat().st_ino == packaged.stat().st_ino  # one file on disk: hard links into DVC's cache


def test_the_model_folders_are_dvc_artifacts(repo, tmp_path):
    """Registered as DVC's model registry does it (a Git tag NAME@vVERSION), each folder downloads by name."""
    repo, _ = repo
    for name, variant in (("squad-ft-full", "full"), ("squad-ft-lora", "lora"), ("squad-ft-lora-merged", "lora-merged")):
        run(repo, "git", "tag", "-a", f"{name}@v0.1.0", "-m", f"{name} v0.1.0")
        out = tmp_path / name
        run(tmp_path, "dvc", "artifacts", "get", str(repo), name, "-o", str(out))
        packaged = repo / "models" / variant
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in packaged.iterdir())
        for file in packaged.iterdir():
            assert (out / file.name).read_bytes() == file.read_bytes(), file


def predict(*args: str, cwd: Path, code: Path) -> subprocess.CompletedProcess:
    """`python -m squad_ft.predict ...` from `cwd`, with the project's code from `code`."""
    result = subprocess.run([sys.executable, "-m", "squad_ft.predict", *args], cwd=cwd, capture_output=True, text=True,
                            env={**ENV, "PYTHONPATH": str(code)})
    assert result.returncode == 0, result.stderr
    return result


def test_model_folders_are_hub_ready_and_answer_from_anywhere(repo, tmp_path):
    repo, _ = repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for variant, mode in (("full", "full"), ("lora", "lora"), ("lora-merged", "lora")):
        folder = repo / "models" / variant
        assert not [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl"}]
        card = (folder / "README.md").read_text()
        metadata = yaml.safe_load(card.split("---")[1])
        assert metadata["pipeline_tag"] == "question-answering"
        for result, eval_set in zip(metadata["model-index"][0]["results"], ("test", "heldout")):
            metrics = read_json(repo / f"metrics/{eval_set}/{mode}.json")
            assert [metric["value"] for metric in result["metrics"]] == [metrics["exact_match"], metrics["f1"]]
        training = read_json(repo / f"metrics/train/{mode}.json")
        assert f"{training['trainable_params']:,} of {training['total_params']:,} parameters trained" in card
    assert json.loads((repo / "models/lora/adapter_config.json").read_text())["base_model_name_or_path"] == \
        params["model"]["name"]
    assert not (repo / "models/lora-merged/adapter_config.json").exists()  # a plain transformers folder

    # copied elsewhere, each folder answers; one question gives its answer, score and offsets
    context = "Italy is in europe . the capital of italy is rome . it has many hills ."
    elsewhere, answers = tmp_path / "elsewhere", {}
    for variant in ("full", "lora", "lora-merged"):
        copy = shutil.copytree(repo / "models" / variant, elsewhere / variant)
        answer = json.loads(predict("--model", str(copy), "--question", "What is the capital of italy?",
                                    "--context", context, cwd=tmp_path, code=repo).stdout.strip().splitlines()[-1])
        assert set(answer) == {"text", "score", "start", "end"}
        assert context[answer["start"]:answer["end"]] == answer["text"]
        answers[variant] = answer
    # the merged folder is the same model as the adapter on its base
    assert {key: answers["lora"][key] for key in ("text", "start", "end")} == \
        {key: answers["lora-merged"][key] for key in ("text", "start", "end")}
    assert answers["lora"]["score"] == pytest.approx(answers["lora-merged"]["score"], abs=1e-3)


def test_predict_decodes_with_the_settings_the_folder_was_evaluated_with(repo, tmp_path):
    """No flags: the packaged folder's window (max_length 64, not the pipeline's default 384) and decoding;
    the same answers and scores as the evaluate stage (one inference path)."""
    repo, _ = repo
    result = predict("--model", str(repo / "models/full"), "--input", str(repo / "data/split/heldout.jsonl"),
                     "--output", str(tmp_path / "answers.json"), cwd=repo, code=repo)
    assert "window: max_length 64, doc_stride 16, max_question_length 16; decoding: batch_size 16, " in result.stderr
    assert read_json(tmp_path / "answers.json") == read_json(repo / "data/predictions/heldout/full.json")
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    metrics = json.loads((repo / "metrics/heldout/full.json").read_text())
    assert scores == {"exact_match": metrics["exact_match"], "f1": metrics["f1"]}


def test_second_repro_does_nothing_and_lora_change_reruns_only_lora(repo):
    repo, _ = repo
    output = run(repo, "dvc", "repro")
    assert stages_run(output) == {"inputs"}  # it always runs; what it found had not changed

    output = run(repo, "dvc", "exp", "run", "-S", "lora.r=8")
    # the comparisons re-run only if LoRA's predictions changed (DVC compares their hashes)
    assert stages_run(output) - COMPARISONS == {
        "inputs", "train@lora", "evaluate@lora-test", "evaluate@lora-heldout", "report", "package@lora", "package@lora-merged"}

    diff = json.loads(run(repo, "dvc", "metrics", "diff", "--json"))
    assert not {"metrics/train/full.json", "metrics/test/full.json", "metrics/heldout/full.json"} & set(diff)  # full did not move
    trainable = diff["metrics/train/lora.json"]["trainable_params"]
    assert trainable["new"] == 2 * (trainable["old"] - 66) + 66  # rank 4 -> 8 doubles the adapters
    # the intervals' ends are numbers DVC diffs, with their change (unless the retrained LoRA's happen not to move)
    shown = json.loads(run(repo, "dvc", "metrics", "show", "--json"))
    workspace = next(iter(shown.values()))["data"]
    for path, key in (("metrics/test/lora.json", "f1_ci_low"), ("metrics/heldout/lora_vs_full.json", "f1_difference_ci_high")):
        assert isinstance(workspace[path]["data"][key], float), (path, key)
        if key in diff.get(path, {}):
            change = diff[path][key]
            assert change["diff"] == pytest.approx(change["new"] - change["old"], abs=1e-6)


def test_heldout_change_reruns_only_the_heldout_evaluations(repo):
    repo, _ = repo
    output = run(repo, "dvc", "exp", "run", "-S", "heldout.n_examples=12")
    # never training or the test-split evaluations; the model cards show the held-out scores
    assert stages_run(output) == {"inputs", "heldout", *(f"evaluate@{mode}-heldout" for mode in MODES),
                                  "compare@lora-heldout", "compare@head-heldout", "report", *PACKAGES}
    assert json.loads((repo / "metrics/heldout/data.details.json").read_text())["heldout_examples"] == 12
    assert len(json.loads((repo / "data/predictions/heldout/full.json").read_text())) == 12


def table_cells(row: str) -> tuple[str, ...]:
    """The cells of one Markdown table row, stripped."""
    return tuple(cell.strip() for cell in row.strip("|").split("|"))


def test_queued_seeds_are_summarised(repo):
    repo, _ = repo
    run(repo, "dvc", "exp", "run", "--queue", "-S", "train.seed=1")  # beside the held-out test's run, seed 42
    run(repo, "dvc", "exp", "run", "--run-all")
    exp_show = json.loads(run(repo, "dvc", "exp", "show", "--json"))
    table = run(repo, sys.executable, "-m", "squad_ft.sweep")

    # what the table must say, from the experiments' own metrics: LoRA's held-out F1 over the
    # seeds of the group that the queued runs belong to (heldout.n_examples=12, lora.r=8)
    by_seed, full_by_seed = {}, {}
    for experiment in exp_show[1]["experiments"]:
        data = experiment["revs"][0]["data"]
        params = data["params"]["params.yaml"]["data"]
        if params["heldout"]["n_examples"] == 12:
            by_seed[params["train"]["seed"]] = data["metrics"]["metrics/heldout/lora.json"]["data"]
            full_by_seed[params["train"]["seed"]] = data["metrics"]["metrics/heldout/full.json"]["data"]
    assert {42, 1} <= set(by_seed)
    row = next(line for line in table.splitlines() if re.match(r"\| 12 +\| lora +\| heldout ", line))
    cells = list(table_cells(row))
    assert cells[3:5] == [str(len(by_seed)), ", ".join(map(str, sorted(by_seed)))]
    for column, score in ((5, "exact_match"), (6, "f1")):
        scores = [metrics[score] for metrics in by_seed.values()]
        mean = sum(scores) / len(scores)
        std = (sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)) ** 0.5
        assert cells[column] == f"{mean:.1f} ± {std:.1f}", score
    assert "train.seed" not in table.splitlines()[2]  # the seed is what varies within a group, not a column

    # the pooled verdict, from the experiments' own predictions: per seed LoRA's F1 minus full
    # fine-tuning's on the same 12 questions, and their mean
    row = next(line for line in table.splitlines() if re.match(r"\| 12 +\| heldout +\| F1 +\|[^|]+\| LoRA ", line))
    cells = list(table_cells(row))
    seeds = sorted(by_seed)
    assert cells[3] == ", ".join(map(str, seeds))
    differences = [by_seed[seed]["f1"] - full_by_seed[seed]["f1"] for seed in seeds]
    assert [float(value) for value in cells[7].split(", ")] == pytest.approx(differences, abs=0.11)
    pooled, interval = cells[8].split(" ", 1)
    assert float(pooled) == pytest.approx(sum(differences) / len(differences), abs=0.11)
    low, high = (float(end) for end in interval.strip("[]").split(", "))
    assert low <= float(pooled) <= high
    assert cells[9] == ("within noise (the interval includes 0)" if low <= 0 <= high else
                        f"{'LoRA' if low > 0 else 'full fine-tuning'} better (the interval excludes 0)")
    assert re.search(r"\| 12 +\| heldout +\| F1 +\|[^|]+\| Head only ", table)  # the head, compared the same way


def table_rows(output: str) -> set[tuple[str, ...]]:
    """The cells of every row of the Markdown tables in `output` (column widths aside)."""
    return {table_cells(line) for line in output.splitlines() if line.startswith("|") and not line.startswith("|--")}


def test_experiments_copied_out_of_dvc_summarise_as_before(repo, tmp_path):
    """`--copy-to` keeps each finished experiment where git can; `--archive` gives the same tables from
    the copies, except where this workspace holds other questions than a run was scored on."""
    repo, _ = repo
    from_dvc = run(repo, sys.executable, "-m", "squad_ft.sweep", "--copy-to", str(tmp_path / "runs"))
    copies = sorted((tmp_path / "runs").iterdir())
    assert len(copies) == len(json.loads(run(repo, "dvc", "exp", "show", "--json"))[1]["experiments"]) >= 3
    assert not list((tmp_path / "runs").rglob(".gitignore"))  # DVC's would hide the predictions from git
    for copy in copies:
        assert {path.name for path in (copy / "data/predictions/heldout").iterdir()} == {"full.json", "lora.json", "head.json"}
    result = subprocess.run([sys.executable, "-m", "squad_ft.sweep", "--archive", *map(str, copies)],
                            cwd=repo, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # the workspace holds the 12 held-out questions of the last held-out change: the runs scored on
    # other held-out questions are left out of the pooled held-out rows, and say why
    missing = table_rows(from_dvc) - table_rows(result.stdout)
    assert missing and all(row[1] == "heldout" and row[0] != "12" for row in missing)
    assert table_rows(result.stdout) <= table_rows(from_dvc)
    assert "is not the data/split/heldout.jsonl its dvc.lock recorded" in result.stderr


def edit_question(path: Path, index: int) -> None:
    """Change the text of one question of a JSON Lines file, in place: the same name, new content."""
    examples = [json.loads(line) for line in path.read_text().splitlines()]
    examples[index]["question"] = examples[index]["question"].replace("What is", "Which city is")
    write_jsonl(examples, path)


def test_an_edited_heldout_file_reruns_only_the_heldout_stages(repo):
    repo, _ = repo
    heldout = Path(yaml.safe_load((repo / "params.yaml").read_text())["heldout"]["source"])
    first_held_out = sorted(read_ids(repo / "data/split/heldout.jsonl"))[0]  # not validation's: training stays
    edit_question(heldout, 40 + int(first_held_out[1:]))  # the source: 40 training examples, then h0000, ...
    output = run(repo, "dvc", "repro")
    assert stages_run(output) == {"inputs", "heldout", *(f"evaluate@{mode}-heldout" for mode in MODES),
                                  "compare@lora-heldout", "compare@head-heldout", "report", *PACKAGES}
    questions = [json.loads(line)["question"] for line in (repo / "data/split/heldout.jsonl").read_text().splitlines()]
    assert "Which city is the capital" in " ".join(questions)
    fingerprint = json.loads((repo / "data/inputs/heldout.json").read_text())
    assert fingerprint["sha256"] == hashlib.sha256(heldout.read_bytes()).hexdigest()
    assert json.loads((repo / "metrics/heldout/data.details.json").read_text())["input"] == fingerprint


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
    assert set(status) == {"inputs", "tokenize", "train@full", "train@lora", "train@head"}  # inputs: always
    for stage in (status[name] for name in ("tokenize", "train@full", "train@lora", "train@head")):
        assert {"changed deps": {"data/inputs/model.json": "modified"}} in stage
    fingerprint = json.loads((repo / "data/inputs/model.json").read_text())
    assert fingerprint["source"] == str(model) and fingerprint["files"] == len(list(model.iterdir()))
    weights.write_bytes(original)  # the weights the later tests' models were trained from
    run(repo, "dvc", "repro", "inputs")
    assert set(json.loads(run(repo, "dvc", "status", "--json"))) == {"inputs"}


def test_two_processes_under_torchrun_train_like_one(repo):
    repo, _ = repo
    summaries = {mode: repo / f"metrics/train/{mode}.json" for mode in ("full", "lora")}
    before = {mode: read_record(summary) for mode, summary in summaries.items()}
    files = {mode: sorted(path.name for path in (repo / f"data/trained/{mode}").iterdir()) for mode in summaries}
    output = run(repo, "dvc", "exp", "run", "-S", "train.nproc=2", "train@full", "train@lora")  # training only
    assert "under torchrun with 2 processes" in output
    assert stages_run(output) == {"inputs", "train@full", "train@lora"}
    for mode, one in before.items():
        two = read_record(summaries[mode])
        assert (one["world_size"], two["world_size"]) == (1, 2)
        assert two["initial_loss"] == pytest.approx(one["initial_loss"], rel=0.05)  # the same initialisation
        assert two["final_loss"] == pytest.approx(one["final_loss"], rel=0.1)  # the same global batch of 8
        # No comparison of scores: the tiny model ends near its initial loss, and its F1 on 8
        # test questions moved 100 -> 50 in a CI run whose final losses agreed to 0.05%.
    for mode, names in files.items():  # only the main process wrote, what one process writes
        assert sorted(path.name for path in (repo / f"data/trained/{mode}").iterdir()) == names
    assert not list(repo.glob("data/trained/.*.tmp")) and not list(repo.glob(".checkpoints/*"))


def test_an_experiment_of_one_modes_stages_is_copied_and_read_back(tmp_path, tiny_model_dir):
    """`dvc exp run` of the head's branch only, in a project that never ran the other modes (as the
    reference runs' head seeds were made): the copy holds what its dvc.lock records, the head's files and
    no other mode's, and `--archive` reads it back."""
    source = write_jsonl(make_examples(20) + make_examples(10, unseen=True), tmp_path / "squad.jsonl")
    (tmp_path / "repo").mkdir()
    params = tiny_params(source, tiny_model_dir, n_examples=20)
    params["head"]["epochs"] = 1
    repo = write_project(tmp_path / "repo", **params)
    init_repo(repo, run)
    run(repo, "dvc", "exp", "run", "-n", "head-only", "evaluate@head-test")
    run(repo, sys.executable, "-m", "squad_ft.sweep", "--copy-to", str(tmp_path / "runs"))
    copy = tmp_path / "runs" / "head-only"
    assert sorted(path.name for path in (copy / "data/predictions/test").iterdir()) == ["head.json"]
    assert not (copy / "metrics/test/full.json").exists() and (copy / "metrics/train/head.json").exists()
    result = subprocess.run([sys.executable, "-m", "squad_ft.sweep", "--archive", str(copy)], cwd=repo, env=ENV,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert re.search(r"\| head +\| test +\| 1 ", result.stdout)
