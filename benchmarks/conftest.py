"""pytest options of the micro-benchmarks: --bench-sizes full (the paper's sizes up to large ones) or
tiny (small shapes, to check that the benchmarks run), and --bench-device."""

import torch


def pytest_addoption(parser):
    parser.addoption("--bench-sizes", default="full", choices=["full", "tiny"])
    parser.addoption("--bench-device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.addoption("--bench-dtype", default="float32", choices=["float32", "bfloat16"])
