"""What the backward pass keeps: the activations saved by one training forward pass, per variant.

    python -m benchmarks.saved_tensors --model PATH_OR_HUB_ID --squad PATH [--batch-size 16]

A forward pass of the model in training mode on the longest `--batch-size` training features of
the first 400 questions of `--squad` (windows of model.max_length), counting each tensor autograd
saves for the backward pass once (parameters excluded), in fp32 and under bf16 autocast (the
same tensors on every CPU, whether it computes bf16 natively or not). This is an accounting of memory that
any allocator must hold at the end of the forward pass, not a timing: the benchmark is
`benchmarks.run`.
"""
from __future__ import annotations

import argparse
import collections

import pandas as pd
import torch
from transformers import DataCollatorWithPadding, set_seed

from squad_ft.data import load_examples
from squad_ft.features import tokenize
from squad_ft.memory import saved_for_backward_mb
from squad_ft.modeling import build_model, load_tokenizer
from squad_ft.params import load_params
from squad_ft.stage import quiet_libraries

VARIANTS = {  # name: (mode, attention dropout (None: the model's own), LoRA dropout, bf16 autocast)
    "full, model's attention dropout": ("full", None, None, False),
    "full": ("full", 0.0, None, False),
    "full, bf16 autocast": ("full", 0.0, None, True),
    "lora, model's attention dropout": ("lora", None, 0.0, False),
    "lora, dropout 0.1": ("lora", 0.0, 0.1, False),
    "lora": ("lora", 0.0, 0.0, False),
    "lora, bf16 autocast": ("lora", 0.0, 0.0, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--squad", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    quiet_libraries()
    params = load_params()
    tokenizer = load_tokenizer(args.model)
    features = tokenize(load_examples(args.squad, 400), tokenizer, params["model"], True)
    longest = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))[:args.batch_size]
    batch = DataCollatorWithPadding(tokenizer, return_tensors="pt")([features[i] for i in longest])
    rows = collections.OrderedDict()
    for name, (mode, attention_dropout, lora_dropout, bf16) in VARIANTS.items():
        set_seed(0)
        model = build_model(args.model, mode, attention_dropout, {**params["lora"], "dropout": lora_dropout})
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # as the Trainer runs train.precision bf16
            total, attention = saved_for_backward_mb(model.train(), batch)
        rows[name] = {"saved for backward (MB)": round(total), "of which attention matrices (MB)": round(attention)}
    print(f"batch of {args.batch_size} x {batch['input_ids'].shape[1]} tokens, model {args.model}")
    print(pd.DataFrame(rows).T.to_markdown())


if __name__ == "__main__":
    main()
