"""Profile: where a training step's time goes, per operator group, for each variant, in the train stage's code.

    python -m benchmarks.profile --model PATH --squad PATH --json OUT.json
    python -m benchmarks.profile --model PATH --squad PATH --json OUT.json --architecture distilbert-base-uncased

Each variant (default: full, lora, full-bf16, lora-bf16; any training variant of `benchmarks.run`) trains in its
own process through `benchmarks.run`'s code, the Trainer run of the train stage, on the first `--examples`
questions of `--squad`; torch.profiler records optimizer steps `--skip` + 1 to `--skip` + `--steps` (the first
ones warm caches up). Each operator's self CPU time is put in one group (GROUPS: matrix products, attention,
dropout masks, element-wise and normalisation, optimizer, casts, data movement, other), divided by the steps
recorded: seconds per step. It prints the table and writes it, with the top operators, to `--json`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

# An operator's self time goes to the group of the nearest of itself and its callers that names a specific group
# (a copy_ inside a cast is the cast's; every operator inside the optimizer step is the optimizer's); else to the
# generic group of its own name. Self times: nothing is counted twice.
SPECIFIC = (
    ("attention", r"scaled_dot_product|flash_attention|_efficient_attention|(?<!log_)softmax"),
    ("dropout masks", r"bernoulli|dropout|Dropout"),
    ("matrix products", r"aten::(mm|addmm|bmm|baddbmm|matmul|linear|_mkl\w*|mkldnn_\w*)$|onednn"),
    ("optimizer", r"Optimizer\.|adam|_foreach_|clip_grad"),
    ("casts", r"aten::(to|_to_copy|type_as)$"),
)
GENERIC = (
    ("data movement", r"copy_|clone|contiguous|cat$|stack|index|gather|scatter|embedding|fill_|zero_|pad|"
                      r"empty|as_strided|narrow|slice|select|view|reshape|transpose|permute|expand|unsqueeze|::t$"),
    ("element-wise and normalisation", r"add|mul|div|sub|gelu|layer_norm|tanh|exp|pow|where|masked|sum|mean|"
                                       r"neg|threshold|relu|log|nll|cross_entropy|eq|ne|gt|lt|max|min|clamp"),
)


def _match(groups, name: str) -> str | None:
    return next((group for group, pattern in groups if re.search(pattern, name)), None)


def group_of(event) -> str:
    """The group of a profiler event (torch.autograd.profiler_util.FunctionEvent), by it and its callers."""
    caller = event
    while caller is not None:
        if group := _match(SPECIFIC, caller.name):
            return group
        caller = caller.cpu_parent
    return _match(GENERIC, event.name) or "other"


class Profile(TrainerCallback):
    """torch.profiler over optimizer steps skip + 1 .. skip + steps of a Trainer run."""

    def __init__(self, skip: int, steps: int):
        self.skip, self.steps, self.profiler, self.recorded = skip, steps, None, 0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.skip and self.profiler is None:
            from torch.profiler import ProfilerActivity, profile

            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is not None and self.recorded < self.steps:
            self.recorded += 1
            if self.recorded == self.steps:
                self.profiler.__exit__(None, None, None)

    def table(self) -> dict:
        if not self.recorded or self.recorded < self.steps:
            raise SystemExit(f"only {self.recorded} of {self.steps} steps were profiled: raise --examples")
        totals, operators = {}, {}
        for event in self.profiler.events():
            seconds = event.self_cpu_time_total / 1e6 / self.steps
            group = group_of(event)
            totals[group] = totals.get(group, 0.0) + seconds
            operators[(event.name, group)] = operators.get((event.name, group), 0.0) + seconds
        operators = sorted(((seconds, name, group) for (name, group), seconds in operators.items()), reverse=True)
        return {"step_s": round(sum(totals.values()), 3),
                "groups_s": {group: round(seconds, 3) for group, seconds in sorted(totals.items(), key=lambda g: -g[1])},
                "top_operators": [{"name": name, "group": group, "s_per_step": round(seconds, 4)}
                                  for seconds, name, group in operators[:15]]}


def main() -> None:
    from benchmarks.run import TRAIN_VARIANTS, measure_training

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Hub id or local model directory")
    parser.add_argument("--squad", required=True, help="SQuAD file or Hub dataset id")
    parser.add_argument("--json", required=True, type=Path, help="where to write the table")
    parser.add_argument("--architecture", help="as benchmarks.run: this architecture with random weights")
    parser.add_argument("--examples", type=int, default=80, help="training questions (enough for skip + steps)")
    parser.add_argument("--skip", type=int, default=1, help="steps run before profiling")
    parser.add_argument("--steps", type=int, default=3, help="steps profiled")
    parser.add_argument("--variants", nargs="+", choices=TRAIN_VARIANTS, default=["full", "lora", "full-bf16", "lora-bf16"])
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: profile one variant, print JSON
    args = parser.parse_args()
    # what benchmarks.run's training code reads
    args.eval_examples, args.epochs, args.reference_questions = 0, 1.0, 4000
    if args.variant:
        from squad_ft.stage import quiet_libraries

        quiet_libraries()
        profile = Profile(args.skip, args.steps)
        measure_training(args.variant, args, callbacks=(profile,))
        print(json.dumps(profile.table()))
        return

    import pandas as pd

    from squad_ft.device import cpu_model

    from benchmarks.run import BF16_VARIANTS
    from squad_ft.device import cpu_has_native_bf16

    emulated = [variant for variant in args.variants if variant in BF16_VARIANTS
                and not (torch.cuda.is_available() or cpu_has_native_bf16())]
    if emulated:  # as the benchmark: emulated bf16 is not the hardware's speed
        raise SystemExit(f"{', '.join(emulated)}: this CPU has no native bf16 (AMX or AVX512-BF16); profile fp32 only")
    results = {}
    for variant in args.variants:
        print(f"== {variant}", file=sys.stderr, flush=True)
        command = [sys.executable, "-m", "benchmarks.profile", *sys.argv[1:], "--variant", variant]
        output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        results[variant] = json.loads(output.strip().splitlines()[-1])
    report = {
        "command": " ".join(["python -m benchmarks.profile", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {cpu_model()}",
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "architecture": args.architecture,
        "model": args.model if not args.architecture else f"{args.architecture} (random weights), tokenizer {args.model}",
        "variants": results,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    table = pd.DataFrame({variant: {"step (s)": result["step_s"], **result["groups_s"]}
                          for variant, result in results.items()}).fillna(0.0)
    print(table.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
