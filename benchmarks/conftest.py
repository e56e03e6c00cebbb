"""pytest options of the micro-benchmarks: --bench-sizes full (the paper's sizes up to large ones),
paper, medium, large or tiny (small shapes, to check that the benchmarks run), --bench-device and
--bench-dtype."""

import torch

from . import cases


def pytest_addoption(parser):
    parser.addoption("--bench-sizes", default="full", choices=["full", *cases.SIZE_NAMES, "tiny"])
    parser.addoption("--bench-device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.addoption("--bench-dtype", default="float32", choices=["float32", "bfloat16"])
