"""Tuning: seeded trials, workers sharing a study, a killed tuning resumed, and a choice blind to test.

The worker tests run `squad_ft.tune.work` in real processes on real SQLite and journal storages with a runner that
records each trial instead of training; the last test tunes a tiny pipeline through `dvc exp run`.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ENV, ROOT, init_repo, make_examples, run, tiny_params, write_jsonl, write_project

from squad_ft.tune import draw_trials, finished_trials, open_study, report, tuning_curve

SPACE = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "r": [4, 8, 16], "use_rslora": [False, True]}

WORKER = """
import json, os, sys, time
from squad_ft.tune import open_study, work
storage, log, slow = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
study = open_study(storage, "t", "lora", json.loads(sys.argv[4]), 0, int(sys.argv[5]), {})

def runner(mode, settings, name):
    index = next(i for i, drawn in enumerate(study.user_attrs["drawn"]) if drawn == settings)
    with open(log, "a") as out:
        out.write(json.dumps({"index": index, "pid": os.getpid(), "event": "start"}) + "\\n")
    time.sleep(slow.get(str(index), 0.3))
    with open(log, "a") as out:
        out.write(json.dumps({"index": index, "pid": os.getpid(), "event": "end"}) + "\\n")
    return {"f1": 10.0 * index, "exact_match": 5.0 * index, "epoch": 1, "epochs_run": 1, "train_runtime_s": 1.0,
            "experiment": name}

