"""What only the Triton kernels have: the block table, the sm_90 compile of every launcher variant
(no GPU needed) and the interpreter rule. Their values are checked against the reference in
test_ops.py and against the C++ CPU kernels in test_backends_agree.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import aevb_fast
from aevb_fast.ops import backends

pytestmark = pytest.mark.skipif(
    "triton" not in backends.usable("cpu") + backends.usable("cuda"), reason="needs the Triton kernels"
)


def test_block_table():
    from aevb_fast.kernels.triton._launch import row_blocks

    compiled = object()  # anything but an interpreted kernel gets the GPU table
    assert row_blocks(compiled, 4096, 12288) == dict(BLOCK_ROWS=1, BLOCK_COLS=4096, num_warps=8)
    assert row_blocks(compiled, 65536, 256) == dict(BLOCK_ROWS=16, BLOCK_COLS=256, num_warps=8)
    assert row_blocks(compiled, 100, 784) == dict(BLOCK_ROWS=4, BLOCK_COLS=1024, num_warps=8)
    assert row_blocks(compiled, 100, 20) == dict(BLOCK_ROWS=128, BLOCK_COLS=32, num_warps=8)
    assert row_blocks(compiled, 3, 5) == dict(BLOCK_ROWS=4, BLOCK_COLS=8, num_warps=1)
    assert row_blocks(compiled, 1, 0) == dict(BLOCK_ROWS=1, BLOCK_COLS=1, num_warps=1)


def test_kernels_compile_for_the_gpu():
    # Every variant the launchers ask for, lowered to an sm_90 binary (no GPU needed): the
    # interpreter runs Python and would not catch what only the compiler checks.
    script = Path(__file__).with_name("compile_triton_kernels.py")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    run = subprocess.run([sys.executable, str(script), "sm_90"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert run.stdout.count("sm_90 ") >= 40


def test_triton_on_cpu_tensors_needs_the_interpreter(monkeypatch):
    from aevb_fast.kernels import triton as kernels

    monkeypatch.setattr(kernels, "interpreted", False)
    monkeypatch.setattr(backends, "_USABLE", {})
    monkeypatch.setattr(backends, "_RESOLVED", {})
    with pytest.raises(
        RuntimeError,
        match=r"backend='triton' cannot serve cpu tensors here: the Triton kernels run "
        r"on CPU tensors only under Triton's interpreter: set TRITON_INTERPRET=1",
    ):
        aevb_fast.gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3), backend="triton")
