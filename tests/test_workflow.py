"""The GitHub Actions workflow: actionlint finds nothing in it, and it runs the README's commands."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "reproduce.yml"
OFFLINE_COMMAND = "python -m squad_ft.offline"

# the binary that requirements-dev.txt installs: next to this Python (a venv's bin/), else on PATH
ACTIONLINT = shutil.which(
    "actionlint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
)
needs_actionlint = pytest.mark.skipif(
    ACTIONLINT is None,
    reason="no actionlint: pip install -r requirements-dev.txt",
)


def actionlint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ACTIONLINT, "-no-color", str(path)], capture_output=True, text=True, timeout=120, cwd=path.parent
    )


@needs_actionlint
def test_actionlint_finds_nothing_in_the_workflow():
    result = actionlint(WORKFLOW)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_actionlint
def test_actionlint_is_live_on_a_broken_copy(tmp_path):
    broken = tmp_path / WORKFLOW.name
    text = WORKFLOW.read_text()
    assert "    runs-on: ubuntu-latest\n" in text
    broken.write_text(text.replace("    runs-on: ubuntu-latest\n", "    runs-on: ubuntu-latest\n    runs_on: x\n"))
    result = actionlint(broken)
    assert result.returncode != 0
    assert "runs_on" in result.stdout + result.stderr


def readme_test_command() -> str:
    """The README's test command: the line of a fenced shell block that runs pytest."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", readme, flags=re.M | re.S)
    commands = [
        line.strip() for block in blocks for line in block.splitlines()
        if re.match(r"(python3? -m )?pytest\b", line.strip())
    ]
    assert len(commands) == 1, commands
    return commands[0]


def run_lines(step: dict) -> list[str]:
    return [line.strip() for line in step.get("run", "").splitlines() if line.strip()]


def test_the_workflow_runs_the_readmes_test_command_then_the_offline_comparison():
    assert readme_test_command() == "python -m pytest"
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # PyYAML reads the key `on` as True (YAML 1.1)
    assert set(triggers) == {"push", "pull_request", "workflow_dispatch"}
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    steps = job["steps"]
    lines = [(i, line) for i, step in enumerate(steps) for line in run_lines(step)]

    def step_running(command: str) -> int:
        found = [i for i, line in lines if line == command]
        assert len(found) == 1, f"{command!r} is run by {len(found)} steps: {[line for _, line in lines]}"
        return found[0]

    tests, offline = step_running(readme_test_command()), step_running(OFFLINE_COMMAND)
    install = step_running("pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements-dev.txt")
    identity = min(i for i, line in lines if line.startswith("git config --global user.name"))
    assert any(line.startswith("git config --global user.email") for i, line in lines if i == identity)
    assert install < identity < tests < offline
    report = step_running('cat metrics/report.md >> "$GITHUB_STEP_SUMMARY"')
    assert offline < report and "always()" in steps[report]["if"]
    (upload,) = [step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()" and upload["with"]["path"].rstrip("/") == "metrics"
    assert [step["uses"] for step in steps[:2]] == ["actions/checkout@v6", "actions/setup-python@v6"]
    assert steps[1]["with"]["python-version"] == "3.11" and steps[1]["with"]["cache"] == "pip"
