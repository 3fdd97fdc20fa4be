"""Imports point down: cli/bench -> defs/ops -> steps -> sources/storage -> config.

Every import of every module counts, the ones inside functions included. The steps are plain
functions (no Dagster); the pipeline never imports the dev services, and the dev services
import nothing of the pipeline but the Databricks SQL dialect they share with it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import blade_pipeline

PACKAGE = Path(blade_pipeline.__file__).parent
#: a package's layer; a module may import its own layer and the ones below
LAYERS = {"databricks_sql": 0, "config": 0, "sources": 1, "storage": 1, "steps": 2,
          "defs": 3, "ops": 3, "push": 3, "run_launcher": 3, "logs": 3, "celery_worker": 3,
          "definitions": 4, "cli": 5, "bench": 5}
PIPELINE = {name for name, layer in LAYERS.items() if layer <= 4}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or
                  p.parent != PACKAGE)


def _concern(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _imports(path: Path) -> set[str]:
    """Every module name the file imports (``from x import y`` counts x and x.y)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _ours(name: str) -> str | None:
    """The concern of one of our modules (``blade_pipeline.steps.items`` -> ``steps``)."""
    parts = name.split(".")
    if parts[0] != "blade_pipeline" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS or parts[1] == "devservices" else None


def test_every_module_has_a_concern():
    unknown = {_concern(p) for p in _modules()} - set(LAYERS) - {"devservices"}
    assert unknown == set(), f"add to LAYERS and docs/development.md's code map: {unknown}"


@pytest.mark.parametrize("path", [p for p in _modules() if _concern(p) in LAYERS],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    concern = _concern(path)
    upward = sorted(name for name in _imports(path)
                    if (other := _ours(name)) in LAYERS and LAYERS[other] > LAYERS[concern])
    assert upward == [], f"{concern} (layer {LAYERS[concern]}) imports from above: {upward}"
    if concern in PIPELINE:
        dev = sorted(name for name in _imports(path) if _ours(name) == "devservices")
        assert dev == [], f"the pipeline imports the dev services: {dev}"


@pytest.mark.parametrize("path", [p for p in _modules() if _concern(p) == "steps"],
                         ids=lambda p: p.name)
def test_steps_do_not_import_dagster(path: Path):
    dagster = sorted(n for n in _imports(path) if n.split(".")[0].startswith("dagster"))
    assert dagster == [], f"a step imports Dagster: {dagster}"


@pytest.mark.parametrize("path", [p for p in _modules() if _concern(p) == "devservices"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_devservices_import_nothing_of_the_pipeline_but_the_dialect(path: Path):
    pipeline = sorted(n for n in _imports(path)
                      if (other := _ours(n)) is not None and other not in
                      ("devservices", "databricks_sql"))
    assert pipeline == [], f"a dev service imports the pipeline: {pipeline}"


@pytest.mark.parametrize(("old", "name", "new"), [
    ("blade_pipeline.run_launcher", "LocalProcessRunLauncher", "blade_pipeline.ops.run_launcher"),
    ("blade_pipeline.logs", "JsonLinesHandler", "blade_pipeline.ops.logs"),
    ("blade_pipeline.celery_worker", "app", "blade_pipeline.ops.celery_app")])
def test_the_paths_a_deployed_instance_names_still_work(old: str, name: str, new: str):
    """dagster.yaml (run launcher, log handler) and the Celery worker command name these."""
    import importlib

    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new),
                                                                  name)
