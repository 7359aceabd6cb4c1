"""Repo-wide pytest setup: the repo root is importable, and torch stays on one thread.

Two cores are shared with the rest of the suite; one thread is several times faster
than two under that load (measured: 0.13 s against 2.3 s for the same tiny sampling).
"""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a test requirement
    pass
