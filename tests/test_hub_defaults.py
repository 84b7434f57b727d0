"""The committed defaults, run as committed: params.yaml's `data`, `heldout` and `model` sections untouched
(Hub ids at their pinned revisions), every stage of `dvc repro` loading them through the Hub clients
from a stand-in Hub on 127.0.0.1 (tests/stand_in_hub.py), only the scale made small.

What this proves: the Hub code path of every stage (dataset and model ids, revisions, downloads into
an empty cache, a LoRA adapter's base model in evaluation and packaging) works end to end, and the
pins are what is loaded and recorded. What it cannot prove: that the real repositories hold at
those commits what the stand-ins hold (a tiny random DistilBERT, Parquet files of real SQuAD
questions), nor the scores of the real weights.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import ROOT, SAMPLE_SQUAD, init_repo, write_project
from stand_in_hub import Repository, StandInHub

from squad_ft.data import load_examples

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())
MODEL, MODEL_REVISION = DEFAULTS["model"]["name"], DEFAULTS["model"]["revision"]
DATASET, DATASET_REVISION = DEFAULTS["data"]["source"], DEFAULTS["data"]["revision"]
SCALE = {"data": {"n_examples": 40}, "heldout": {"n_examples": 20}, "validation": {"n_examples": 20},
         "full": {"epochs": 1}, "lora": {"epochs": 1}}
SQUAD_CARD = """---
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: validation
    path: plain_text/validation-*
  default: true
---
# SQuAD (stand-in: real questions from the first articles of the SQuAD v1.1 train set)
"""



def squad_parquet(examples) -> bytes:
    """Examples in the schema of rajpurkar/squad's Parquet files."""
    table = pa.Table.from_pylist(examples.to_list(), schema=pa.schema([
        ("id", pa.string()), ("title", pa.string()), ("context", pa.string()), ("question", pa.string()),
        ("answers", pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))])),
    ]))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def tiny_distilbert(words: list[str], folder: Path) -> dict[str, bytes]:
    """The files of a randomly initialised 2-layer DistilBERT with a WordPiece vocabulary of `words`."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    characters = sorted({c for word in words for c in word})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *(f"##{c}" for c in characters), *words]
    tokenizer = DistilBertTokenizerFast(vocab={w: i for i, w in enumerate(dict.fromkeys(vocab))}, model_max_length=512)
    torch.manual_seed(0)
    model = DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64))
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> list[Repository]:
    """distilbert-base-uncased and rajpurkar/squad at the pinned commits: a tiny model, real questions."""
    examples = load_examples(str(SAMPLE_SQUAD), 3286)
    train, validation = examples.select(range(600)), examples.select(range(2800, 3286))  # other articles
    words = Counter(word for text in [*train["context"], *train["question"]] for word in re.findall(r"\w+", text.lower()))
    model_files = tiny_distilbert([word for word, _ in words.most_common(3000)], tmp_path_factory.mktemp("stand-in"))
    dataset_files = {"README.md": SQUAD_CARD.encode(),
                     "plain_text/train-00000-of-00001.parquet": squad_parquet(train),
                     "plain_text/validation-00000-of-00001.parquet": squad_parquet(validation)}
    return [Repository("model", MODEL, MODEL_REVISION, model_files),
            Repository("dataset", DATASET, DATASET_REVISION, dataset_files)]


def test_the_defaults_run_end_to_end_on_the_pinned_hub_revisions(stand_ins, tmp_path):
    assert DEFAULTS["heldout"]["source"] == DATASET and DEFAULTS["heldout"]["revision"] == DATASET_REVISION
    (tmp_path / "repo").mkdir()
    repo = write_project(tmp_path / "repo", **SCALE)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section in ("data", "heldout", "model"):
        assert params[section] == {**DEFAULTS[section], **SCALE.get(section, {})}, section
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"),
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}
    init_repo(repo, lambda cwd, *command: subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True))

    with StandInHub(stand_ins) as hub:
        result = subprocess.run(["dvc", "repro"], cwd=repo, env={**env, "HF_ENDPOINT": hub.url},
                                capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=repo, env=env, capture_output=True, text=True)
    assert set(re.findall(r"Running stage '([^']+)'", result.stdout)) == set(listed.stdout.split())  # every stage

    # every file came from the pinned commits, none from `main` or anywhere else
    downloads = [path for method, path in hub.requests if "/resolve/" in path]
    assert {re.match(r"/(?:datasets/)?(.+?)/resolve/", path)[1] for path in downloads} == {MODEL, DATASET}
    for path in downloads:
        assert f"/resolve/{MODEL_REVISION}/" in path or f"/resolve/{DATASET_REVISION}/" in path, path
    assert not [path for _, path in hub.requests if "/main" in path]
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert f"/{MODEL}/resolve/{MODEL_REVISION}/{name}" in downloads
    for split in ("train", "validation"):
        assert f"/datasets/{DATASET}/resolve/{DATASET_REVISION}/plain_text/{split}-00000-of-00001.parquet" in downloads

    # ... and are recorded as such: in the fingerprints, the metrics and the LoRA adapter
    assert json.loads((repo / "data/inputs/model.json").read_text()) == {
        "source": MODEL, "local": False, "revision": MODEL_REVISION}
    for name in ("data", "heldout"):
        assert json.loads((repo / f"data/inputs/{name}.json").read_text()) == {
            "source": DATASET, "local": False, "revision": DATASET_REVISION}
    for details in ("metrics/train/full.details.json", "metrics/train/lora.details.json"):
        inputs = json.loads((repo / details).read_text())["inputs"]
        assert (inputs["model"]["revision"], inputs["data"]["revision"]) == (MODEL_REVISION, DATASET_REVISION)
    assert json.loads((repo / "metrics/heldout/data.details.json").read_text())["input"]["revision"] == DATASET_REVISION
    adapter = json.loads((repo / "models/lora/adapter_config.json").read_text())
    assert (adapter["base_model_name_or_path"], adapter["revision"]) == (MODEL, MODEL_REVISION)
    held_out = [json.loads(line)["id"] for line in (repo / "data/split/heldout.jsonl").read_text().splitlines()]
    # the dev set stands in as the sample's questions from 2,800 on: validation takes its first article, whole
    validation = [json.loads(line) for line in (repo / "data/split/validation.jsonl").read_text().splitlines()]
    after = load_examples(str(SAMPLE_SQUAD), 2800 + len(validation) + 1)
    assert [example["id"] for example in validation] == after[2800:2800 + len(validation)]["id"]
    assert len(validation) >= 20 and {example["title"] for example in validation} == {after[2800]["title"]}
    assert len(held_out) == 20 and held_out[0] == after[2800 + len(validation)]["id"]
    for variant in ("full", "lora", "lora-merged"):
        assert f"Pre-trained encoder: {MODEL} (Hub, revision {MODEL_REVISION})" in \
            (repo / f"models/{variant}/README.md").read_text(), variant
