"""Sharing through a DVC remote, as a team does: push a run, pull it in a fresh clone with nothing to
re-run, and bring an experiment across clones with its outputs (a local-directory remote, a bare git
repository as `origin`, the project's hard-link cache)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from helpers import init_repo, make_examples, run, tiny_params, write_jsonl, write_project

OUTPUTS = ("data/features", "data/split/train.jsonl", "data/split/heldout.jsonl",
           *(f"data/trained/{mode}" for mode in ("full", "lora", "head")),
           *(f"data/predictions/{s}/{mode}.json" for s in ("test", "heldout") for mode in ("full", "lora", "head")),
           *(f"dvclive/{mode}" for mode in ("full", "lora", "head")),
           *(f"models/{variant}" for variant in ("full", "lora", "lora-merged", "head")))


def digest(path: Path) -> str:
    """A hash of a file, or of a folder's files and their names."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    total = hashlib.sha256()
    for file in files:
        total.update(f"{file.relative_to(path) if path.is_dir() else ''}\0".encode() + file.read_bytes())
    return total.hexdigest()


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_a_pushed_run_and_experiment_come_back_in_a_fresh_clone_without_re_running(tmp_path, tiny_model_dir):
    examples = make_examples(24) + make_examples(12, unseen=True)
    source = write_jsonl(examples, tmp_path / "squad.jsonl")
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    params = tiny_params(source, model, n_examples=24)
    params.update({mode: {**params[mode], "epochs": 1} for mode in ("full", "lora", "head")})
    (tmp_path / "first").mkdir()
    first = write_project(tmp_path / "first", **params)
    init_repo(first, run)
    assert "type = hardlink" in (first / ".dvc/config").read_text()  # the project's cache setting

    run(tmp_path, "git", "init", "-q", "--bare", "origin.git")
    run(first, "git", "remote", "add", "origin", str(tmp_path / "origin.git"))
    run(first, "dvc", "remote", "add", "-d", "storage", str(tmp_path / "storage"))
    run(first, "dvc", "repro")
    run(first, "git", "add", "-A")
    run(first, "git", "commit", "-qm", "a run")
    run(first, "dvc", "push")
    run(first, "git", "push", "-q", "origin", "HEAD:main")

    run(tmp_path, "git", "clone", "-q", "-b", "main", str(tmp_path / "origin.git"), "second")
    second = tmp_path / "second"
    run(second, "dvc", "pull")
    for output in OUTPUTS:  # every output back, as the first clone made it
        assert digest(second / output) == digest(first / output), output
    for metrics in (first / "metrics").rglob("*.json"):  # in git (cache: false)
        assert (second / metrics.relative_to(first)).read_bytes() == metrics.read_bytes()
    assert json.loads(run(second, "dvc", "status", "--json")) == {"inputs": ["always changed"]}
    assert stages_run(run(second, "dvc", "repro")) == {"inputs"}  # nothing to re-run: the fingerprints agree

    run(first, "dvc", "exp", "run", "-S", "lora.r=8", "-n", "rank8")
    trained = digest(first / "data/trained/lora")
    run(first, "dvc", "exp", "push", "origin", "rank8")
    run(second, "dvc", "exp", "pull", "origin", "rank8")
    shown = json.loads(run(second, "dvc", "exp", "show", "--json"))
    [experiment] = [e for commit in shown for e in commit.get("experiments") or [] if e.get("name") == "rank8"]
    data = experiment["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["lora"]["r"] == 8
    assert data["metrics"]["metrics/heldout/lora.json"]["data"] == json.loads((first / "metrics/heldout/lora.json").read_text())
    run(second, "dvc", "exp", "apply", "rank8")
    assert digest(second / "data/trained/lora") == trained  # the experiment's outputs, from the remote
    assert stages_run(run(second, "dvc", "repro")) == {"inputs"}  # nothing re-trained
