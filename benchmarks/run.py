"""Benchmark: what full fine-tuning, LoRA and the head alone cost, in the pipeline's own training and
evaluation code, against the common baseline of padding every feature to 384 tokens.

    python -m benchmarks.run --model PATH_OR_HUB_ID --squad PATH --json OUT.json
    python -m benchmarks.run --model PATH --squad PATH --json OUT.json --architecture distilbert-base-uncased

`--architecture NAME` trains that architecture (benchmarks/architectures/NAME/config.json, a copy of
the Hub model's configuration) with random weights instead of `--model`'s, which then gives only the
tokenizer: cost does not depend on the weights' values, so DistilBERT's costs are measured here
although its weights cannot be loaded offline.

Every variant runs in its own process (so that its peak memory is its own) on the same real
SQuAD features: the first `--examples` questions of `--squad` for training (one epoch) and the
next `--eval-examples` for evaluation. Training goes through `squad_ft.training.train`, the
Trainer run of the train stage, with params.yaml's settings; evaluation through
`squad_ft.inference.predict_logits`, the evaluate stage's. Variants:

- full, lora, head: the pipeline's settings (per-batch padding, length-grouped batches, params.yaml);
- full-pad384, lora-pad384: what the common tutorials do: every feature padded to 384 tokens
  (model.max_length),
  shuffled batches, the model's own attention dropout, LoRA dropout 0.1;
- full-checkpointing, lora-checkpointing: the pipeline's settings with train.gradient_checkpointing;
- eval, eval-pad384: evaluation throughput, per-batch padding against padding to 384;
- full-bf16, lora-bf16, head-bf16, eval-bf16: the pipeline's settings in bf16 mixed precision (train.precision
  bf16), only where the hardware computes bf16 natively (a CUDA GPU, or a CPU with AMX or AVX512-BF16;
  elsewhere it is emulated and the variants are skipped, saying so).

Every other variant computes in fp32 (train.precision fp32), whatever train.precision says, so that
the bf16 ratios compare the two on the same machine in one run.

Step time is the median over the epoch's optimizer steps (the same batches for every mode);
`reference_epoch_s` extrapolates an epoch of `--reference-questions` (the reference protocol's 4,000)
from the mean step after the first, at as many windows per question as measured; memory is the train
stage's `peak_memory_mb` (CUDA: peak allocated; CPU: peak resident memory during training);
`saved_for_backward_mb` is what one training forward pass on the longest batch keeps for the backward
pass (`squad_ft.memory.saved_for_backward_mb`). It prints a table and writes the figures and ratios to
`--json`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

BASELINE_LORA_DROPOUT = 0.1
TRAIN_VARIANTS = ("full", "lora", "head", "full-pad384", "lora-pad384", "full-checkpointing", "lora-checkpointing",
                  "full-bf16", "lora-bf16", "head-bf16")
EVAL_VARIANTS = ("eval", "eval-pad384", "eval-bf16")
BF16_VARIANTS = ("full-bf16", "lora-bf16", "head-bf16", "eval-bf16")
MODES = ("full", "lora", "head")
ARCHITECTURES = Path(__file__).parent / "architectures"  # NAME/config.json: a model's configuration
ARCHITECTURE_VARIANTS = ("full", "lora", "head", "full-bf16", "lora-bf16", "head-bf16")  # --architecture's default


def _features(args, params: dict, tokenizer, training: bool):
    """Training features of the first `--examples` questions, or evaluation features of the next
    `--eval-examples`, windowed with params.yaml's `model` settings."""
    from squad_ft.data import load_examples
    from squad_ft.features import tokenize

    examples = load_examples(args.squad, args.examples + args.eval_examples)
    rows = range(args.examples) if training else range(args.examples, len(examples))
    return tokenize(examples.select(rows), tokenizer, params["model"], training)


def _pad(features, tokenizer, length: int):
    """`features` with every sequence padded to `length` tokens (model.max_length, 384 by default)."""
    return features.map(
        lambda batch: tokenizer.pad({key: batch[key] for key in tokenizer.model_input_names if key in batch},
                                    padding="max_length", max_length=length),
        batched=True, desc=f"Padding to {length} tokens",
    )


