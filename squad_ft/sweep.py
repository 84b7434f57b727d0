"""Summarise finished DVC experiments (several seeds, or a grid) into one Markdown table.

    dvc exp run --queue -S 'train.seed=range(1,6)'   # five seeds, queued
    dvc queue start && dvc queue status               # run them (or: dvc exp run --run-all)
    python -m squad_ft.sweep                          # mean +- std per model, and the pooled verdict
    dvc exp run --queue -S 'lora.r=1,4,16,64' -S 'train.seed=1,2'   # a rank sweep, then:
    python -m squad_ft.sweep --plot rank_curve.png --tsv rank_curve.tsv
    python -m squad_ft.sweep --copy-to runs           # also keep each experiment in git: runs/NAME/
    python -m squad_ft.sweep --archive runs/*         # later, on another machine: the same tables

Reads (with `squad_ft.experiments`) `dvc exp show --json` (the experiments of the current commit; `--json-file` reads a
saved copy instead). `--copy-to DIR` also copies each finished experiment's params.yaml,
dvc.lock, metrics/ and data/predictions/ into DIR/NAME, where git can keep them after DVC's
experiments and cache are gone; `--archive DIR...` reads such copies instead, each file checked
against the hash its dvc.lock recorded, with the questions from this workspace's data/split/
(which must be the ones the runs were scored on: their hash is in the same dvc.lock).

Experiments are grouped by the parameters that differ between them, other than `train.seed`;
each group gets the mean and sample standard deviation of exact match and F1 for every model
and evaluation set it was scored on.

Then, per group and evaluation set, LoRA and head against full fine-tuning pooled over the seeds,
from each experiment's predictions: each model's mean over seeds, its difference from full
fine-tuning per seed (paired on the same questions) and pooled, each with an interval over seeds
and questions (Student's t for the seeds' part: `squad_ft.stats.seeds_and_questions_interval`), and
one verdict per score. The runs of a group must share one question set; a seed's models may come
from several runs (a mode run later), but no model of one seed twice.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from squad_ft.errors import UserError
from squad_ft.experiments import (archived_per_question, archived_runs, copy_experiment, dvc_exp_show,
                                  finished_experiments, per_question)
from squad_ft.params import load_params
from squad_ft.report import MODEL_LABELS, verdict
from squad_ft.stage import BASELINE, COMPARED, run_stage
from squad_ft.stats import pooled_difference, pooled_over_seeds

SEED = "train.seed"
RANK = "lora.r"
SCORES = {"exact_match": "exact match", "f1": "F1"}


def _params_and_varying(runs: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """The runs' params as a table, and the keys that differ between runs other than the seed: the
    keys that name a group."""
    params = pd.DataFrame([run["params"] for run in runs])
    # a key that some runs lack (a section added to params.yaml later, such as a new mode's) does not set runs apart
    return params, [key for key in params.columns if key != SEED and params[key].nunique() > 1]


def summary_table(runs: list[dict]) -> pd.DataFrame:
    """Mean +- std of each score per group of parameters, model and evaluation set."""
    if not runs:
        raise UserError("no finished experiments with scores: run some first (see `python -m squad_ft.sweep -h`)")
    params, varying = _params_and_varying(runs)
    rows = []
    for run, (_, values) in zip(runs, params.iterrows()):
        for scores in run["scores"]:
            rows.append({**{key: values[key] for key in varying}, "model": scores["mode"],
                         "evaluation set": scores["eval_set"], SEED: values.get(SEED),
                         **{label: scores[key] for key, label in SCORES.items()}})
    frame = pd.DataFrame(rows)
    groups = frame.groupby([*varying, "model", "evaluation set"], sort=True, dropna=False)
    table = groups.agg(runs=(SEED, "size"), seeds=(SEED, lambda seeds: ", ".join(map(str, sorted(seeds)))))
    for label in SCORES.values():
        mean, std = groups[label].mean(), groups[label].std()
        table[label] = [f"{m:.1f} ± {s:.1f}" if pd.notna(s) else f"{m:.1f}" for m, s in zip(mean, std)]
    return table.reset_index()


def _interval(result: dict) -> str:
    low, high = result["interval"]
    return f"[{low:.1f}, {high:.1f}]"


def _order(value) -> tuple:
    """A sort key for a parameter's values: numbers in numeric order, then the rest (`null`, strings)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if number else (1, 0, str(value))


def _modes(run: dict, eval_set: str) -> list[str]:
    return [scores["mode"] for scores in run["scores"] if scores["eval_set"] == eval_set]


def _readable(runs: list[dict], eval_set: str, read) -> list[tuple[dict, dict]]:
    """(run, its `_scored` per-question scores) for each run whose predictions can be read; the others are
    named on stderr and left out (an experiment whose outputs were garbage-collected, say)."""
    readable = []
    for run in runs:
        try:
            readable.append((run, read(run["rev"], eval_set, _modes(run, eval_set))))
        except UserError as err:
            print(f"left out: {err}", file=sys.stderr)
    return readable


