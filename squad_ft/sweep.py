"""Summarise finished DVC experiments (several seeds, or a grid) into one Markdown table.

    dvc exp run --queue -S 'train.seed=range(1,6)'   # five seeds, queued
    dvc queue start && dvc queue status               # run them (or: dvc exp run --run-all)
    python -m squad_ft.sweep                          # mean +- std per model and evaluation set

Reads `dvc exp show --json` (the experiments of the current commit; `--json-file` reads a
saved copy instead). Experiments are grouped by the parameters that differ between them,
other than `train.seed`; each group gets the mean and sample standard deviation of exact
match and F1 for every model and evaluation set it was scored on.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pandas as pd

from squad_ft.errors import UserError
from squad_ft.stage import run_stage

SEED = "train.seed"
SCORES = {"exact_match": "exact match", "f1": "F1"}


def _flatten(params: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if value is None or isinstance(value, list) else value
    return flat


def finished_experiments(exp_show: list[dict]) -> list[dict]:
    """Each finished experiment with scores: {"name", "params" (flat), "scores": [evaluate metrics...]}."""
    runs = []
    for commit in exp_show:
        for experiment in commit.get("experiments") or []:
            revision = experiment["revs"][0]
            data = revision.get("data") or {}
            evaluations = [
                file["data"] for file in (data.get("metrics") or {}).values()
                if "mode" in file.get("data", {}) and "exact_match" in file["data"]
            ]
            if revision.get("error") or not evaluations:
                continue  # queued, running or failed
            runs.append({
                "name": experiment.get("name") or revision["rev"][:7],
                "params": _flatten(data["params"]["params.yaml"]["data"]),
                "scores": evaluations,
            })
    return runs


def summary_table(runs: list[dict]) -> pd.DataFrame:
    """Mean +- std of each score per group of parameters, model and evaluation set."""
    if not runs:
        raise UserError("no finished experiments with scores: run some first (see `python -m squad_ft.sweep -h`)")
    params = pd.DataFrame([run["params"] for run in runs])
    varying = [key for key in params.columns if key != SEED and params[key].nunique(dropna=False) > 1]
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


def _exp_show() -> list[dict]:
    try:
        result = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise UserError(f"`dvc exp show --json` failed: {getattr(err, 'stderr', '') or err}".strip()) from err
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json-file", type=Path, help="a saved `dvc exp show --json` instead of running it")
    args = parser.parse_args()
    exp_show = json.loads(args.json_file.read_text()) if args.json_file else _exp_show()
    runs = finished_experiments(exp_show)
    table = summary_table(runs)
    print(f"{len(runs)} finished experiments; mean ± sample standard deviation over seeds\n")
    print(table.to_markdown(index=False, disable_numparse=True))


if __name__ == "__main__":
    run_stage(main)
