"""What every stage script shares: its command line, one-line errors and interrupts, all-or-nothing
outputs, and the relaunch under torchrun."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from squad_ft.errors import UserError

# full fine-tuning; LoRA; the QA head alone on a frozen encoder (the reference experiment's "LoRA" row)
MODES = ("full", "lora", "head")
BASELINE = "full"  # what every other mode is compared against, question by question
COMPARED = tuple(mode for mode in MODES if mode != BASELINE)
EVAL_SETS = ("test", "heldout")
VARIANTS = ("full", "lora", "lora-merged", "head")  # the published model folders


def stage_arguments(
    description: str, *paths: str, mode: bool = False, eval_set: bool = False, variant: bool = False
) -> argparse.Namespace:
    """A stage's command line: a required `--NAME PATH` for each of `paths`; `--mode`, `--eval-set`
    and `--variant` if asked.

    dvc.yaml passes every input and output path, so paths live in one place.
    """
    parser = argparse.ArgumentParser(description=description)
    if mode:
        parser.add_argument("--mode", required=True, choices=MODES,
                            help="which model: full fine-tuning, LoRA, or the QA head alone")
    if eval_set:
        parser.add_argument("--eval-set", required=True, choices=EVAL_SETS, help="which evaluation set")
    if variant:
        parser.add_argument("--variant", required=True, choices=VARIANTS, help="which model folder")
    for name in paths:
        parser.add_argument(f"--{name}", required=True, type=Path, metavar="PATH")
    return parser.parse_args()


def write_json(path: Path, content) -> None:
    """`content` as indented JSON, ending with a newline."""
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")


def details_path(metrics: Path) -> Path:
    """Where the details of a metrics file go: beside it, `NAME.details.json`."""
    return metrics.with_name(f"{metrics.stem}.details.json")


def write_record(metrics_path: Path, metrics: dict, details: dict) -> None:
    """A stage's result as two files: `metrics_path`, declared as DVC metrics, with what runs are
    compared by (scores, intervals, costs), and its details, not declared, with what the run was
    (device, sources, counts), so that `dvc metrics show` and `dvc exp show` hold only numbers to compare."""
    with atomic_output(metrics_path) as out, atomic_output(details_path(metrics_path)) as details_out:
        write_json(out, metrics)
        write_json(details_out, details)


def read_record(metrics_path: Path) -> dict:
    """A metrics file and its details, as one dict."""
    return {**json.loads(details_path(Path(metrics_path)).read_text()), **json.loads(Path(metrics_path).read_text())}


def relaunch_under_torchrun(nproc: int) -> None:
    """Run this stage's command again under torchrun, `nproc` processes on this machine; return when
    they succeed, raise a UserError when they fail. A signal to this process is passed on to
    torchrun, which stops its workers."""
    module = sys.modules["__main__"].__spec__.name
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", module, *sys.argv[1:]]
    print(f"running {module} under torchrun with {nproc} processes", flush=True)
    workers = subprocess.Popen(command)
    try:
        status = workers.wait()
    except BaseException:
        workers.send_signal(signal.SIGTERM)
        workers.wait()
        raise
    if status:
        raise UserError(f"{module} under torchrun ({nproc} processes) failed with exit status {status}; "
                        "its first error is above")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind (removing partial outputs) and exit."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame) -> None:
    for other in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


def quiet_libraries() -> None:
    """Keep the lines that matter visible: no load-report tables (the new QA head is expected; the
    train stage says so in one line) and no deprecation notices from inside the libraries."""
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main() with one-line endings instead of tracebacks.

    A UserError becomes `error: ...` on stderr and exit status 2. SIGINT (Ctrl-C) and SIGTERM
    unwind the stage like an error, so `atomic_output` removes what was half written, then print
    `interrupted` and exit with 128 + the signal number, as a shell reports a killed command.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    quiet_libraries()
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as interrupt:
        # partial outputs are gone by now; exit at once, so no progress bar repaints after this line
        sys.stdout.flush()
        print(f"\ninterrupted ({interrupt})", file=sys.stderr, flush=True)
        os._exit(128 + interrupt.signum)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write a file or folder to; it becomes `path` only on success.

    On any error the temporary output is removed and `path` is left absent, so a failed
    stage never leaves a partial output behind for DVC or a user to mistake for a result.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.tmp")
    _remove(tmp)
    _remove(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    tmp.rename(final)
