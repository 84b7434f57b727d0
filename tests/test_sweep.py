"""The experiment summary: means over seeds per group, and LoRA against full fine-tuning pooled over seeds."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from squad_ft.errors import UserError
from squad_ft.metric import question_scores
from squad_ft.stats import pooled_difference
from squad_ft.experiments import archived_per_question, archived_runs
from squad_ft.sweep import plot_rank_curve, pooled_table, rank_curve, smallest_rank_within_noise, summary_table

SETTINGS = {"resamples": 2000, "seed": 0, "confidence": 0.95}


def run(rev: str, seed: int, rank: int, f1: dict[str, float]) -> dict:
    return {"name": rev, "rev": rev, "params": {"train.seed": seed, "lora.r": rank, "model.name": "m"},
            "scores": [{"mode": mode, "eval_set": "heldout", "exact_match": value - 10, "f1": value}
                       for mode, value in f1.items()]}


def per_question_scores(lora_shift: float, seed: int, questions: int = 600, modes=("full", "lora")):
    """What a run's `read` gives: its question ids and per-question scores of `modes`, correlated through a
    shared difficulty; LoRA (and head) better than full fine-tuning by `lora_shift`."""
    difficulty = np.random.default_rng(seed).random(questions)
    threshold = {"full": 0.5, "lora": 0.5 + lora_shift, "head": 0.5 + lora_shift}
    return {"questions": tuple(f"q{i}" for i in range(questions)),
            "scores": {mode: {score: (difficulty < threshold[mode]).astype(float).tolist() for score in ("exact_match", "f1")}
                       for mode in modes}}


def test_the_pooled_table_finds_a_difference_in_one_group_and_none_in_the_other():
    # rank 4: LoRA +6 points in every seed; rank 16: LoRA as good as full fine-tuning in every seed
    shifts = {"a": 0.06, "b": 0.06, "c": 0.06, "d": 0.0, "e": 0.0, "f": 0.0}
    runs = [run("a", 1, 4, {"full": 50, "lora": 56}), run("b", 2, 4, {"full": 50, "lora": 56}),
            run("c", 3, 4, {"full": 50, "lora": 56}), run("d", 1, 16, {"full": 50, "lora": 50}),
            run("e", 2, 16, {"full": 50, "lora": 50}), run("f", 3, 16, {"full": 50, "lora": 50})]
    seeds = {"a": 1, "b": 2, "c": 3, "d": 1, "e": 2, "f": 3}
    read_calls = []

    def read(rev, eval_set, modes):
        read_calls.append((rev, eval_set, tuple(modes)))
        return per_question_scores(shifts[rev], seeds[rev])

    table = pooled_table(runs, SETTINGS, read)
    # each experiment's predictions, once, of the models it scored
    assert sorted(read_calls) == sorted((rev, "heldout", ("full", "lora")) for rev in shifts)
    assert list(table["lora.r"]) == [4, 4, 16, 16] and list(table["score"]) == ["exact match", "F1"] * 2  # ranks in order
    assert set(table["seeds"]) == {"1, 2, 3"} and set(table["model"]) == {"LoRA"}
    rank4 = table[(table["lora.r"] == 4) & (table["score"] == "F1")].iloc[0]
    expected = pooled_difference(*([per_question_scores(0.06, seed)["scores"][mode]["f1"] for seed in (1, 2, 3)]
                                   for mode in ("full", "lora")), SETTINGS)
    low, high = expected["interval"]
    assert rank4["minus full, pooled"] == f"{expected['difference']:+.1f} [{low:.1f}, {high:.1f}]"
    assert rank4["minus full, per seed"] == ", ".join(f"{seed['difference']:+.1f}" for seed in expected["per_seed"])
    assert rank4["verdict"] == "LoRA better (the interval excludes 0)"
    rank16 = table[(table["lora.r"] == 16) & (table["score"] == "F1")].iloc[0]
    assert rank16["minus full, pooled"] == "+0.0 [0.0, 0.0]"  # the same answers: exactly no difference
    assert rank16["verdict"] == "within noise (the interval includes 0)"


def scored_run(rev: str, seed: int, modes, **params) -> dict:
    return {"name": rev, "rev": rev, "params": {"train.seed": seed, **params},
            "scores": [{"mode": mode, "eval_set": "heldout", "exact_match": 40.0, "f1": 50.0} for mode in modes]}


def test_a_seeds_head_run_made_later_pools_with_its_full_and_lora_run():
    """The head mode run later on the same data (its params.yaml has a head section the first runs lack):
    one group, each seed's head paired with that seed's full fine-tuning."""
    runs = [scored_run(f"fl{seed}", seed, ("full", "lora")) for seed in (1, 2, 3)] + \
           [scored_run(f"h{seed}", seed, ("head",), **{"head.epochs": 10}) for seed in (1, 2, 3)]
    reads = {f"fl{seed}": per_question_scores(0.0, seed) for seed in (1, 2, 3)}
    reads.update({f"h{seed}": per_question_scores(-0.2, seed, modes=("head",)) for seed in (1, 2, 3)})
    table = pooled_table(runs, SETTINGS, lambda rev, eval_set, modes: reads[rev])
    assert list(table["model"]) == ["LoRA", "LoRA", "Head only", "Head only"] and set(table["seeds"]) == {"1, 2, 3"}
    head = table[(table["model"] == "Head only") & (table["score"] == "F1")].iloc[0]
    differences = [100 * (np.mean(reads[f"h{seed}"]["scores"]["head"]["f1"]) - np.mean(reads[f"fl{seed}"]["scores"]["full"]["f1"]))
                   for seed in (1, 2, 3)]  # each seed's head against that seed's full fine-tuning
    assert head["minus full, per seed"] == ", ".join(f"{difference:+.1f}" for difference in differences)
    assert head["verdict"].startswith("full fine-tuning better")


def test_pooled_runs_on_other_questions_or_repeating_a_seed_are_one_error():
    runs = [scored_run("a", 1, ("full", "lora")), scored_run("b", 2, ("full", "lora"))]
    other = per_question_scores(0.0, 2)
    other["questions"] = tuple(f"x{i}" for i in range(600))  # as many questions, other ones
    reads = {"a": per_question_scores(0.0, 1), "b": other}
    with pytest.raises(UserError, match="b and a were scored on different heldout questions"):
        pooled_table(runs, SETTINGS, lambda rev, eval_set, modes: reads[rev])
    runs = [scored_run("a", 1, ("full", "lora")), scored_run("b", 1, ("full", "lora"))]
    with pytest.raises(UserError, match="a and b both hold full of train.seed 1: a seed counts once"):
        pooled_table(runs, SETTINGS, lambda rev, eval_set, modes: per_question_scores(0.0, 1))


def test_one_seed_says_its_interval_is_the_questions_alone():
    table = pooled_table([scored_run("a", 1, ("full", "lora"))], SETTINGS,
                         lambda rev, eval_set, modes: per_question_scores(0.05, 1))
    assert all(verdict.startswith("one seed: question-level interval only; ") for verdict in table["verdict"])


def test_the_means_table_groups_by_what_varies_other_than_the_seed():
    runs = [run("a", 1, 4, {"full": 50, "lora": 52}), run("b", 2, 4, {"full": 54, "lora": 56})]
    table = summary_table(runs)
    assert "train.seed" not in table.columns and "model.name" not in table.columns  # constant: no column
    full = table[table["model"] == "full"].iloc[0]
    assert (full["runs"], full["seeds"], full["F1"]) == (2, "1, 2", f"52.0 ± {np.std([50, 54], ddof=1):.1f}")


def test_the_rank_curve_pools_each_rank_and_names_the_smallest_within_noise(tmp_path):
    """Ranks 1 and 4 worse than full fine-tuning in every seed, 16 as good: 16 is the smallest within noise
    (three seeds: at two, Student's t with one degree of freedom keeps 0 inside every interval here)."""
    shifts = {1: -0.15, 4: -0.08, 16: 0.0}
    runs, reads = [], {}
    for rank, shift in shifts.items():
        for seed in (1, 2, 3):
            rev = f"r{rank}s{seed}"
            runs.append({"name": rev, "rev": rev, "params": {"train.seed": seed, "lora.r": rank},
                         "scores": [{"mode": "full", "eval_set": "heldout", "trainable_params": 1000, "f1": 50},
                                    {"mode": "lora", "eval_set": "heldout", "trainable_params": 10 * rank, "f1": 50}]})
            reads[rev] = per_question_scores(shift, seed)
    curve, full = rank_curve(runs, SETTINGS, lambda rev, eval_set, modes: reads[rev])
    assert list(curve["lora.r"]) == [1, 4, 16] and list(curve["share_of_full"]) == [0.01, 0.04, 0.16]
    assert list(curve["verdict"][:2]) == ["full fine-tuning better (the interval excludes 0)"] * 2
    assert curve["verdict"].iloc[2] == "within noise (the interval includes 0)"
    assert smallest_rank_within_noise(curve) == 16
    assert (curve["f1_low"] <= curve["f1"]).all() and (curve["f1"] <= curve["f1_high"]).all()
    assert curve["f1"].iloc[0] < curve["f1"].iloc[1] < curve["f1"].iloc[2]
    assert full["interval"][0] <= full["mean"] == curve["f1"].iloc[2] <= full["interval"][1]  # rank 16 answers as full
    plot_rank_curve(curve, full, "heldout", tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rank_curve_of_experiments_differing_in_more_than_the_rank_is_one_error():
    """lora.alpha set with each rank is part of the sweep; a learning rate that differs at one rank is not."""
    runs = [{"name": name, "rev": name, "params": {"train.seed": seed, "lora.r": rank, "lora.alpha": 2 * rank,
                                                    "lora.learning_rate": rate}, "scores": []}
            for name, seed, rank, rate in (("a", 1, 4, 1e-3), ("b", 2, 4, 2e-3), ("c", 1, 8, 1e-3))]
    with pytest.raises(UserError, match=r"differ only in lora.r \(and what is set with it\) and train.seed; these "
                                        r"also differ in lora.learning_rate at one rank"):
        rank_curve(runs, SETTINGS, lambda rev, eval_set, modes: {})


def test_groups_with_a_null_parameter_sort_after_the_numbers():
    """`heldout.n_examples: all` reads as null beside 12 (a real sweep's mix): numbers first, no error."""
    runs = []
    for rev, count in (("a", None), ("b", 12), ("c", 30)):
        runs.append({"name": rev, "rev": rev, "params": {"train.seed": 1, "heldout.n_examples": "null" if count is None else count},
                     "scores": [{"mode": "full", "eval_set": "heldout"}, {"mode": "lora", "eval_set": "heldout"}]})
    table = pooled_table(runs, SETTINGS, lambda rev, eval_set, modes: per_question_scores(0.0, 1))
    assert list(table["heldout.n_examples"].drop_duplicates()) == [12, 30, "null"]


def test_finished_experiments_join_each_evaluation_to_its_models_training_costs():
    """From `dvc exp show --json`: the evaluations by their dvc.yaml paths, each with its model's
    training record; a queued experiment (no metrics yet) and the baseline row are left out."""
    from squad_ft.experiments import finished_experiments

    metrics = {"metrics/train/full.json": {"trainable_params": 1000, "train_runtime_s": 9.0},
               "metrics/train/lora.json": {"trainable_params": 40, "train_runtime_s": 7.0},
               "metrics/test/full.json": {"exact_match": 30.0, "f1": 40.0},
               "metrics/heldout/lora.json": {"exact_match": 20.0, "f1": 35.0},
               "metrics/heldout/lora_vs_full.json": {"f1_difference": -1.0}}
    params = {"params.yaml": {"data": {"train": {"seed": 1}, "lora": {"r": 4}}}}
    exp_show = [{"rev": "workspace", "data": {"metrics": {}}},
                {"rev": "abc", "experiments": [
                    {"name": "done", "revs": [{"rev": "e1", "data": {"params": params, "metrics": {
                        path: {"data": data} for path, data in metrics.items()}}}]},
                    {"name": "queued", "revs": [{"rev": "e2", "data": {"params": params, "metrics": {}}}]},
                ]}]
    [run_] = finished_experiments(exp_show)
    assert (run_["name"], run_["rev"], run_["params"]) == ("done", "e1", {"train.seed": 1, "lora.r": 4})
    assert run_["scores"] == [
        {"mode": "full", "eval_set": "test", "trainable_params": 1000, "train_runtime_s": 9.0, "exact_match": 30.0, "f1": 40.0},
        {"mode": "lora", "eval_set": "heldout", "trainable_params": 40, "train_runtime_s": 7.0, "exact_match": 20.0, "f1": 35.0},
    ]


def write_archived_run(directory, questions: str, predictions: dict[str, dict[str, str]], precision: str | None = None) -> None:
    """A run copied out of DVC as `--copy-to` lays it out, with a dvc.lock recording each file's md5;
    with `precision`, trained in `train.precision: auto`, which resolved to `precision`."""
    train = {"seed": 3, **({"precision": "auto"} if precision else {})}
    files = {"params.yaml": yaml.safe_dump({"train": train, "lora": {"r": 4}}),
             **({f"metrics/train/{mode}.details.json": json.dumps({"precision": precision}) for mode in ("full", "lora")}
                if precision else {}),
             "metrics/train/lora.json": json.dumps({"trainable_params": 40}),
             "metrics/heldout/full.json": json.dumps({"exact_match": 50.0, "f1": 60.0}),
             "metrics/heldout/lora.json": json.dumps({"exact_match": 40.0, "f1": 55.0}),
             **{f"data/predictions/heldout/{mode}.json": json.dumps(answers) for mode, answers in predictions.items()}}
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(content)
    md5 = {name: hashlib.md5(content.encode()).hexdigest() for name, content in files.items()}
    md5["data/split/heldout.jsonl"] = hashlib.md5(questions.encode()).hexdigest()
    (directory / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "evaluate": {"deps": [{"path": "data/split/heldout.jsonl", "md5": md5["data/split/heldout.jsonl"]}],
                     "params": {"params.yaml": {"train": train, "lora.r": 4}},
                     "outs": [{"path": name, "md5": digest} for name, digest in md5.items() if name != "params.yaml"]}}}))