class StepTimer(TrainerCallback):
    """The wall time of every optimizer step, and the resident memory after it and its peak so far (CPU,
    Linux): whether memory grows with the run's length."""

    def __init__(self):
        self.times: list[float] = []
        self.resident_mb: list[float] = []
        self.peak_mb: list[float] = []
        self.start = 0.0

    def on_step_begin(self, *args, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, *args, **kwargs):
        from squad_ft.memory import peak_memory_mb, resident_memory_mb

        self.times.append(time.perf_counter() - self.start)
        if not torch.cuda.is_available() and resident_memory_mb() is not None:
            self.resident_mb.append(round(resident_memory_mb(), 1))
            self.peak_mb.append(round(peak_memory_mb(), 1))


def random_model(architecture: str, tokenizer, attention_dropout: float | None = None):
    """An encoder with a QA head of `architecture` (ARCHITECTURES/NAME/config.json), random weights: what
    training it costs does not depend on the weights' values. `tokenizer` must fit its vocabulary."""
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    from squad_ft.modeling import with_attention_dropout

    config = AutoConfig.from_pretrained(ARCHITECTURES / architecture)
    if len(tokenizer) > config.vocab_size:
        raise SystemExit(f"--architecture {architecture}: the tokenizer of --model has {len(tokenizer)} tokens, "
                         f"more than its vocabulary of {config.vocab_size}")
    return AutoModelForQuestionAnswering.from_config(with_attention_dropout(config, attention_dropout))


