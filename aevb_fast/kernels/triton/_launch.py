"""What every Triton launcher shares: the block-size table and the device the kernel runs on."""

import contextlib

import torch
import triton
from triton.runtime.interpreter import InterpretedFunction

# Elements per program tile. On a GPU 4096 float32 (16 KiB per operand) keeps 8 warps at 16
# elements a thread, enough loads in flight to stream at bandwidth without spilling registers.
# The interpreter runs each program as a handful of numpy calls, so there the fewer programs the
# better.
GPU_TILE = 4096
INTERPRETER_TILE = 1 << 16


def row_blocks(kernel, rows: int, cols: int) -> dict:
    """Launch parameters for a kernel that walks `rows` rows of `cols` elements in tiles of
    BLOCK_ROWS x BLOCK_COLS (powers of two): a whole row per tile when it fits, else one row per
    program looping over column blocks; the rest of the tile is filled with rows."""
    tile = INTERPRETER_TILE if isinstance(kernel, InterpretedFunction) else GPU_TILE
    block_cols = min(triton.next_power_of_2(max(cols, 1)), tile)
    block_rows = min(triton.next_power_of_2(max(rows, 1)), tile // block_cols)
    num_warps = max(1, min(8, block_rows * block_cols // 512))
    return dict(BLOCK_ROWS=block_rows, BLOCK_COLS=block_cols, num_warps=num_warps)


def on_device(t: torch.Tensor):
    """Triton launches on the current CUDA device: make it the tensor's."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def launch_rows(kernel, rows: int, cols: int, like: torch.Tensor, *args, **constexprs) -> None:
    """Runs kernel(*args, **constexprs) over the row blocks of a [rows, cols] problem on like's
    device (nothing to do for no rows)."""
    if rows == 0:
        return
    blocks = row_blocks(kernel, rows, cols)
    with on_device(like):
        kernel[(triton.cdiv(rows, blocks["BLOCK_ROWS"]),)](*args, **constexprs, **blocks)