def test_an_archived_run_reads_back_its_params_scores_and_predictions(tmp_path, monkeypatch):
    questions = "".join(json.dumps({"id": q, "answers": {"text": [text], "answer_start": [0]}}) + "\n"
                        for q, text in (("q1", "Paris"), ("q2", "1976"), ("q3", "the Nile")))
    predictions = {"full": {"q1": "Paris", "q2": "1975", "q3": "Nile"}, "lora": {"q1": "paris", "q2": "1976", "q3": "a river"}}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/split").mkdir(parents=True)
    (tmp_path / "data/split/heldout.jsonl").write_text(questions)
    write_archived_run(tmp_path / "runs/seed-3", questions, predictions)

    [run_] = archived_runs([tmp_path / "runs/seed-3"])
    assert (run_["name"], run_["params"]) == ("seed-3", {"train.seed": 3, "lora.r": 4})
    assert run_["scores"] == [{"mode": "full", "eval_set": "heldout", "exact_match": 50.0, "f1": 60.0},
                              {"mode": "lora", "eval_set": "heldout", "trainable_params": 40, "exact_match": 40.0, "f1": 55.0}]
    references = {"q1": ["Paris"], "q2": ["1976"], "q3": ["the Nile"]}
    scored = archived_per_question(run_["rev"], "heldout", ["full", "lora"])
    assert scored["questions"] == ("q1", "q2", "q3")
    scores = scored["scores"]
    assert scores == {mode: question_scores(answers, references) for mode, answers in predictions.items()}
    assert scores["full"]["exact_match"] == [1.0, 0.0, 1.0] and scores["lora"]["exact_match"] == [1.0, 1.0, 0.0]


