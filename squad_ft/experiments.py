"""The finished experiments a summary reads: from DVC (`dvc exp show --json`, their predictions in DVC's
cache) or from copies kept in git (`--copy-to` writes them, `--archive` reads them back, each file checked
against its dvc.lock). Where each file is comes from dvc.yaml."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import yaml

from squad_ft.errors import UserError, first_line
from squad_ft.metric import question_scores
from squad_ft.stage import EVAL_SETS, MODES, details_path

PRECISION = "train.precision"

DVC_YAML = Path(__file__).resolve().parents[1] / "dvc.yaml"  # the pipeline this package belongs to


def path_templates(dvc_yaml: Path = DVC_YAML) -> tuple[str, str, str, str, str]:
    """Where each experiment's questions, predictions, evaluation metrics, training metrics and validation
    metrics are, read from dvc.yaml's evaluate and train stages, as templates with {set} and {mode}."""
    try:
        stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
        evaluate, train = stages["evaluate"], stages["train"]["do"]
        entries = lambda items: [item if isinstance(item, str) else next(iter(item)) for item in items]  # noqa: E731
        found = (next(dep for dep in entries(evaluate["deps"]) if "${item.set}" in dep and "${item.mode}" not in dep),
                 next(out for out in entries(evaluate["outs"]) if "${item.mode}" in out and "${item.set}" in out),
                 entries(evaluate["metrics"])[0], *entries(train["metrics"])[:2])
        if len(found) != 5:
            raise IndexError("the train stage declares fewer than 2 metrics files (training, validation)")
    except (OSError, yaml.YAMLError, KeyError, TypeError, IndexError, StopIteration) as err:
        raise UserError(f"{dvc_yaml}: cannot find the evaluate and train stages' paths: {first_line(err)}") from err
    return tuple(path.replace("${item.set}", "{set}").replace("${item.mode}", "{mode}").replace("${item}", "{mode}")
                 for path in found)


QUESTIONS, PREDICTIONS, EVALUATION, TRAINING, VALIDATION = path_templates()


def report_path(dvc_yaml: Path = DVC_YAML) -> Path:
    """The report stage's Markdown report, as dvc.yaml names it."""
    try:
        outs = yaml.safe_load(dvc_yaml.read_text())["stages"]["report"]["outs"]
        return Path(next(name for out in outs for name in ([out] if isinstance(out, str) else out) if name.endswith(".md")))
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as err:
        raise UserError(f"{dvc_yaml}: cannot find the report stage's Markdown output: {first_line(err)}") from err


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


def _outermost_folders(*templates: str) -> tuple[str, ...]:
    """The folders the templates' files are under ("metrics/{set}/{mode}.json": "metrics"), none inside another."""
    folders = {template.split("{", 1)[0].rpartition("/")[0] for template in templates}
    return tuple(sorted(f for f in folders if not any(f.startswith(other + "/") for other in folders)))


# what `--copy-to` copies: the run's record, and the folders of its metrics and predictions (dvc.yaml's)
ARCHIVED = ("params.yaml", "dvc.lock", *_outermost_folders(PREDICTIONS, EVALUATION, TRAINING, VALIDATION))
# the metrics files `--archive` reads back: each model's training costs and evaluations
ARCHIVED_METRICS = (*(TRAINING.format(mode=mode) for mode in MODES),
                    *(EVALUATION.format(set=eval_set, mode=mode) for mode in MODES for eval_set in EVAL_SETS))


def copy_experiment(rev: str, destination: Path, stages: list[str] | None = None) -> None:
    """Experiment `rev`'s params.yaml, dvc.lock and the files of ARCHIVED's folders (its metrics and predictions),
    from git and DVC's cache, into `destination`, laid out as in the workspace: a copy that git can keep, for `--archive`.
    `stages` (names in dvc.lock, such as "train@lora"): only their outputs. An older copy at `destination`
    is replaced; a failed copy leaves nothing."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException

    partial = destination.with_name(f"{destination.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        fs = DVCFileSystem(".", rev=rev)
        # what the experiment made: the outputs its dvc.lock records (an experiment of some stages only, such
        # as one mode's, has no files for the outputs dvc.yaml declares for the others)
        locked = yaml.safe_load(fs.read_text("dvc.lock"))["stages"]
        made = {entry["path"] for name, stage in locked.items() if stages is None or name in stages
                for entry in stage.get("outs", [])}
        for path in (path for top in ARCHIVED for path in (fs.find(top) if fs.isdir(top) else [top])):
            if path not in ("params.yaml", "dvc.lock") and path not in made:
                continue  # DVC's .gitignore files (they would hide the predictions from git), and outputs not made
            (partial / path).parent.mkdir(parents=True, exist_ok=True)
            (partial / path).write_bytes(fs.read_bytes(path))
    except (OSError, DvcException, yaml.YAMLError, KeyError, AttributeError) as err:
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


def dvc_exp_show() -> list[dict]:
    """`dvc exp show --json`: the experiments of the current commit."""
    try:
        result = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise UserError(f"`dvc exp show --json` failed: {getattr(err, 'stderr', '') or err}".strip()) from err
    return json.loads(result.stdout)
