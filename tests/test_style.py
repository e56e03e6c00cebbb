"""The code's format and lint rules hold: ruff (pyproject.toml's [tool.ruff]) for Python and
clang-format (.clang-format) for the native code, at the versions the test extra pins."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> None:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is not installed: pip install -e '.[test]' brings it")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command[:3])} ...:\n{result.stdout}{result.stderr}"


def test_python_passes_ruff_lint():
    _run("ruff", "check", ".")


def test_python_is_ruff_formatted():
    _run("ruff", "format", "--check", ".")


def test_native_code_is_clang_formatted():
    sources = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "csrc").rglob("*"))
        if p.suffix in (".cpp", ".h", ".cu", ".cuh")
    ]
    assert len(sources) > 20
    _run("clang-format", "--dry-run", "--Werror", *sources)
