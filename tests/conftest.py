"""Suite-wide settings: one torch thread per xdist worker (two workers on two cores would
otherwise oversubscribe the CPU and run many times slower)."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