def test_an_archived_run_whose_files_differ_from_its_dvc_lock_is_one_error(tmp_path, monkeypatch):
    """An edited prediction, or other questions in the workspace than the run was scored on."""
    questions = json.dumps({"id": "q1", "answers": {"text": ["Paris"], "answer_start": [0]}}) + "\n"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/split").mkdir(parents=True)
    (tmp_path / "data/split/heldout.jsonl").write_text(questions)
    run_ = tmp_path / "seed-3"
    write_archived_run(run_, questions, {"full": {"q1": "Paris"}, "lora": {"q1": "Lyon"}})
    (run_ / "data/predictions/heldout/lora.json").write_text(json.dumps({"q1": "Paris"}))
    with pytest.raises(UserError, match=r"lora.json is not the data/predictions/heldout/lora.json its dvc.lock recorded"):
        archived_per_question(str(run_), "heldout", ["full", "lora"])
    write_archived_run(run_, questions, {"full": {"q1": "Paris"}, "lora": {"q1": "Lyon"}})
    (tmp_path / "data/split/heldout.jsonl").write_text(questions.replace("q1", "q9"))
    with pytest.raises(UserError, match=r"data/split/heldout.jsonl is not the data/split/heldout.jsonl its dvc.lock"):
        archived_per_question(str(run_), "heldout", ["full", "lora"])