def _by_seed(readable: list[tuple[dict, dict]], eval_set: str) -> dict:
    """{seed: {mode: per-question scores}} of one group's runs, after checking that they may be pooled: every
    run scored on the same questions (ids and order), and no model of one seed in two runs. A seed's models
    may come from several runs (a mode run later, on the same data). A violation is one UserError naming
    the runs."""
    first_run, first = readable[0]
    by_seed: dict = {}
    owners: dict = {}
    for run, scored in readable:
        if scored["questions"] != first["questions"]:
            raise UserError(f"{run['name']} and {first_run['name']} were scored on different {eval_set} questions: "
                            "runs pooled over seeds must share one question set")
        for mode, scores in scored["scores"].items():
            key = (run["seed"], mode)
            if key in owners:
                raise UserError(f"{owners[key]} and {run['name']} both hold {mode} of {SEED} {run['seed']}: a seed "
                                "counts once (set train.seed apart, or set the runs apart by a parameter)")
            owners[key] = run["name"]
            by_seed.setdefault(run["seed"], {})[mode] = scores
    return dict(sorted(by_seed.items(), key=lambda item: _order(item[0])))


def pooled_table(runs: list[dict], settings: dict, read=per_question) -> pd.DataFrame:
    """Per group of parameters, evaluation set, score and model compared with full fine-tuning (LoRA, head):
    each model's mean over seeds, its difference from full fine-tuning per seed and pooled, with intervals
    over seeds and questions (`squad_ft.stats`), and the verdict; with one seed, the questions' interval only,
    and the verdict says so.

    `read(rev, eval_set, modes)` gives an experiment's `_scored` per-question scores."""
    params, varying = _params_and_varying(runs)
    groups: dict[tuple, list[dict]] = {}
    for run, (_, values) in zip(runs, params.iterrows()):
        groups.setdefault(tuple(values[key] for key in varying), []).append({**run, "seed": run["params"].get(SEED)})
    rows = []
    for group, members in sorted(groups.items(), key=lambda item: [_order(value) for value in item[0]]):
        for eval_set in sorted({scores["eval_set"] for run in members for scores in run["scores"]}, reverse=True):
            readable = _readable(members, eval_set, read)
            if not readable:
                continue
            by_seed = _by_seed(readable, eval_set)
            for mode in COMPARED:
                seeds = [seed for seed, models in by_seed.items() if BASELINE in models and mode in models]
                if not seeds:
                    continue
                for score, label in SCORES.items():
                    baseline, compared = ([by_seed[seed][name][score] for seed in seeds] for name in (BASELINE, mode))
                    difference = pooled_difference(baseline, compared, settings)
                    means = [pooled_over_seeds(values, settings) for values in (compared, baseline)]
                    one_seed = "one seed: question-level interval only; " if len(seeds) == 1 else ""
                    rows.append({
                        **dict(zip(varying, group)), "evaluation set": eval_set, "score": label,
                        "seeds": ", ".join(map(str, seeds)), "model": MODEL_LABELS[mode],
                        "its mean": f"{means[0]['mean']:.1f} {_interval(means[0])}",
                        "full fine-tuning": f"{means[1]['mean']:.1f} {_interval(means[1])}",
                        "minus full, per seed": ", ".join(f"{seed['difference']:+.1f}" for seed in difference["per_seed"]),
                        "minus full, pooled": f"{difference['difference']:+.1f} {_interval(difference)}",
                        "verdict": one_seed + verdict(difference["interval"], mode),
                    })
    return pd.DataFrame(rows)


def rank_curve(runs: list[dict], settings: dict, read=per_question, eval_set: str = "heldout") -> tuple[pd.DataFrame, dict]:
    """LoRA's F1 on `eval_set` against its size, one row per lora.r, pooled over seeds: the share of
    full fine-tuning's trained parameters, LoRA's F1 with its interval, and LoRA minus full
    fine-tuning pooled with its verdict; and full fine-tuning's F1 over every seed ({"mean", "interval"}).

    The experiments must differ only in lora.r (and what is set with it, such as lora.alpha) and
    train.seed: a rank sweep."""
    params = pd.DataFrame([run["params"] for run in runs])
    if RANK not in params:
        raise UserError(f"a rank curve needs experiments that differ in {RANK}")
    # besides the seed, only the rank and what is set with it (lora.alpha, for a constant scale) may vary
    other = [key for key in params.columns if key not in (SEED, RANK)
             and params.groupby(RANK)[key].nunique(dropna=False).max() > 1]
    if other:
        raise UserError(f"a rank curve needs experiments that differ only in {RANK} (and what is set with it) and "
                        f"{SEED}; these also differ in {', '.join(other)} at one rank")
    readable = _readable(runs, eval_set, read)
    runs, scored = [run for run, _ in readable], {run["rev"]: scored["scores"] for run, scored in readable}
    if not runs:
        raise UserError(f"no experiment's {eval_set} predictions could be read")
    params = pd.DataFrame([run["params"] for run in runs])
    full_by_seed = {run["params"].get(SEED): scored[run["rev"]]["full"]["f1"] for run in runs}  # one per seed
    full = pooled_over_seeds(list(full_by_seed.values()), settings)
    rows = []
    for rank in sorted(params[RANK].unique()):
        members = sorted((run for run in runs if run["params"][RANK] == rank), key=lambda run: run["params"].get(SEED))
        sizes = {mode: next(s["trainable_params"] for s in members[0]["scores"] if s["mode"] == mode) for mode in ("full", "lora")}
        lora = [scored[run["rev"]]["lora"]["f1"] for run in members]
        difference = pooled_difference([scored[run["rev"]]["full"]["f1"] for run in members], lora, settings)
        pooled = pooled_over_seeds(lora, settings)
        rows.append({RANK: int(rank), "seeds": len(members), "lora_trainable_params": sizes["lora"],
                     "share_of_full": sizes["lora"] / sizes["full"], "f1": pooled["mean"],
                     "f1_low": pooled["interval"][0], "f1_high": pooled["interval"][1],
                     "f1_difference": difference["difference"], "f1_difference_low": difference["interval"][0],
                     "f1_difference_high": difference["interval"][1], "verdict": verdict(difference["interval"])})
    return pd.DataFrame(rows), full


