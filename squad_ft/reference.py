"""The reference experiment's published table, the figures this project's report is set beside.

distilbert-base-uncased on the first 5,000 SQuAD v1.1 train examples (4,000 train / 1,000 test), on
one NVIDIA RTX 3080 Ti (memory: GPU memory). Its "LoRA" row trained 1,538 parameters: exactly
DistilBERT's QA head (768 x 2 weights + 2 biases), so it is this project's `head` mode (a frozen
encoder with a trained head), not LoRA with trained adapters. Its full fine-tuning's 66,364,418 are
DistilBERT's 66,362,880 plus that head.
"""
from __future__ import annotations

MODEL = "distilbert-base-uncased"
MACHINE = "NVIDIA RTX 3080 Ti (GPU memory)"
PUBLISHED = {  # mode: the published row, in this project's metric names
    "full": {"epochs": 3, "trainable_params": 66_364_418, "train_runtime_s": 229, "peak_memory_gb": 4.6,
             "initial_loss": 2.29, "exact_match": 50.2, "f1": 63.0},
    "head": {"epochs": 10, "trainable_params": 1_538, "train_runtime_s": 139, "peak_memory_gb": 1.0,
             "initial_loss": 3.7, "exact_match": 12.1, "f1": 18.6},
}
