"""dvc.yaml cannot go stale: every stage depends on every project module it imports, transitively.

A stage's `cmd` runs `python -m MODULE`; the project modules that MODULE imports, directly or
through other project modules, must all be in the stage's `deps`, or DVC would serve results
computed by old code. Package `__init__.py` files hold no code (checked), so they need not be.
"""
from __future__ import annotations

import ast
import copy
import functools
import json
import re

import pytest
import yaml
from helpers import ROOT

PACKAGES = ("squad_ft", "stages")


def module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


@functools.cache  # the code does not change during a test run; the removal test asks hundreds of times
def project_imports(module: str) -> frozenset[str]:
    """Project modules imported by `module` (e.g. "stages.train" -> {"squad_ft.training", ...})."""
    tree = ast.parse((ROOT / module_path(module)).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in PACKAGES and (ROOT / module_path(name)).exists()}
    return frozenset(found)


def import_closure(module: str) -> set[str]:
    """`module` and every project module it imports, transitively, as file paths."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(project_imports(current))
    return {module_path(name) for name in seen}


def stage_definitions(dvc_yaml: dict):
    """(stage name, cmd, deps) of each stage; a foreach stage's template counts once."""
    for name, stage in dvc_yaml["stages"].items():
        body = stage.get("do", stage)
        yield name, body["cmd"], body.get("deps", [])


def needed_modules(cmd: str) -> set[str]:
    """The project modules a stage's command runs on: those of its `python -m MODULE`, transitively."""
    modules = re.findall(r"python -m ([\w.]+)", cmd)
    assert modules, f"no `python -m MODULE` in {cmd!r}"
    return set().union(*(import_closure(module) for module in modules))


def missing_deps(dvc_yaml: dict) -> dict[str, set[str]]:
    """{stage: project modules it imports but does not depend on}, for stages with misses."""
    missing = {}
    for name, cmd, deps in stage_definitions(dvc_yaml):
        if needed_modules(cmd) - set(deps):
            missing[name] = needed_modules(cmd) - set(deps)
    return missing


@pytest.fixture(scope="module")
def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_stage_depends_on_every_module_it_imports(dvc_yaml):
    assert missing_deps(dvc_yaml) == {}


def test_no_stage_depends_on_a_module_it_does_not_import(dvc_yaml):
    """Or a change to that module would re-run the stage for nothing."""
    for name, cmd, deps in stage_definitions(dvc_yaml):
        assert {dep for dep in deps if dep.endswith(".py")} - needed_modules(cmd) == set(), name


def test_removing_any_module_dep_is_caught(dvc_yaml):
    for name, _, deps in stage_definitions(dvc_yaml):
        for dep in (d for d in deps if d.endswith(".py")):
            broken = copy.deepcopy(dvc_yaml)
            body = broken["stages"][name].get("do", broken["stages"][name])
            body["deps"].remove(dep)
            assert missing_deps(broken) == {name: {dep}}, (name, dep)


def test_the_closure_is_transitive():
    # stages.evaluate imports squad_ft.inference, which imports squad_ft.modeling
    assert "squad_ft.modeling" not in project_imports("stages.evaluate")
    assert "squad_ft.inference" in project_imports("stages.evaluate")
    assert "squad_ft/modeling.py" in import_closure("stages.evaluate")


@pytest.mark.parametrize("module", ["squad_ft.inference", "squad_ft.predict", "stages.evaluate", "stages.package"])
def test_inference_needs_no_training_code(module):
    assert {"squad_ft/training.py", "squad_ft/memory.py"} & import_closure(module) == set()


def test_package_init_files_hold_no_code():
    for package in PACKAGES:
        body = ast.parse((ROOT / package / "__init__.py").read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body), package


def test_stage_scripts_hard_code_no_data_paths():
    """Paths live in dvc.yaml: a stage script names no file under data/, models/, metrics/ or dvclive/."""
    for script in (ROOT / "stages").glob("*.py"):
        assert not re.search(r"""["'](data|models|metrics|dvclive)/""", script.read_text()), script.name


def _paths(entries: list) -> set[str]:
    """The paths of a stage's `deps`, `outs` or `metrics` list (an entry may carry options)."""
    return {entry if isinstance(entry, str) else next(iter(entry)) for entry in entries}


def test_every_metrics_file_travels_with_its_details(dvc_yaml):
    """A stage declaring NAME.json as metrics writes NAME.details.json beside it (write_record), and a
    stage reading NAME.json reads both (read_record), so both are outputs, and both are deps."""
    checked = 0
    for name, stage in dvc_yaml["stages"].items():
        body = stage.get("do", stage)
        outs, deps = _paths(body.get("outs", [])), _paths(body.get("deps", []))
        for metrics in _paths(body.get("metrics", [])):
            assert metrics.replace(".json", ".details.json") in outs, (name, metrics)
            checked += 1
        for dep in deps:
            if dep.startswith("metrics/") and not dep.endswith(".details.json"):
                assert dep.replace(".json", ".details.json") in deps, (name, dep)
                checked += 1
    assert checked == 4 + 16 + 3  # train's 2, evaluate, compare; report's 3 + 3 + 6 + 4 records; package's 3


def test_a_record_is_its_metrics_and_its_details(tmp_path):
    from squad_ft.stage import details_path, read_record, write_record

    write_record(tmp_path / "lora.json", {"f1": 50.0}, {"device": "cpu", "questions": 8})
    assert details_path(tmp_path / "lora.json") == tmp_path / "lora.details.json"
    assert json.loads((tmp_path / "lora.json").read_text()) == {"f1": 50.0}
    assert json.loads((tmp_path / "lora.details.json").read_text()) == {"device": "cpu", "questions": 8}
    assert read_record(tmp_path / "lora.json") == {"f1": 50.0, "device": "cpu", "questions": 8}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lora.details.json", "lora.json"]  # no temporary left
