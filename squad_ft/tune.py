"""Tune every method by random search on the validation set, the same number of trials for each.

    python -m squad_ft.tune --trials 8              # 8 trials of each mode (full, lora, head), each a DVC experiment
    python -m squad_ft.tune --trials 8 --offline    # on the embedded sample and the packaged encoder (CI scale)
    python -m squad_ft.tune --trials 8 -S full.epochs=2   # other settings for every trial
    python -m squad_ft.tune --report --plot tuning-curve.png   # the trials, each mode's choice, the tuning curves
    dvc exp show --sort-by metrics/validation/lora.json:f1      # the same trials, as DVC ranks them

Each mode's trials are drawn at random from params.yaml's `tune.space` by Optuna's seeded RandomSampler
(tune.seed), all at once when the mode's study is created: the same seed and space give the same trials,
whatever runs them. Each trial is `dvc exp run -n STUDY-MODE-NUMBER -S ... train@MODE`: the training stage
alone, which scores the validation set every epoch and keeps the best epoch (train.select). Test and
held-out sets are never scored: the choice cannot have looked at them.

The modes take turns, the next trial always one of a mode with the fewest finished, so that every mode
has had the same number of trials (give or take one) whenever tuning stops, also over several stops. The studies live in an Optuna storage (--storage, default sqlite:///tune/studies.db; a plain
file path is an Optuna journal, a text file that git can keep). A killed tuning resumes where it
stopped: a finished trial never runs again, one cut off runs again from its start, also after the
machine restarted. Several workers may share one study through one storage (a SQLite or journal file
given by its absolute path on one machine; a PostgreSQL URL across machines), each in its own clone of
the project: each trial is claimed by one worker. Start the first worker before the others (it draws
the trials). `--copy-to DIR` copies each finished trial's params.yaml, dvc.lock and training and
validation metrics into DIR/NAME, where git can keep them after DVC's experiments are gone.

The report picks each mode's best trial by validation F1 alone, prints its expected best validation F1
against the number of trials tried (Dodge et al., 2019, "Show your work": the expected maximum of n
draws from the trials' scores, computed by opda) with simultaneous confidence bands (opda's
Learned-Miller-DeStefano bands on the scores' CDF), the training time each mode's search used, and the
`dvc exp run` commands that run the chosen settings over seeds for `python -m squad_ft.sweep`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from squad_ft.errors import UserError
from squad_ft.experiments import TRAINING, VALIDATION, copy_experiment
from squad_ft.params import load_params
from squad_ft.stage import MODES, run_stage

STORAGE = "sqlite:///tune/studies.db"
SEEDS = (1, 2, 42)  # the reference protocol's
PARAMS_FILE = Path("params.yaml")

Runner = Callable[[str, dict, str], dict]  # (mode, the trial's settings, its name) -> its results


def distributions(space: dict) -> dict:
    """Optuna distributions of one mode's `tune.space`: {low, high, log} ranges, or lists of choices."""
    import optuna

    return {name: optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=spec["log"])
            if isinstance(spec, dict) else optuna.distributions.CategoricalDistribution(spec)
            for name, spec in space.items()}


def draw_trials(space: dict, seed: int, n: int) -> list[dict]:
    """`n` settings drawn at random from `space` by Optuna's RandomSampler seeded with `seed`."""
    import optuna

    drawing = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [drawing.ask(distributions(space)).params for _ in range(n)]


def study_name(name: str, mode: str) -> str:
    return f"{name}-{mode}"


def _storage_file(storage: str) -> Path | None:
    """The file of a storage on this machine: a SQLite URL's database, or a journal's path."""
    if storage.startswith("sqlite:///"):
        return Path(storage.removeprefix("sqlite:///"))
    return None if "://" in storage else Path(storage)


def open_storage(storage: str):
    """What Optuna takes as `storage`: a database URL as it is; a file path (no "://") an Optuna journal file,
    plain text, one line per change, that git can keep and diff."""
    path = _storage_file(storage)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if "://" in storage:
        return storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _lock_file(storage: str) -> Path | None:
    """The lock beside a storage's file (SQLite or journal), which serialises the workers' bookkeeping."""
    path = _storage_file(storage)  # not NAME.lock: Optuna's journal locks itself there
    return path.with_name(path.name + ".workers.lock") if path else None


