"""The product does not need its tests: the wheel leaves them out, the CLI never imports them."""

import subprocess
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

from blade_pipeline import cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_package_and_not_its_tests():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = find_packages(str(ROOT), **config["tool"]["setuptools"]["packages"]["find"])
    assert "blade_pipeline" in found and "blade_pipeline.bench" in found
    assert not [name for name in found if name.startswith("blade_pipeline_tests")]


def test_the_cli_with_every_subcommand_imports_no_test_module(tmp_path):
    probe = ("import sys; from blade_pipeline import cli; cli.build_parser(); "
             "print(sorted(m for m in sys.modules if m.startswith('blade_pipeline_tests')))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]"


def test_dev_commands_without_the_devservices_extra_say_what_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert cli.main(["mock-catalog"]) == 2
    err = capsys.readouterr().err
    assert "blade_pipeline[devservices]" in err and "missing: uvicorn" in err


def test_the_demo_finds_the_checkouts_workspace_and_instance_config():
    from blade_pipeline.cli.demo import REPO_ROOT

    assert REPO_ROOT == ROOT
    assert (REPO_ROOT / "workspace.yaml").is_file() and (REPO_ROOT / "dagster.yaml").is_file()
