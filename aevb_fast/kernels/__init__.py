"""Kernels below the op layer: Triton (aevb_fast.kernels.triton, imported on first use); the C++
CPU and CUDA kernels live in csrc/ and are bound as aevb_fast._C."""
