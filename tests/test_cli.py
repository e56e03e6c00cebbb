"""`python -m aevb_fast info`: the versions and backends a bug report needs."""

import subprocess
import sys

import torch

import aevb_fast
from aevb_fast.ops import backends


def test_info():
    out = subprocess.run([sys.executable, "-m", "aevb_fast", "info"], check=True, capture_output=True, text=True).stdout
    assert f"aevb_fast   {aevb_fast.__version__}" in out
    assert f"torch       {torch.__version__}" in out
    assert "triton      " in out
    assert "extension   " in out
    auto = backends.resolve("auto", torch.device("cpu"))
    assert f"backends for cpu tensors (auto picks {auto}):" in out
    for name in backends.KERNEL_BACKENDS:
        reason = backends.unavailable_reason(name, "cpu")
        assert f"  {name:<7} {'usable' if reason is None else 'unusable: ' + reason}" in out


def test_cli_needs_a_command():
    result = subprocess.run([sys.executable, "-m", "aevb_fast"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "the following arguments are required: command" in result.stderr
