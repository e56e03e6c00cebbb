"""The row tiling every kernel here shares: a program owns BLOCK_ROWS rows of a row-major [rows, width]
tensor and walks them in BLOCK_COLS-wide tiles. Offsets are int64, so tensors past 2^31 elements
are indexed right."""

import triton
import triton.language as tl


@triton.jit
def row_block(block, n_rows, BLOCK_ROWS: tl.constexpr):
    """The row indices of row block `block` [BLOCK_ROWS] (int64) and which of them exist."""
    rows = block.to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    return rows, rows < n_rows


@triton.jit
def tile(rows, row_ok, start, width, BLOCK_COLS: tl.constexpr):
    """The tile of columns [start, start + BLOCK_COLS) of those rows: its column indices, its mask
    [BLOCK_ROWS, BLOCK_COLS] and its element offsets."""
    cols = start + tl.arange(0, BLOCK_COLS)
    mask = row_ok[:, None] & (cols < width)[None, :]
    return cols, mask, rows[:, None] * width + cols[None, :]


@triton.jit
def target_tile(x_ptr, rows, Nx, cols, width, mask):
    """The targets beside a tile of values: row n of the values reads row n % Nx of x [Nx, width],
    so the L samples of one batch share its targets without a copy."""
    return tl.load(x_ptr + (rows % Nx)[:, None] * width + cols[None, :], mask=mask, other=0)
