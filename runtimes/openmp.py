"""The OpenMP wait policy: passive for torch's training threads, spinning for an inference library's own OpenMP.

OpenMP reads ``OMP_WAIT_POLICY`` once, when its library loads. Importing ``edgeseg`` defaults it
to ``PASSIVE`` (``default_passive_wait``), so that torch's threads sleep while they wait and
training next to another CPU-bound process slows in proportion to the CPU it loses. An inference
library that brings its own OpenMP runtime (ncnn) runs many short parallel regions per image and
is much slower with sleeping threads (measured: yolo11n-seg at 320 on 2 threads, 27.7 ms passive
against 8.1 ms spinning), so it loads inside ``spinning_wait``. A policy the user set is never
changed.
"""

import os
from contextlib import contextmanager

POLICY = "OMP_WAIT_POLICY"
DEFAULT_MARK = "EDGESEG_DEFAULT_OMP_WAIT_POLICY"  # set when the policy is edgeseg's default, not the user's


def default_passive_wait() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless it is already set, marking it as edgeseg's default."""
    if POLICY not in os.environ:
        os.environ[POLICY] = "PASSIVE"
        os.environ[DEFAULT_MARK] = "PASSIVE"


@contextmanager
def spinning_wait():
    """While the block runs (load an OpenMP library there), edgeseg's default policy is lifted; a user's stays."""
    ours = POLICY in os.environ and os.environ[POLICY] == os.environ.get(DEFAULT_MARK)
    if ours:
        del os.environ[POLICY]
    try:
        yield
    finally:
        if ours:
            os.environ[POLICY] = os.environ[DEFAULT_MARK]