work(study, runner, storage)
"""


def start_worker(storage: str, log: Path, trials: int, slow: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, storage, str(log), json.dumps(slow or {}),
                             json.dumps(SPACE), str(trials)], cwd=ROOT, env=ENV)


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_same_seed_draws_the_same_trials_from_the_space(tmp_path):
    drawn = draw_trials(SPACE, 0, 6)
    assert drawn == draw_trials(SPACE, 0, 6) and drawn != draw_trials(SPACE, 1, 6)
    assert all(1e-4 <= trial["learning_rate"] <= 1e-2 and trial["r"] in (4, 8, 16) for trial in drawn)
    assert len({json.dumps(trial, sort_keys=True) for trial in drawn}) == 6
    # a study records its draw once: opened again, or elsewhere with the same recipe, it holds the same trials
    first = open_study(f"sqlite:///{tmp_path}/a.db", "t", "lora", SPACE, 0, 6, {})
    again = open_study(f"sqlite:///{tmp_path}/a.db", "t", "lora", SPACE, 0, 6, {})
    elsewhere = open_study(f"sqlite:///{tmp_path}/b.db", "t", "lora", SPACE, 0, 6, {})
    assert first.user_attrs["drawn"] == again.user_attrs["drawn"] == elsewhere.user_attrs["drawn"] == drawn


def test_the_tuning_curve_is_computed_in_this_process(monkeypatch):
    """opda forks a process pool for its bands unless told not to; a fork of a process that has loaded torch can
    deadlock (a CI run hung there). The curve: n = 1 gives the mean score, more trials a higher expected best,
    and the band holds the curve."""
    import multiprocessing

    def no_pool(*args, **kwargs):
        raise AssertionError("the tuning curve started a process pool")

    monkeypatch.setattr(multiprocessing, "Pool", no_pool)
    scores = [40.0, 55.0, 60.0, 47.0]
    curve = tuning_curve(scores)
    assert [n for n, *_ in curve] == [1, 2, 3, 4]
    assert curve[0][1] == pytest.approx(sum(scores) / len(scores))
    expected = [point for _, point, _, _ in curve]
    assert expected == sorted(expected) and expected[-1] < max(scores)
    assert all(low <= point <= high for _, point, low, high in curve)


def test_a_study_resumed_with_another_budget_is_refused(tmp_path):
    from squad_ft.errors import UserError

    open_study(f"sqlite:///{tmp_path}/a.db", "t", "lora", SPACE, 0, 6, {})
    with pytest.raises(UserError, match="another trials"):
        open_study(f"sqlite:///{tmp_path}/a.db", "t", "lora", SPACE, 0, 8, {})


STORAGES = {"sqlite": "sqlite:///{}/studies.db", "journal": "{}/studies.journal"}  # a database; a text file for git


@pytest.mark.parametrize("kind", STORAGES)
def test_two_workers_on_one_study_run_every_trial_once(tmp_path, kind):
    storage, log = STORAGES[kind].format(tmp_path), tmp_path / "trials.jsonl"
    open_study(storage, "t", "lora", SPACE, 0, 8, {})  # the first worker's draw, before the others start
    workers = [start_worker(storage, log, 8, slow={str(i): 1.0 for i in range(8)}) for _ in range(2)]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    started = [event["index"] for event in events(log) if event["event"] == "start"]
    assert sorted(started) == list(range(8))  # every trial, none twice
    assert len({event["pid"] for event in events(log)}) == 2  # and both worked
    study = open_study(storage, "t", "lora", SPACE, 0, 8, {})
    assert [trial["index"] for trial in finished_trials(study)] == list(range(8))


@pytest.mark.parametrize("kind", STORAGES)
def test_a_killed_tuning_resumes_and_runs_no_finished_trial_again(tmp_path, kind):
    storage, log = STORAGES[kind].format(tmp_path), tmp_path / "trials.jsonl"
    worker = start_worker(storage, log, 4, slow={"2": 60})
    deadline = time.time() + 60
    while not any(event["index"] == 2 for event in events(log)) and time.time() < deadline:
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)  # in the middle of the third trial: nothing can clean up
    worker.wait(timeout=30)
    assert [(e["index"], e["event"]) for e in events(log)] == [(0, "start"), (0, "end"), (1, "start"), (1, "end"),
                                                               (2, "start")]
    resumed = start_worker(storage, log, 4)
    assert resumed.wait(timeout=120) == 0
    runs = [e["index"] for e in events(log) if e["event"] == "start"]
    assert runs[:3] == [0, 1, 2] and sorted(runs[3:]) == [2, 3]  # the cut-off trial again, no finished one
    study = open_study(storage, "t", "lora", SPACE, 0, 4, {})
    assert [trial["f1"] for trial in finished_trials(study)] == [0.0, 10.0, 20.0, 30.0]


@pytest.mark.parametrize("claimed_by", ["an earlier boot", "another machine"])
def test_a_trial_claimed_before_the_machine_restarted_runs_again(tmp_path, claimed_by):
    """A study kept in git and resumed in a later session: the worker that claimed a trial had a pid that now
    belongs to a live process (this one), but an earlier boot of this host, or another machine (a file storage
    is shared on one machine only): it is gone."""
    import os
    import socket

    from optuna.trial import TrialState

    from squad_ft.tune import _boot, work

    storage = str(tmp_path / "studies.journal")
    study = open_study(storage, "t", "lora", SPACE, 0, 2, {})
    ran = []
    work(study, lambda mode, settings, name: ran.append(settings) or {"f1": 1.0}, storage, limit=1)
    claimed = study.ask()  # the second trial, claimed by a worker of an earlier boot, then the session ended
    host, boot = (socket.gethostname(), "an earlier boot") if claimed_by == "an earlier boot" else ("elsewhere", _boot())
    claimed.set_user_attr("worker", {"host": host, "boot": boot, "pid": os.getpid()})
    running = [trial for trial in study.get_trials() if trial.state == TrialState.RUNNING]
    assert len(running) == 1 and running[0].user_attrs["index"] == 1
    assert work(study, lambda mode, settings, name: ran.append(settings) or {"f1": 2.0}, storage) == 1
    assert ran == study.user_attrs["drawn"]  # each drawn trial run once here: the first, then the abandoned one
    assert [trial["f1"] for trial in finished_trials(study)] == [1.0, 2.0]


def test_the_modes_take_turns_also_after_a_stop(tmp_path):
    """Each next trial is one of a mode with the fewest finished: a tuning stopped after full fine-tuning's
    first trial resumes with LoRA's and the head's, so the modes never drift apart."""
    from squad_ft.tune import take_turns, work

    storage = str(tmp_path / "studies.journal")
    studies = [open_study(storage, "t", mode, SPACE, 0, 2, {}) for mode in ("full", "lora", "head")]
    ran = []

    def runner(mode, settings, name):
        ran.append(mode)
        return {"f1": 1.0}

    work(studies[0], runner, storage, limit=1)  # then the tuning stopped
    assert take_turns(studies, runner, storage) == 5
    assert ran == ["full", "lora", "head", "full", "lora", "head"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_model_dir):
    """A tiny pipeline run once (test and held-out scored), then tuned: 2 trials of full and of lora."""
    root = tmp_path_factory.mktemp("tune")
    source = write_jsonl(make_examples(40) + make_examples(30, unseen=True), root / "squad.jsonl")
    (root / "repo").mkdir()
    repo = write_project(root / "repo", **tiny_params(source, tiny_model_dir))
    init_repo(repo, run)
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "first run")
    params_before = (repo / "params.yaml").read_text()
    output = run(repo, sys.executable, "-m", "squad_ft.tune", "--trials", "2", "--modes", "full", "lora",
                 "-S", "full.epochs=1", "-S", "lora.epochs=1", "--copy-to", "runs")
    return repo, output, params_before


def test_tuning_runs_each_trial_as_a_dvc_experiment_of_the_training_alone(tuned):
    repo, output, params_before = tuned
    assert (repo / "params.yaml").read_text() == params_before  # every trial started from the same params
    shown = json.loads(run(repo, "dvc", "exp", "show", "--json"))
    experiments = {exp["name"]: exp["revs"][0]["data"] for commit in shown for exp in commit.get("experiments") or []}
    assert set(experiments) == {"tune-full-0", "tune-full-1", "tune-lora-0", "tune-lora-1"}
    for name, data in experiments.items():
        mode = name.split("-")[1]
        params = data["params"]["params.yaml"]["data"]
        assert params[mode]["epochs"] == 1
        metrics = data["metrics"]
        assert "f1" in metrics[f"metrics/validation/{mode}.json"]["data"]
        for eval_set in ("test", "heldout"):  # never scored by a trial: the experiment holds the first run's
            committed = json.loads(run(repo, "git", "show", f"HEAD:metrics/{eval_set}/{mode}.json"))
            assert metrics[f"metrics/{eval_set}/{mode}.json"]["data"] == committed
    drawn = draw_trials(yaml.safe_load(params_before)["tune"]["space"]["lora"], 0, 2)
    lora = [experiments[f"tune-lora-{i}"]["params"]["params.yaml"]["data"]["lora"] for i in range(2)]
    assert [{key: run_params[key] for key in drawn[0]} for run_params in lora] == drawn
    # the modes take turns, so that a tuning stopped early has given each the same number of trials
    started = [line.split("(")[1].split(")")[0] for line in output.splitlines() if line.startswith("trial ")]
    assert started == ["full", "lora", "full", "lora"]


def test_each_finished_trial_is_copied_with_its_training_metrics_alone(tuned):
    repo, _, _ = tuned
    shown = json.loads(run(repo, "dvc", "exp", "show", "--json"))
    experiments = {exp["name"]: exp["revs"][0]["data"] for commit in shown for exp in commit.get("experiments") or []}
    for name, data in experiments.items():
        mode, copy = name.split("-")[1], repo / "runs" / name
        copied = sorted(path.relative_to(copy).as_posix() for path in copy.rglob("*") if path.is_file())
        assert copied == sorted([".gitattributes", "dvc.lock", "params.yaml", f"metrics/train/{mode}.json",
                                 f"metrics/train/{mode}.details.json", f"metrics/validation/{mode}.json",
                                 f"metrics/validation/{mode}.details.json"])
        assert yaml.safe_load((copy / "params.yaml").read_text()) == data["params"]["params.yaml"]["data"]
        for metrics in ("train", "validation"):
            assert json.loads((copy / f"metrics/{metrics}/{mode}.json").read_text()) == \
                data["metrics"][f"metrics/{metrics}/{mode}.json"]["data"]


def test_the_choice_reads_validation_alone(tuned):
    repo, _, _ = tuned
    command = (sys.executable, "-m", "squad_ft.tune", "--report", "--modes", "full", "lora", "--plot", "curve.png")
    before = run(repo, *command)
    for path in [*repo.glob("data/predictions/*/*.json"), *repo.glob("metrics/test/*.json"),
                 *repo.glob("metrics/heldout/*.json")]:
        path.write_text(json.dumps({"garbage": True}))  # what a choice that looked at test would change with
    assert run(repo, *command) == before
    assert (repo / "curve.png").stat().st_size > 0
    for mode in ("full", "lora"):
        rows = [line for line in before.splitlines() if line.startswith("| ") and f"tune-{mode}-" in line]
        assert len(rows) == 2
        scores = [float(row.split("|")[-5]) for row in rows]
        chosen = [row for row in rows if "(chosen)" in row]
        assert len(chosen) == 1 and float(chosen[0].split("|")[-5]) == max(scores)
    assert "dvc exp run --queue -n tuned-seed42" in before
