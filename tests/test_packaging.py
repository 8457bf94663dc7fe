"""The package's files: a license, a changelog, the typing marker, and the version written in one place."""

from __future__ import annotations

import re
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

import trilogy

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_read_from_the_package():
    project = read_configuration(ROOT / "pyproject.toml")["project"]
    assert project["version"] == trilogy.__version__
    assert not re.search(r'^version\s*=\s*"', (ROOT / "pyproject.toml").read_text(), re.M)  # not written twice


def test_license_changelog_and_typing_marker_exist():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert f"## {trilogy.__version__}" in (ROOT / "CHANGELOG.md").read_text()
    assert (ROOT / "src" / "trilogy" / "py.typed").is_file()
