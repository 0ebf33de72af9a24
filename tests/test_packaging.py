"""environment.yml and pyproject.toml list the same Python dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def names(requirements):
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {r for r in pip_section if not r.startswith("-e")}
    assert listed == wanted  # same names and the same version bounds
    assert "python=3.11" in env["dependencies"]


def test_runtime_state_is_ignored_but_shipped_data_is_not():
    ignored = (ROOT / ".gitignore").read_text()
    assert "data/jobs/" in ignored and "data/scanbatch.duckdb" in ignored
    assert "data/\n" not in ignored
