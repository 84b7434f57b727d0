"""Input fingerprints that cannot be fooled: the hash cache sees every content change that a copy or a
restored timestamp hides, folders are hashed through their symbolic links, and a moving branch is seen."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_examples, tiny_params, write_jsonl, write_project
from stand_in_hub import Repository, StandInHub

from squad_ft import inputs
from squad_ft.errors import UserError
from squad_ft.inputs import content_hash


@pytest.fixture
def cached(monkeypatch):
    """Trust the cache for files however recent (the tests write them a moment before hashing)."""
    monkeypatch.setattr(inputs, "RECENT_S", 0.0)
    return {}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_same_size_edit_with_its_old_modification_time_restored_is_hashed_again(tmp_path, cached):
    """`touch -r` (or os.utime) puts the old modification time back; the status-change time moves anyway."""
    file = tmp_path / "train.json"
    file.write_text('{"answer": "paris"}')
    before = file.stat()
    assert content_hash(file, cached)["sha256"] == sha256(file)
    file.write_text('{"answer": "rome!"}')  # the same size
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (file.stat().st_size, file.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert content_hash(file, cached)["sha256"] == sha256(file)


def test_a_file_copied_over_with_cp_p_is_hashed_again(tmp_path, cached):
    """`cp -p` of another file of the same size and modification time (an old copy, a tar member)."""
    file, other = tmp_path / "weights.bin", tmp_path / "other.bin"
    file.write_bytes(b"a" * 64)
    other.write_bytes(b"b" * 64)
    stamp = file.stat().st_mtime_ns
    os.utime(other, ns=(stamp, stamp))
    assert content_hash(file, cached)["sha256"] == sha256(file)
    subprocess.run(["cp", "-p", str(other), str(file)], check=True)
    assert (file.stat().st_size, file.stat().st_mtime_ns) == (64, stamp)
    assert content_hash(file, cached)["sha256"] == sha256(file) == sha256(other)


def test_a_file_changed_within_the_last_seconds_is_hashed_and_not_cached(tmp_path):
    file = tmp_path / "data.json"
    file.write_text("{}")
    cache = {}
    assert content_hash(file, cache)["sha256"] == sha256(file)
    assert cache == {}  # a second write in the same timestamp tick could leave every stamp as it is


def test_a_folder_is_hashed_through_its_symlinked_sub_folders(tmp_path, cached):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.safetensors").write_bytes(b"weights")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "shards").symlink_to(elsewhere, target_is_directory=True)
    first = content_hash(model, cached)
    assert (first["files"], first["bytes"]) == (2, len(b"weights") + 2)
    (elsewhere / "model.safetensors").write_bytes(b"WEIGHTS")
    assert content_hash(model, cached)["sha256"] != first["sha256"]


def test_a_symlink_back_into_the_folder_is_one_clear_error(tmp_path, cached):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "loop").symlink_to(model, target_is_directory=True)
    with pytest.raises(UserError, match="leads back to a folder it is in"):
        content_hash(model, cached)


def test_a_branch_revision_records_its_commit_and_sees_the_branch_move(tmp_path, tiny_model_dir):
    """`model.revision: main` on the stand-in Hub: the fingerprint records the commit main points to, so
    moving main to another commit changes the fingerprint (and so re-runs what reads the model)."""
    source = write_jsonl(make_examples(20), tmp_path / "squad.jsonl")
    (tmp_path / "project").mkdir()
    project = write_project(tmp_path / "project", **tiny_params(source, tiny_model_dir, n_examples=20))
    params = (project / "params.yaml").read_text().replace(f"name: {tiny_model_dir}", "name: org/tiny")
    (project / "params.yaml").write_text(params.replace(
        "revision: 12040accade4e8a0f71eabdb258fecc2e7e948be", "revision: main"))
    files = {path.name: path.read_bytes() for path in Path(tiny_model_dir).iterdir() if path.is_file()}
    model = Repository("model", "org/tiny", "a" * 40, files)
    fingerprints = []
    with StandInHub([model]) as hub:
        for commit in ("a" * 40, "b" * 40):
            model.commit = commit  # the branch moves
            result = subprocess.run([sys.executable, "-m", "stages.inputs", "--out", "data/inputs"], cwd=project,
                                    env={**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"},
                                    capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            fingerprints.append(json.loads((project / "data/inputs/model.json").read_text()))
    assert fingerprints == [{"source": "org/tiny", "local": False, "revision": "main", "commit": commit}
                            for commit in ("a" * 40, "b" * 40)]
    assert ("GET", "/api/models/org/tiny/revision/main") in hub.requests
