"""What the project installs: top-level packages whose names cannot clash with other packages (issue 13)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_top_level_packages_are_named_after_the_project():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(path.parent.name for path in ROOT.glob("*/__init__.py"))
    assert include == ["flopsbench*", "flopsbench_zoo*"]
    assert packages == ["flopsbench", "flopsbench_zoo", "tests"]  # tests/ is not installed (include)