@contextlib.contextmanager
def _bookkeeping(storage: str) -> Iterator[None]:
    from filelock import FileLock

    lock = _lock_file(storage)
    with FileLock(str(lock)) if lock else contextlib.nullcontext():
        yield


def open_study(storage: str, name: str, mode: str, space: dict, seed: int, trials: int, settings: dict):
    """The mode's study, created with its `trials` drawn if new; a UserError if it exists with another
    space, seed, budget or settings (tuning those is another study: --study)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recipe = {"space": space, "seed": seed, "trials": trials, "settings": settings}
    with _bookkeeping(storage):
        study = optuna.create_study(storage=open_storage(storage), study_name=study_name(name, mode),
                                    direction="maximize", load_if_exists=True)
        if "drawn" not in study.user_attrs:  # new, or killed while being created: "drawn" is written last
            for key, value in recipe.items():
                study.set_user_attr(key, value)
            study.set_user_attr("drawn", draw_trials(space, seed, trials))
        elif {key: study.user_attrs[key] for key in recipe} != json.loads(json.dumps(recipe)):
            differing = [key for key in recipe if study.user_attrs[key] != json.loads(json.dumps(recipe[key]))]
            raise UserError(f"study {study.study_name!r} in {storage} was started with another {differing[0]} "
                            f"({study.user_attrs[differing[0]]!r}); resume it with the same, or name a new one "
                            "with --study")
    return study


def _boot() -> str:
    """This machine's boot: a process of an earlier boot, or of an earlier machine of the same name, is gone."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _worker() -> dict:
    return {"host": socket.gethostname(), "boot": _boot(), "pid": os.getpid()}