def smallest_rank_within_noise(curve: pd.DataFrame) -> int | None:
    """The smallest lora.r whose pooled F1 difference from full fine-tuning is within noise or better."""
    matching = curve[curve["f1_difference_high"] >= 0]
    return int(matching[RANK].min()) if len(matching) else None


def plot_rank_curve(curve: pd.DataFrame, full: dict, eval_set: str, out: Path) -> None:
    """LoRA's F1 with its interval against its share of full fine-tuning's trained parameters (log
    scale), full fine-tuning's F1 and interval as a band across."""
    import matplotlib.pyplot as plt  # squad_ft.report chose the Agg backend on import

    fig, ax = plt.subplots(figsize=(7, 4))
    share, label = 100 * curve["share_of_full"], {"heldout": "held-out"}.get(eval_set, eval_set)
    ax.axhspan(*full["interval"], color="tab:blue", alpha=0.15, label=f"full fine-tuning {full['mean']:.1f} (interval)")
    ax.axhline(full["mean"], color="tab:blue", linewidth=1)
    ax.errorbar(share, curve["f1"], yerr=[curve["f1"] - curve["f1_low"], curve["f1_high"] - curve["f1"]],
                marker="o", color="tab:orange", capsize=3, label="LoRA (interval over seeds and questions)")
    for x, y, rank in zip(share, curve["f1"], curve[RANK]):
        ax.annotate(f"r={rank}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="LoRA's trained parameters, % of full fine-tuning's (log scale)", ylabel=f"{label} F1",
           title=f"LoRA's rank curve ({label} F1, pooled over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--json-file", type=Path, help="a saved `dvc exp show --json` instead of running it")
    source.add_argument("--archive", type=Path, nargs="+", metavar="DIR",
                        help="finished experiments copied into folders instead of DVC's experiments")
    parser.add_argument("--copy-to", type=Path, metavar="DIR",
                        help="also copy each finished experiment into DIR/NAME, for `--archive DIR/*` (not with --archive)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="for a rank sweep (experiments differing only in lora.r and train.seed): LoRA's rank "
                             "curve on the held-out set")
    parser.add_argument("--tsv", type=Path, metavar="FILE.tsv", help="with --plot: the curve as a table, for `dvc plots`")
    args = parser.parse_args()
    if args.archive:
        if args.copy_to:
            parser.error("--copy-to copies DVC's experiments; the runs of --archive are copies already")
        runs, read = archived_runs(args.archive), archived_per_question
    else:
        runs, read = finished_experiments(json.loads(args.json_file.read_text()) if args.json_file else dvc_exp_show()), per_question
        for run in runs if args.copy_to else []:
            try:
                copy_experiment(run["rev"], args.copy_to / run["name"])
            except UserError as err:  # one experiment's outputs garbage-collected, say: copy the others
                print(f"not copied: {err}", file=sys.stderr)
    table = summary_table(runs)
    print(f"{len(runs)} finished experiments; mean ± sample standard deviation over seeds\n")
    print(table.to_markdown(index=False, disable_numparse=True))
    settings = load_params()["bootstrap"]
    print(f"\nLoRA and head against full fine-tuning, pooled over seeds: means and differences with "
          f"{settings['confidence']:.0%} intervals over seeds (Student's t) and questions\n")
    print(pooled_table(runs, settings, read).to_markdown(index=False, disable_numparse=True))
    if args.plot:
        curve, full = rank_curve(runs, settings, read)
        plot_rank_curve(curve, full, "heldout", args.plot)
        if args.tsv:
            curve.to_csv(args.tsv, sep="\t", index=False)
        smallest = smallest_rank_within_noise(curve)
        print(f"\nrank curve -> {args.plot}; the smallest {RANK} within noise of full fine-tuning (held-out F1): "
              f"{smallest if smallest is not None else 'none'}")


if __name__ == "__main__":
    run_stage(main)
