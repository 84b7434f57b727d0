"""What every stage script shares: params, one-line errors, all-or-nothing outputs."""
from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

PARAMS_FILE = "params.yaml"
MODES = ("full", "lora")


class UserError(Exception):
    """A problem with the user's data or parameters, reported in one line without a traceback."""


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    """Read params.yaml (DVC runs every stage from the project root)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read {path}: {err}") from err


def mode_argument(module: str) -> str:
    """The one command-line argument of a per-model stage: `full` or `lora`."""
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        raise UserError(f"usage: python -m {module} {{{','.join(MODES)}}}")
    return sys.argv[1]


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a UserError becomes `error: ...` on stderr and exit status 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


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