def _alive(worker: dict | None, storage: str) -> bool:
    """Whether the worker that claimed a trial still runs. A file storage (SQLite, journal) is shared on one
    machine only, so a worker of another host or boot is gone; with a database server, a worker elsewhere is
    assumed alive."""
    if not worker:
        return True
    if worker["host"] != socket.gethostname():
        return _storage_file(storage) is None
    if worker.get("boot", _boot()) != _boot():  # the machine restarted since (or is another of the same name)
        return False
    try:
        os.kill(worker["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _queue_unfinished(study, storage: str) -> None:
    """Queue again every drawn trial that is neither finished, waiting, nor running in a live worker: a
    worker that died (killed, or its machine rebooted) leaves its trial running, which is failed here."""
    from optuna.trial import TrialState

    claimed = set()
    for trial in study.get_trials(deepcopy=False):
        index = trial.user_attrs.get("index")
        if trial.state == TrialState.RUNNING and not _alive(trial.user_attrs.get("worker"), storage):
            study.tell(trial.number, state=TrialState.FAIL)
        elif trial.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING) and index is not None:
            claimed.add(index)
    for index, params in enumerate(study.user_attrs["drawn"]):
        if index not in claimed:
            study.enqueue_trial(params, user_attrs={"index": index})


def work(study, runner: Runner, storage: str, limit: int | None = None) -> int:
    """Run the study's waiting trials, one at a time, until none is left or `limit` have run; return how many
    this worker ran. `storage` is the study's storage (a SQLite or journal file's lock serialises the workers'
    bookkeeping)."""
    from optuna.trial import TrialState

    mode = study.study_name.rsplit("-", 1)[1]
    dists = distributions(study.user_attrs["space"])
    ran = 0
    while limit is None or ran < limit:
        with _bookkeeping(storage):
            _queue_unfinished(study, storage)
            if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return ran
            trial = study.ask()  # takes a waiting trial, atomically: another worker cannot take it too
            if trial.user_attrs.get("index") is None:  # another worker took the last waiting one first
                study.tell(trial, state=TrialState.FAIL)
                continue
            # under the lock: a trial is never seen running without the worker that can be checked for
            trial.set_user_attr("worker", _worker())
        settings = {name: (trial.suggest_float(name, dist.low, dist.high, log=dist.log)
                           if hasattr(dist, "low") else trial.suggest_categorical(name, dist.choices))
                    for name, dist in dists.items()}  # the drawn values: the trial was queued with them
        name = f"{study.study_name}-{trial.number}"
        print(f"trial {trial.user_attrs['index'] + 1} of {len(study.user_attrs['drawn'])} ({mode}): {settings}",
              flush=True)
        try:
            result = runner(mode, settings, name)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        for key, value in result.items():
            trial.set_user_attr(key, value)
        study.tell(trial, result["f1"])
        ran += 1
    return ran


def take_turns(studies: list, runner: Runner, storage: str) -> int:
    """Run the studies' trials one at a time, each time one of a study with the fewest finished trials (the first
    of equals, in the order given): stopped anywhere, and resumed after any stop, the modes have had the same
    number of trials, give or take one. Return how many this worker ran."""
    ran, pending = 0, list(studies)
    while pending:
        study = min(pending, key=lambda study: len(finished_trials(study)))
        if work(study, runner, storage, limit=1):
            ran += 1
        else:
            pending.remove(study)
    return ran


def _setting(key: str, value) -> str:
    """`-Skey=value` for `dvc exp run`, which reads the value as YAML: a string as it is (as typed after -S),
    anything else as JSON (true, 0.0003)."""
    return f"-S{key}={value if isinstance(value, str) else json.dumps(value)}"


BACKUP = Path("tune/params.yaml.before")  # params.yaml as tuning found it, until tuning ends


@contextlib.contextmanager
def params_kept() -> Iterator[None]:
    """params.yaml as it was before tuning, after every trial and at the end, even after a tuning killed
    mid-trial (`dvc exp run -S` edits the file): a backup kept until tuning ends is restored on the next start."""
    if BACKUP.exists():
        print(f"params.yaml restored from {BACKUP}: a tuning was killed with a trial's settings in it", flush=True)
        PARAMS_FILE.write_bytes(BACKUP.read_bytes())
    else:
        BACKUP.parent.mkdir(parents=True, exist_ok=True)
        BACKUP.write_bytes(PARAMS_FILE.read_bytes())
    try:
        yield
    finally:
        PARAMS_FILE.write_bytes(BACKUP.read_bytes())
        BACKUP.unlink()


def experiment_rev(name: str) -> str:
    """The commit of DVC experiment `name` of this workspace's commit (its ref: refs/exps/HE/AD.../NAME)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], capture_output=True, text=True)
    if found.returncode:
        raise UserError(f"experiment {name!r}: no DVC experiment of that name on this commit ({ref})")
    return found.stdout.strip()


def dvc_runner(settings: dict, env: dict, copy_to: Path | None = None) -> Runner:
    """A runner of each trial as `dvc exp run -n NAME -S ... train@MODE` on top of `settings`, in this
    workspace, inside `params_kept`: params.yaml is put back after each, so every trial starts from the same
    params. With `copy_to`, each finished trial's params.yaml, dvc.lock and training stage's metrics are
    copied into COPY_TO/NAME."""

    def run(mode: str, trial_settings: dict, name: str) -> dict:
        original = BACKUP.read_bytes()
        command = ["dvc", "exp", "run", "-n", name, *(_setting(key, value) for key, value in settings.items()),
                   *(_setting(f"{mode}.{key}", value) for key, value in trial_settings.items()), f"train@{mode}"]
        print("$ " + " ".join(command), flush=True)
        try:
            status = subprocess.run(command, env=env).returncode
        finally:
            PARAMS_FILE.write_bytes(original)
        if status:
            raise UserError(f"trial {name}: `dvc exp run` failed with exit status {status}; its first error is above")
        validation = json.loads(Path(VALIDATION.format(mode=mode)).read_text())  # the paths dvc.yaml gives
        training = json.loads(Path(TRAINING.format(mode=mode)).read_text())
        if copy_to:
            try:
                copy_experiment(experiment_rev(name), copy_to / name, stages=[f"train@{mode}"])
            except UserError as err:  # the trial stands; its copy can be made later (dvc exp show lists it)
                print(f"warning: not copied: {err}", file=sys.stderr, flush=True)
        return {"f1": validation["f1"], "exact_match": validation["exact_match"], "epoch": validation["epoch"],
                "epochs_run": validation["epochs_run"], "train_runtime_s": training["train_runtime_s"],
                "experiment": name}

    return run


def _value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def finished_trials(study) -> list[dict]:
    """The study's finished trials: {"index", "settings", "f1", ...} in the order they were drawn."""
    from optuna.trial import TrialState

    trials = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        # the first finished of each drawn trial: on a storage without a lock (a database server) two workers may
        # both have queued one again; the budget counts it once
        trials.setdefault(trial.user_attrs["index"], {"index": trial.user_attrs["index"], "settings": trial.params,
                                                      **trial.user_attrs})
    return [trials[index] for index in sorted(trials)]


def chosen(trials: list[dict]) -> dict:
    """The trial of highest validation F1 (the first drawn of equals): validation alone decides."""
    return max(trials, key=lambda trial: trial["f1"])


def tuning_curve(scores: list[float], confidence: float = 0.8):
    """(n, expected best F1, lower, upper) for n = 1 .. len(scores): the expected maximum of n trials drawn
    from the scores' distribution (Dodge et al. 2019, opda's average tuning curve), with the curves of opda's
    simultaneous `confidence` bands on that distribution (F1 lies in [0, 100])."""
    import numpy as np
    from opda.nonparametric import EmpiricalDistribution

    ns = np.arange(1, len(scores) + 1)
    point = EmpiricalDistribution(scores, a=0.0, b=100.0)
    if len(scores) < 2:
        curve = point.average_tuning_curve(ns)
        return list(zip(ns, curve, curve, curve))
    # n_jobs=1: in this process. opda's default forks a multiprocessing pool, and a fork of a process whose
    # libraries run threads (torch's, once imported) can deadlock: a CI run hung there, joining the pool.
    low_cdf, _, high_cdf = EmpiricalDistribution.confidence_bands(
        scores, confidence, a=0.0, b=100.0, method="ld_equal_tailed", generator=np.random.default_rng(0), n_jobs=1)
    # a CDF that rises later (the band's lower edge) means higher scores: the upper curve
    return list(zip(ns, point.average_tuning_curve(ns), high_cdf.average_tuning_curve(ns),
                    low_cdf.average_tuning_curve(ns)))


def plot_tuning_curves(curves: dict[str, list], confidence: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from squad_ft.report import MODEL_LABELS

    figure, axes = plt.subplots(figsize=(6, 4))
    for mode, curve in curves.items():
        ns, point, low, high = zip(*curve)
        axes.plot(ns, point, marker="o", label=MODEL_LABELS.get(mode, mode))
        axes.fill_between(ns, low, high, alpha=0.15)
    axes.set_xlabel("trials")
    axes.set_ylabel("expected best validation F1")
    axes.set_title(f"Tuning curves ({confidence:.0%} bands)")
    axes.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)


def report(studies: dict, seeds: tuple[int, ...], plot: Path | None, confidence: float = 0.8) -> str:
    """Markdown: each mode's trials and choice, the tuning curves, and the commands that run the choice over seeds."""
    lines, curves, choice, settings = [], {}, {}, {}
    for mode, study in studies.items():
        trials = finished_trials(study)
        budget = len(study.user_attrs["drawn"])
        if not trials:
            lines += [f"## {mode}: no finished trial of {budget} yet", ""]
            continue
        settings = study.user_attrs["settings"]
        best = chosen(trials)
        choice[mode] = best["settings"]
        hours = sum(trial["train_runtime_s"] for trial in trials) / 3600
        names = list(trials[0]["settings"])
        lines += [f"## {mode}: {len(trials)} of {budget} trials, {hours:.2f} h of training; chosen: trial "
                  f"{best['index'] + 1}, validation F1 {best['f1']:.1f}", "",
                  "| trial | " + " | ".join(names) + " | validation EM | validation F1 | epoch | train time (s) | experiment |",
                  "|---" * (len(names) + 6) + "|"]
        for trial in trials:
            mark = " (chosen)" if trial is best else ""
            lines.append(f"| {trial['index'] + 1}{mark} | " + " | ".join(_value(trial["settings"][n]) for n in names)
                         + f" | {trial['exact_match']:.1f} | {trial['f1']:.1f} | {trial['epoch']} of "
                         f"{trial['epochs_run']} | {trial['train_runtime_s']:.0f} | {trial['experiment']} |")
        curves[mode] = tuning_curve([trial["f1"] for trial in trials], confidence)
        lines.append("")
    if curves:
        width = max(len(curve) for curve in curves.values())
        lines += [f"## Expected best validation F1 after n trials ({confidence:.0%} bands)", "",
                  "| n | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
        for n in range(1, width + 1):
            cells = [f"{c[n - 1][1]:.1f} [{c[n - 1][2]:.1f}, {c[n - 1][3]:.1f}]" if n <= len(c) else ""
                     for c in curves.values()]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
        if plot:
            plot_tuning_curves(curves, confidence, plot)
            lines += [f"Plot: {plot}", ""]
    if choice:
        base = " ".join(shlex.quote(_setting(key, value)) for key, value in settings.items())
        chosen_settings = " ".join(shlex.quote(_setting(f"{mode}.{key}", value)) for mode, values in choice.items()
                                   for key, value in values.items())
        lines += ["The chosen settings over seeds (then `python -m squad_ft.sweep` pools them):", "", "```"]
        lines += [f"dvc exp run --queue -n tuned-seed{seed} {base} {chosen_settings} -S train.seed={seed}".replace("  ", " ")
                  for seed in seeds]
        lines += ["dvc queue start", "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, help="trials per mode (the same for every mode)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="the modes to tune")
    parser.add_argument("--study", default="tune", help="the studies' name (one study per mode: NAME-MODE)")
    parser.add_argument("--storage", default=STORAGE, help=f"Optuna storage URL (default {STORAGE})")
    parser.add_argument("--offline", action="store_true",
                        help="on the embedded sample and the packaged encoder, as `python -m squad_ft.offline`")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="another setting for every trial, passed on to `dvc exp run -S` (may be repeated)")
    parser.add_argument("--copy-to", type=Path, metavar="DIR",
                        help="copy each finished trial's params.yaml, dvc.lock and metrics into DIR/NAME, for git")
    parser.add_argument("--report", action="store_true", help="print the trials, choices and tuning curves")
    parser.add_argument("--plot", type=Path, help="with --report: write the tuning curves here (PNG)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="with --report: the seeds the chosen settings' commands run over")
    args = parser.parse_args()
    from squad_ft.offline import dvc_environment, offline_settings

    settings = {**(offline_settings() if args.offline else {}),
                **dict(setting.split("=", 1) for setting in args.set_param)}
    params = load_params()
    tune = params.get("tune") or {}
    if "space" not in tune or "seed" not in tune:
        raise UserError("params.yaml: the section 'tune' with 'seed' and 'space' (per mode) is missing")
    import optuna

    if args.report:
        if _storage_file(args.storage) and not _storage_file(args.storage).exists():
            raise UserError(f"no study storage at {args.storage}: run `python -m squad_ft.tune --trials N` first")
        studies = {}
        for mode in args.modes:
            try:
                studies[mode] = optuna.load_study(study_name=study_name(args.study, mode),
                                                  storage=open_storage(args.storage))
            except KeyError:
                continue
        if not studies:
            raise UserError(f"no study {args.study!r} in {args.storage}: run `python -m squad_ft.tune --trials N` first")
        print(report(studies, tuple(args.seeds), args.plot))
        return
    if not args.trials or args.trials < 1:
        raise UserError("--trials N (N >= 1) is needed: the number of trials of every mode")
    for mode in args.modes:
        if mode not in tune["space"]:
            raise UserError(f"params.yaml: tune.space has no {mode!r} (it holds {', '.join(tune['space'])})")
    runner = dvc_runner(settings, dvc_environment(), args.copy_to and args.copy_to.resolve())
    with params_kept():
        take_turns([open_study(args.storage, args.study, mode, tune["space"][mode], tune["seed"], args.trials,
                               settings) for mode in args.modes], runner, args.storage)
    print(f"done: {args.trials} trials of each of {', '.join(args.modes)}; "
          f"python -m squad_ft.tune --report --storage {args.storage} --study {args.study}")


if __name__ == "__main__":
    run_stage(main)
