"""Summarise finished DVC experiments (several seeds, or a grid) into one Markdown table.

    dvc exp run --queue -S 'train.seed=range(1,6)'   # five seeds, queued
    dvc queue start && dvc queue status               # run them (or: dvc exp run --run-all)
    python -m squad_ft.sweep                          # mean +- std per model, and the pooled verdict
    dvc exp run --queue -S 'lora.r=1,4,16,64' -S 'train.seed=1,2'   # a rank sweep, then:
    python -m squad_ft.sweep --plot rank_curve.png --tsv rank_curve.tsv
    python -m squad_ft.sweep --copy-to runs           # also keep each experiment in git: runs/NAME/
    python -m squad_ft.sweep --archive runs/*         # later, on another machine: the same tables

Reads `dvc exp show --json` (the experiments of the current commit; `--json-file` reads a
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
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from squad_ft.errors import UserError, first_line
from squad_ft.metric import question_scores
from squad_ft.params import load_params
from squad_ft.report import MODEL_LABELS, verdict
from squad_ft.stage import BASELINE, COMPARED, EVAL_SETS, MODES, details_path, run_stage
from squad_ft.stats import pooled_difference, pooled_over_seeds

SEED = "train.seed"
PRECISION = "train.precision"
RANK = "lora.r"
SCORES = {"exact_match": "exact match", "f1": "F1"}
DVC_YAML = Path(__file__).resolve().parents[1] / "dvc.yaml"  # the pipeline this package belongs to


def path_templates(dvc_yaml: Path = DVC_YAML) -> tuple[str, str, str, str]:
    """Where each experiment's questions, predictions, evaluation metrics and training metrics are, read
    from dvc.yaml's evaluate and train stages, as templates with {set} and {mode}."""
    try:
        stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
        evaluate, train = stages["evaluate"], stages["train"]["do"]
        entries = lambda items: [item if isinstance(item, str) else next(iter(item)) for item in items]  # noqa: E731
        found = (next(dep for dep in entries(evaluate["deps"]) if "${item.set}" in dep and "${item.mode}" not in dep),
                 next(out for out in entries(evaluate["outs"]) if "${item.mode}" in out and "${item.set}" in out),
                 entries(evaluate["metrics"])[0], entries(train["metrics"])[0])
    except (OSError, yaml.YAMLError, KeyError, TypeError, IndexError, StopIteration) as err:
        raise UserError(f"{dvc_yaml}: cannot find the evaluate and train stages' paths: {first_line(err)}") from err
    return tuple(path.replace("${item.set}", "{set}").replace("${item.mode}", "{mode}").replace("${item}", "{mode}")
                 for path in found)


QUESTIONS, PREDICTIONS, EVALUATION, TRAINING = path_templates()