@pytest.mark.parametrize("edit, message", [
    (lambda run_: (run_ / "metrics/heldout/lora.json").write_text(json.dumps({"exact_match": 99.0, "f1": 99.0})),
     r"metrics/heldout/lora.json is not the metrics/heldout/lora.json its dvc.lock recorded \(md5 differs\)"),
    (lambda run_: (run_ / "metrics/heldout/full.json").unlink(), r"cannot read .*metrics/heldout/full.json"),
    (lambda run_: (run_ / "params.yaml").write_text(yaml.safe_dump({"train": {"seed": 4}, "lora": {"r": 4}})),
     r"its params.yaml is not the one its dvc.lock recorded \(train differs\)"),
    (lambda run_: (run_ / "dvc.lock").write_text("schema: '2.0'\n"), r"cannot read its dvc.lock: 'stages'"),
])
def test_an_archived_run_with_an_edited_or_missing_file_is_one_error(tmp_path, edit, message):
    """What the summary groups and averages by must be what DVC recorded: no stale or edited copy."""
    questions = json.dumps({"id": "q1", "answers": {"text": ["Paris"], "answer_start": [0]}}) + "\n"
    write_archived_run(tmp_path / "seed-3", questions, {"full": {"q1": "Paris"}, "lora": {"q1": "Lyon"}})
    assert archived_runs([tmp_path / "seed-3"])[0]["params"] == {"train.seed": 3, "lora.r": 4}  # as written, it reads
    edit(tmp_path / "seed-3")
    with pytest.raises(UserError, match=message):
        archived_runs([tmp_path / "seed-3"])


