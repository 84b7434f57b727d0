"""Benchmark: training-step time and peak memory of full fine-tuning vs LoRA variants.

Runs every variant on the same real SQuAD batch, each in its own process (so that peak
memory is its own), and prints one table with ratios against full fine-tuning:

    python -m benchmarks.train_step --model PATH_OR_HUB_ID --squad PATH [--steps 5] [--batch-size 16]

Times are the median of `--steps` optimizer steps after one warm-up step. Memory is peak
GPU memory allocated on CUDA, else the process's peak resident memory (model loading included).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "full": None,
    "lora r=16 all-linear": {"r": 16, "target_modules": "all-linear"},
    "lora r=8 all-linear": {"r": 8, "target_modules": "all-linear"},
    "lora r=16 attention q,v": {"r": 16, "target_modules": "query-value"},
}


def measure(variant: str, args) -> dict:
    """One variant, in this process: parameter counts, median step time, peak memory."""
    import torch
    from transformers import DataCollatorWithPadding

    from squad_ft.data import load_examples
    from squad_ft.features import train_features
    from squad_ft.modeling import add_lora, count_parameters, linear_module_names, load_pretrained, load_tokenizer
    from squad_ft.training import peak_memory_mb

    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    examples = load_examples(args.squad, args.batch_size)[:]
    encoded = train_features(examples, tokenizer, 384, 128)
    batch = DataCollatorWithPadding(tokenizer, return_tensors="pt")(
        [{key: encoded[key][i] for key in encoded} for i in range(args.batch_size)]
    )
    model = load_pretrained(args.model)
    lora = VARIANTS[variant]
    if lora:
        targets = lora["target_modules"]
        if targets == "query-value":  # the attention query and value projections, by architecture
            targets = [n for n in linear_module_names(model) if n in ("query", "value", "q_lin", "v_lin")]
        model = add_lora(model, lora["r"], 2 * lora["r"], 0.1, targets)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    trainable, total = count_parameters(model)
    return {"trainable": trainable, "total": total, "step_s": statistics.median(times[1:]),
            "peak_mb": peak_memory_mb(), "tokens": int(batch["attention_mask"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hub id or local model directory")
    parser.add_argument("--squad", required=True, help="SQuAD file (nested JSON, JSON Lines or Parquet)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: measure one variant
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args)))
        return

    import pandas as pd

    rows = {}
    for variant in VARIANTS:
        print(f"measuring {variant} ...", file=sys.stderr, flush=True)
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.train_step", *sys.argv[1:], "--variant", variant],
            check=True, capture_output=True, text=True,
        ).stdout
        rows[variant] = json.loads(output.strip().splitlines()[-1])
    table = pd.DataFrame(rows).T
    full = table.loc["full"]
    table["trainable %"] = 100 * table["trainable"] / full["total"]
    table["step time vs full"] = table["step_s"] / full["step_s"]
    table["memory vs full"] = table["peak_mb"] / full["peak_mb"]
    formats = {"trainable": "{:,.0f}", "total": "{:,.0f}", "step_s": "{:.2f}", "peak_mb": "{:,.0f}",
               "trainable %": "{:.2f}", "step time vs full": "{:.2f}x", "memory vs full": "{:.2f}x"}
    table = table[list(formats)].apply(lambda column: column.map(formats[column.name].format))
    print(f"batch of {args.batch_size} features ({int(full['tokens'])} tokens), model {args.model}")
    print(table.to_markdown())

if __name__ == "__main__":
    main()