def measure_training(variant: str, args, callbacks: tuple = ()) -> dict:
    """One training variant, in this process: one epoch through the train stage's code (with extra Trainer
    `callbacks`, such as benchmarks.profile's), then what one forward pass on the longest batch keeps for the
    backward pass."""
    import math

    from transformers import DataCollatorWithPadding, set_seed

    from squad_ft.memory import saved_for_backward_mb, use_huge_pages
    from squad_ft.modeling import build_model, for_mode, load_tokenizer
    from squad_ft.params import load_params
    from squad_ft.training import train

    use_huge_pages()  # as the train stage does, before the model is loaded
    params = load_params()
    mode, _, setting = variant.partition("-")
    hyper = {**params["train"], **params[mode], "epochs": args.epochs}
    tokenizer = load_tokenizer(args.model)
    features = _features(args, params, tokenizer, training=True)
    attention_dropout = hyper["attention_dropout"]
    lora = dict(params["lora"])
    if setting == "pad384":  # all of one length, length-grouped batches are shuffled batches
        features = _pad(features, tokenizer, params["model"]["max_length"])
        attention_dropout = None
        lora["dropout"] = BASELINE_LORA_DROPOUT
    hyper["gradient_checkpointing"] = setting == "checkpointing"
    hyper["precision"] = "bf16" if setting == "bf16" else "fp32"
    set_seed(hyper["seed"])
    if args.architecture:
        model = for_mode(random_model(args.architecture, tokenizer, attention_dropout), mode, lora)
    else:
        model = build_model(args.model, mode, attention_dropout, lora)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as scratch:
        summary = train(model, tokenizer, features, hyper, hyper["seed"], Path(scratch, "model"),
                        Path(scratch, "live"), Path(scratch, "checkpoints"), callbacks=(timer, *callbacks))
    tokens = sum(map(len, features["input_ids"]))
    longest = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))[:hyper["batch_size"]]
    batch = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=hyper["pad_to_multiple_of"], return_tensors="pt")(
        [features[i] for i in longest])  # as wide as training pads it
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=hyper["precision"] == "bf16"):  # as the Trainer does
        saved, attention = saved_for_backward_mb(model.train(), batch)
    # an epoch of the reference protocol's training split, from these steps: as many windows per question as
    # here, in batches of train.batch_size, each taking the mean of the measured steps after the first
    windows = round(args.reference_questions * len(features) / args.examples)
    steady = timer.times[1:] or timer.times
    return {
        "step_s": round(statistics.median(timer.times), 4),
        "mean_step_s": round(statistics.fmean(steady), 4),
        "steps": len(timer.times),
        "features": len(features),
        "mean_tokens_per_feature": round(tokens / len(features), 1),
        "reference_epoch_windows": windows,
        "reference_epoch_s": round(statistics.fmean(steady) * math.ceil(windows / hyper["batch_size"]), 1),
        "saved_for_backward_mb": round(saved, 1),
        "saved_attention_matrices_mb": round(attention, 1),
        "longest_batch": list(batch["input_ids"].shape),
        # growth over the run: the peak after the first tenth of the steps, and at the end
        "peak_memory_mb_after_first_tenth": timer.peak_mb[max(len(timer.peak_mb) // 10 - 1, 0)] if timer.peak_mb else None,
        "resident_mb_by_step": timer.resident_mb,
        "peak_mb_by_step": timer.peak_mb,
        **{key: summary[key] for key in ("train_runtime_s", "train_features_per_s", "model_memory_mb",
                                         "peak_memory_mb", "trainable_params", "device")},
    }


def measure_evaluation(variant: str, args) -> dict:
    """One evaluation variant, in this process: the evaluate stage's prediction over the eval features."""
    from squad_ft.device import device_and_precision
    from squad_ft.inference import predict_logits
    from squad_ft.modeling import load_pretrained, load_tokenizer
    from squad_ft.params import load_params

    params = load_params()
    tokenizer = load_tokenizer(args.model)
    features = _features(args, params, tokenizer, training=False)
    if variant.endswith("pad384"):
        features = _pad(features, tokenizer, params["model"]["max_length"])
    model = random_model(args.architecture, tokenizer) if args.architecture else load_pretrained(args.model)
    start = time.perf_counter()
    precision = "bf16" if variant == "eval-bf16" else "fp32"
    predict_logits(model, tokenizer, features, params["evaluate"]["batch_size"], precision)
    runtime = time.perf_counter() - start
    return {"features": len(features), "eval_runtime_s": round(runtime, 2),
            "eval_features_per_s": round(len(features) / runtime, 2), "device": device_and_precision(precision)[0]}


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3)


def summarise(results: dict) -> dict:
    """The headline ratios, from the per-variant figures: each ratio whose variants were measured."""
    def ratio(key: str, numerator: str, denominator: str):
        if numerator in results and denominator in results:
            return _ratio(results[numerator][key], results[denominator][key])
        return None

    by_mode = {
        "train_speedup_vs_pad384_by_mode": lambda mode: ratio("train_features_per_s", mode, f"{mode}-pad384"),
        "bf16_vs_fp32_train_throughput": lambda mode: ratio("train_features_per_s", f"{mode}-bf16", mode),
        "bf16_vs_fp32_peak_memory": lambda mode: ratio("peak_memory_mb", f"{mode}-bf16", mode),
    }
    summary = {
        "lora_vs_full_step_time": ratio("step_s", "lora", "full"),
        "lora_vs_full_peak_memory": ratio("peak_memory_mb", "lora", "full"),
        "head_vs_full_step_time": ratio("step_s", "head", "full"),
        "head_vs_full_peak_memory": ratio("peak_memory_mb", "head", "full"),
        "head_vs_lora_saved_for_backward": ratio("saved_for_backward_mb", "head", "lora"),
        **{name: {mode: value for mode in MODES if (value := figure(mode)) is not None} for name, figure in by_mode.items()},
        "eval_speedup_vs_pad384": ratio("eval_features_per_s", "eval", "eval-pad384"),
        "gradient_checkpointing_vs_without": {
            mode: {"peak_memory": ratio("peak_memory_mb", f"{mode}-checkpointing", mode),
                   "step_time": ratio("step_s", f"{mode}-checkpointing", mode)} for mode in ("full", "lora")},
        "bf16_vs_fp32_eval_throughput": ratio("eval_features_per_s", "eval-bf16", "eval"),
        "lora_vs_full_step_time_bf16": ratio("step_s", "lora-bf16", "full-bf16"),
        "lora_vs_full_peak_memory_bf16": ratio("peak_memory_mb", "lora-bf16", "full-bf16"),
        "head_vs_full_step_time_bf16": ratio("step_s", "head-bf16", "full-bf16"),
        "head_vs_full_peak_memory_bf16": ratio("peak_memory_mb", "head-bf16", "full-bf16"),
    }
    speedups = list(summary["train_speedup_vs_pad384_by_mode"].values())  # full and LoRA: head has no pad384 variant
    summary["train_speedup_vs_pad384"] = min(speedups) if len(speedups) == 2 else None
    # a ratio none of whose variants ran is left out, not written as null
    def measured(value):
        return value is not None and not (isinstance(value, dict) and all(not measured(v) for v in value.values()))
    return {key: value for key, value in summary.items() if measured(value)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hub id or local model directory")
    parser.add_argument("--squad", required=True, help="SQuAD file or Hub dataset id (data.source's formats)")
    parser.add_argument("--json", required=True, type=Path, help="where to write the figures")
    parser.add_argument("--examples", type=int, default=400, help="training questions (one epoch)")
    parser.add_argument("--eval-examples", type=int, default=400, help="evaluation questions")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--architecture", choices=sorted(path.name for path in ARCHITECTURES.iterdir()),
                        help="train this architecture (benchmarks/architectures/NAME/config.json) with random weights "
                             "instead of --model's weights; --model gives the tokenizer. Default variants: "
                             + " ".join(ARCHITECTURE_VARIANTS))
    parser.add_argument("--reference-questions", type=int, default=4000,
                        help="questions in the epoch that reference_epoch_s extrapolates to (the reference protocol's "
                             "training split)")
    parser.add_argument("--variants", nargs="+", choices=[*TRAIN_VARIANTS, *EVAL_VARIANTS],
                        help="measure only these (each ratio needs its two variants); default: all")
    parser.add_argument("--emulated-bf16", action="store_true",
                        help="run the bf16 variants on a CPU without native bf16 too (their memory is real, "
                             "their speed is not the hardware's)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: measure one variant, print JSON
    args = parser.parse_args()
    if args.variant:
        from squad_ft.stage import quiet_libraries

        quiet_libraries()
        measure = measure_evaluation if args.variant in EVAL_VARIANTS else measure_training
        print(json.dumps(measure(args.variant, args)))
        return

    import pandas as pd

    from squad_ft.device import cpu_has_native_bf16, cpu_model

    variants = args.variants or (ARCHITECTURE_VARIANTS if args.architecture else (*TRAIN_VARIANTS, *EVAL_VARIANTS))
    skipped = {}
    if not (args.emulated_bf16 or torch.cuda.is_available() or cpu_has_native_bf16()):
        skipped = {variant: "this CPU has no native bf16 (AMX or AVX512-BF16): emulated bf16 is slower than fp32"
                   for variant in BF16_VARIANTS if variant in variants}
        for variant, reason in skipped.items():
            print(f"== {variant}: skipped, {reason}", file=sys.stderr, flush=True)
    measured = [variant for variant in variants if variant not in skipped]
    results = {}
    for variant in measured:
        print(f"== {variant}", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "benchmarks.run", *sys.argv[1:], "--variant", variant]
        output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        results[variant] = json.loads(output.strip().splitlines()[-1])
    report = {
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {cpu_model()}, {results[measured[0]]['device']}",
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "architecture": args.architecture,
        "model": args.model if not args.architecture else f"{args.architecture} (random weights), tokenizer {args.model}",
        **summarise(results),
        "skipped": skipped,
        "variants": results,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(pd.DataFrame(results).T.drop(columns="device").to_markdown())
    print(json.dumps({key: value for key, value in report.items() if key != "variants"}, indent=2))


if __name__ == "__main__":
    main()
