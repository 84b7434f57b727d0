"""docs/results.md's tables come from files: each is printed again here, by the command the document gives
for it, from the committed runs, and compared line by line; the README's headline figures must be among
what those commands print. A retyped, stale or edited number fails.

A table belongs to the `python -m squad_ft.sweep` or `python -m squad_ft.tune` command of the ```bash block
before it. `sweep --archive` scores the copied predictions against the questions of a workspace, which is
made here as a user makes it: the runs' data settings, then the stages that write the question files.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, run_stage, write_project

RESULTS = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
PRINTERS = ("python -m squad_ft.sweep", "python -m squad_ft.tune")


def commands_and_tables(text: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """([(command, the tables after it until the next command, each as its text)], the tables before any command)."""
    found, orphans, command, in_block, lines = [], [], None, False, text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            in_block = not in_block and line.strip().startswith("```bash")
        elif in_block and line.strip() and not line.strip().startswith(PRINTERS):
            command = None  # another command: the tables after it are no printer's
        elif in_block and line.strip().startswith(PRINTERS):
            joined = line.strip()
            while joined.endswith("\\"):
                i += 1
                joined = joined[:-1].rstrip() + " " + lines[i].strip()
            command = joined
            found.append((command, []))
        elif not in_block and line.startswith("|"):
            table = []
            while i < len(lines) and lines[i].startswith("|"):
                table.append(lines[i])
                i += 1
            (found[-1][1] if command else orphans).append("\n".join(table))
            continue
        i += 1
    return [(command, tables) for command, tables in found if tables], orphans


def printed_tables(output: str) -> list[str]:
    """The whole tables (runs of lines starting with "|") that `output` holds, each as its text."""
    tables, table = [], []
    for line in [*output.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            tables.append("\n".join(table))
            table = []
    return tables


TABLES, ORPHANS = commands_and_tables(RESULTS.read_text())


def test_every_table_follows_the_command_that_prints_it():
    assert not ORPHANS, "a table with no command before it:\n" + ORPHANS[0]
    assert TABLES
    # the parser itself: a table after a command belongs to it; one before any command is an orphan
    parsed, orphans = commands_and_tables("| a |\n\n```bash\npython -m squad_ft.sweep --archive x \\\n  y\n```\n| b |\n| c |\n"
                                          "```bash\ncat z\n```\n| d |\n")
    assert parsed == [("python -m squad_ft.sweep --archive x y", ["| b |\n| c |"])] and orphans == ["| a |", "| d |"]
    assert printed_tables("text\n| b |\n| c |\n\n| d |\n") == ["| b |\n| c |", "| d |"]


def question_files(runs: list[Path], workspace: Path, model_dir: Path) -> None:
    """The question files the runs were scored on, in `workspace`: their data settings, then the stages that
    write data/split/. Runs made before the validation set existed held out every unseen article: today's
    validation and held-out sets together, in that order."""
    params = yaml.safe_load((runs[0] / "params.yaml").read_text())
    sections = {section: params[section] for section in ("data", "heldout", "validation") if section in params}
    for section in ("data", "heldout"):
        source = Path(sections[section]["source"])
        if not source.is_absolute():  # relative to the project's root, where the runs were made
            source = (ROOT / source).resolve()
        if not source.exists():
            pytest.skip(f"the runs' data is not here: {source} (only CI and team machines have ../shared)")
        sections[section] = {**sections[section], "source": str(source)}
    write_project(workspace, **sections, model={"name": str(model_dir)})  # the model: only fingerprinted here
    for stage in ("inputs", "subset", "split", "heldout"):
        result = run_stage(stage, cwd=workspace)
        assert result.returncode == 0, result.stderr
    if "validation" not in params:
        split = workspace / "data" / "split"
        (split / "heldout.jsonl").write_bytes((split / "validation.jsonl").read_bytes()
                                              + (split / "heldout.jsonl").read_bytes())


def printed(command: str, tmp_path: Path, model_dir: Path) -> str:
    """What `command` prints, run from the project's root (tune) or from a workspace with the runs' questions
    (sweep --archive)."""
    arguments = shlex.split(command)[1:]
    cwd = ROOT
    if "--archive" in arguments:
        start = arguments.index("--archive") + 1
        end = next((i for i in range(start, len(arguments)) if arguments[i].startswith("-")), len(arguments))
        runs = [ROOT / path for path in arguments[start:end]]
        arguments[start:end] = map(str, runs)
        cwd = tmp_path / "workspace"
        cwd.mkdir()
        question_files(runs, cwd, model_dir)
    result = subprocess.run([sys.executable, *arguments], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, tiny_model_dir) -> dict[str, str]:
    """Each command's output, printed once (a command that cannot run here is skipped by its test)."""
    cache: dict[str, str] = {}

    def output(command: str) -> str:
        if command not in cache:
            cache[command] = printed(command, tmp_path_factory.mktemp("printed"), tiny_model_dir)
        return cache[command]

    return output


@pytest.mark.parametrize("command, tables", TABLES, ids=[command[:70] for command, _ in TABLES])
def test_each_table_is_what_its_command_prints_from_the_committed_runs(command, tables, outputs):
    output = outputs(command)
    for table in tables:  # whole tables, line for line
        assert table in printed_tables(output), f"not printed by `{command}`:\n{table}\n\nit printed:\n{output}"


def test_the_readmes_headline_figures_are_printed_by_the_results_commands(outputs):
    headline = README.read_text().split("## Result", 1)[1].split("\n## ", 1)[0]
    figures = re.findall(r"[-+]?\d+\.\d \[[-+]?\d+\.\d, [-+]?\d+\.\d\]", headline)
    assert figures, "the README's Result section has no figure with its interval"
    printed_text = "\n".join(outputs(command) for command, _ in TABLES)
    assert [figure for figure in figures if figure not in printed_text] == []