def _flatten(params: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if value is None or isinstance(value, list) else value
    return flat


def _evaluations(metrics: dict[str, dict]) -> list[dict]:
    """Each evaluation in `metrics` ({dvc.yaml path: content}) with its model's training figures
    (trainable_params, for the rank curve)."""
    return [
        {"mode": mode, "eval_set": eval_set, **metrics.get(TRAINING.format(mode=mode), {}),
         **metrics[EVALUATION.format(set=eval_set, mode=mode)]}
        for eval_set in EVAL_SETS for mode in MODES
        if "exact_match" in metrics.get(EVALUATION.format(set=eval_set, mode=mode), {})
    ]


def finished_experiments(exp_show: list[dict]) -> list[dict]:
    """Each finished experiment with scores: {"name", "params" (flat), "scores": [evaluate metrics...]}."""
    runs = []
    for commit in exp_show:
        for experiment in commit.get("experiments") or []:
            revision = experiment["revs"][0]
            data = revision.get("data") or {}
            metrics = {path: file.get("data") or {} for path, file in (data.get("metrics") or {}).items()}
            evaluations = _evaluations(metrics)
            if revision.get("error") or not evaluations:
                continue  # queued, running or failed
            runs.append({
                "name": experiment.get("name") or revision["rev"][:7],
                "rev": revision["rev"],
                "params": _flatten(data["params"]["params.yaml"]["data"]),
                "scores": evaluations,
            })
    return runs


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


def _scored(questions: str, predictions: dict[str, str]) -> dict:
    """{"questions": the question ids in order, "scores": {mode: {score: per-question values}}} from a questions
    file's text and each model's predictions file's text."""
    references = {example["id"]: example["answers"]["text"] for example in map(json.loads, questions.splitlines())}
    return {"questions": tuple(references),
            "scores": {mode: question_scores(json.loads(answers), references) for mode, answers in predictions.items()}}


def per_question(rev: str, eval_set: str, modes: list[str]) -> dict:
    """`_scored` of experiment `rev`'s `modes` on `eval_set`, from DVC's cache."""
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(".", rev=rev)
    try:
        return _scored(fs.read_text(QUESTIONS.format(set=eval_set)),
                       {mode: fs.read_text(PREDICTIONS.format(set=eval_set, mode=mode)) for mode in modes})
    except (OSError, ValueError) as err:
        raise UserError(f"experiment {rev[:7]}: cannot read its {eval_set} predictions from DVC's cache: {err}") from err


ARCHIVED = ("params.yaml", "dvc.lock", "metrics", "data/predictions")  # what `--copy-to` copies
# the metrics files `--archive` reads back: each model's training costs and evaluations
ARCHIVED_METRICS = (*(TRAINING.format(mode=mode) for mode in MODES),
                    *(EVALUATION.format(set=eval_set, mode=mode) for mode in MODES for eval_set in EVAL_SETS))


def copy_experiment(rev: str, destination: Path) -> None:
    """Experiment `rev`'s params.yaml, dvc.lock, metrics/ and data/predictions/, from git and DVC's
    cache, into `destination`, laid out as in the workspace: a copy that git can keep, for `--archive`.
    An older copy at `destination` is replaced; a failed copy leaves nothing."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException

    partial = destination.with_name(f"{destination.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        fs = DVCFileSystem(".", rev=rev)
        for path in (path for top in ARCHIVED for path in (fs.find(top) if fs.isdir(top) else [top])):
            if Path(path).name == ".gitignore":  # DVC's, which would hide the predictions from git
                continue
            (partial / path).parent.mkdir(parents=True, exist_ok=True)
            (partial / path).write_bytes(fs.read_bytes(path))
    except (OSError, DvcException) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"experiment {rev[:7]}: cannot copy it to {destination}: {first_line(err)}") from err
    # byte for byte as dvc.lock hashed them, even where git would convert line endings (core.autocrlf)
    (partial / ".gitattributes").write_text("* -text\n")
    shutil.rmtree(destination, ignore_errors=True)
    partial.rename(destination)


def _lookup(params: dict, key: str):
    """The value of dotted `key` ("train.seed") in nested `params`."""
    for part in key.split("."):
        params = params[part]
    return params


def _locked(directory: Path) -> tuple[dict, dict[str, str]]:
    """`directory`'s params.yaml, once checked against the values its dvc.lock recorded, and {path: md5}
    of every dependency and output in that dvc.lock."""
    try:
        stages = yaml.safe_load((directory / "dvc.lock").read_text())["stages"].values()
        hashes = {entry["path"]: entry["md5"] for stage in stages
                  for entry in stage.get("deps", []) + stage.get("outs", []) if "md5" in entry}
        recorded = {key: value for stage in stages for key, value in stage.get("params", {}).get("params.yaml", {}).items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{directory}: cannot read its dvc.lock: {first_line(err)}") from err
    try:
        params = yaml.safe_load((directory / "params.yaml").read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{directory}: cannot read its params.yaml: {first_line(err)}") from err
    for key, value in recorded.items():
        try:
            matches = _lookup(params, key) == value
        except (KeyError, TypeError):
            matches = False
        if not matches:
            raise UserError(f"{directory}: its params.yaml is not the one its dvc.lock recorded ({key} differs)")
    return params, hashes


def _read_locked(directory: Path, name: str, hashes: dict[str, str], path: Path | None = None) -> str:
    """The text of the file that dvc.yaml calls `name` (at `directory / name` unless `path` says
    elsewhere), if its md5 is the one `directory`'s dvc.lock recorded."""
    path = path or directory / name
    if name not in hashes:
        raise UserError(f"{directory}: its dvc.lock records no {name}")
    try:
        content = path.read_bytes()
    except OSError as err:
        raise UserError(f"{directory}: cannot read {path}: {first_line(err)}") from err
    if hashlib.md5(content).hexdigest() != hashes[name]:
        raise UserError(f"{directory}: {path} is not the {name} its dvc.lock recorded (md5 differs)")
    return content.decode()


def archived_runs(directories: list[Path]) -> list[dict]:
    """Finished experiments copied out of DVC, one per directory (its params.yaml, dvc.lock, metrics/
    and data/predictions/, laid out as in the workspace), as `finished_experiments` gives them; each
    run's "rev" is its directory, which `archived_per_question` takes."""
    runs = []
    for directory in directories:
        params, hashes = _locked(directory)
        metrics = {name: json.loads(_read_locked(directory, name, hashes)) for name in ARCHIVED_METRICS if name in hashes}
        params = _flatten(params)
        if params.get(PRECISION) == "auto":
            # auto differs between machines (bf16 on some, fp32 or fp16 on others): copies from several
            # machines group by what each used
            used = {json.loads(_read_locked(directory, name, hashes)).get("precision", "unknown")
                    for name in (details_path(Path(TRAINING.format(mode=mode))).as_posix() for mode in MODES)
                    if name in hashes}  # a run of some modes only
            params[PRECISION] = f"auto ({', '.join(sorted(used))})"
        runs.append({"name": directory.name, "rev": str(directory), "params": params, "scores": _evaluations(metrics)})
    return runs


def archived_per_question(directory: str, eval_set: str, modes: list[str]) -> dict:
    """`_scored` of the run archived in `directory`, its `modes` on `eval_set`: its predictions, and this
    workspace's questions, which must be the ones the run was scored on (the md5 in its dvc.lock)."""
    directory, questions = Path(directory), QUESTIONS.format(set=eval_set)
    _, hashes = _locked(directory)
    return _scored(_read_locked(directory, questions, hashes, path=Path(questions)),
                   {mode: _read_locked(directory, PREDICTIONS.format(set=eval_set, mode=mode), hashes) for mode in modes})


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


def _exp_show() -> list[dict]:
    try:
        result = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise UserError(f"`dvc exp show --json` failed: {getattr(err, 'stderr', '') or err}".strip()) from err
    return json.loads(result.stdout)


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
        runs, read = finished_experiments(json.loads(args.json_file.read_text()) if args.json_file else _exp_show()), per_question
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