def test_archived_runs_in_auto_precision_group_by_the_precision_each_machine_used(tmp_path):
    """`auto` is bf16 on a CPU with native bf16 and fp32 elsewhere: copies from both are two groups."""
    questions = json.dumps({"id": "q1", "answers": {"text": ["Paris"], "answer_start": [0]}}) + "\n"
    for precision in ("bf16", "fp32"):
        write_archived_run(tmp_path / precision, questions, {"full": {"q1": "Paris"}, "lora": {"q1": "Lyon"}}, precision)
    runs = archived_runs([tmp_path / "bf16", tmp_path / "fp32"])
    assert [run_["params"]["train.precision"] for run_ in runs] == ["auto (bf16)", "auto (fp32)"]
    table = summary_table(runs)
    assert list(table["train.precision"]) == ["auto (bf16)"] * 2 + ["auto (fp32)"] * 2
    assert list(table["runs"]) == [1, 1, 1, 1]
    write_archived_run(tmp_path / "fixed", questions, {"full": {"q1": "Paris"}, "lora": {"q1": "Lyon"}})
    assert "train.precision" not in archived_runs([tmp_path / "fixed"])[0]["params"]  # no auto: nothing added


def test_the_summary_takes_its_paths_from_dvc_yaml(tmp_path):
    """The paths come from the pipeline's own dvc.yaml (here with its outputs moved), not from copies of it."""
    from helpers import ROOT

    from squad_ft.experiments import ARCHIVED, _outermost_folders, path_templates, report_path

    moved = (ROOT / "dvc.yaml").read_text().replace("data/predictions/", "outputs/answers/").replace(
        "metrics/train/", "metrics/training/").replace("metrics/report.md", "reports/comparison.md")
    (tmp_path / "dvc.yaml").write_text(moved)
    assert report_path(tmp_path / "dvc.yaml") == Path("reports/comparison.md")
    assert report_path() == Path("metrics/report.md")
    # what --copy-to copies: the outermost folders of the predictions and metrics
    assert ARCHIVED == ("params.yaml", "dvc.lock", "data/predictions", "metrics")
    assert _outermost_folders(*path_templates(tmp_path / "dvc.yaml")[1:]) == ("metrics", "outputs/answers")
    assert path_templates(tmp_path / "dvc.yaml") == (
        "data/split/{set}.jsonl", "outputs/answers/{set}/{mode}.json", "metrics/{set}/{mode}.json",
        "metrics/training/{mode}.json", "metrics/validation/{mode}.json")
    assert path_templates() == ("data/split/{set}.jsonl", "data/predictions/{set}/{mode}.json",
                                "metrics/{set}/{mode}.json", "metrics/train/{mode}.json", "metrics/validation/{mode}.json")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(UserError, match="cannot find the evaluate and train stages' paths"):
        path_templates(tmp_path / "dvc.yaml")
