"""Engine choice: one model file, several engines that can run it (an ``.onnx`` on ONNX Runtime or OpenVINO).

``load_with_engine(path, device, engine)`` opens the file on the named engine, or with
``engine="auto"`` on the fastest installed engine whose outputs match ONNX Runtime's on a probe
batch, and logs which it chose and why. The outputs must match within ``MAX_DIFF`` (relative to
the largest reference output): an engine that computes an fp32 file in lower precision is not
"the same model, faster".
"""

import logging
import statistics
import time
from pathlib import Path

import numpy as np

from edgeseg.runtimes.backends import engine_loader, engines_for, multi_engine_suffixes
from edgeseg.runtimes.backends.base import Backend
from edgeseg.runtimes.errors import EdgesegError

LOGGER = logging.getLogger("edgeseg")

MAX_DIFF = 1e-3  # largest |output difference| / largest |reference output| for "the same outputs"
TIMED_CALLS = 5  # timed calls per engine (after one warm-up call)


def engine_names(path: str | Path) -> tuple[str, ...]:
    """The engines that can run ``path``, by suffix, the format's own first (``engines_for``; empty for a format with one engine)."""
    return engines_for(Path(path).suffix)


def open_engine(path: str, device: str | None, engine: str, precision: str | None = None) -> Backend:
    """``path`` on one named engine (the registry's loader of that engine), computing in ``precision`` (None: the file's).

    Raises:
        EdgesegError: the engine's package is missing (naming the extra), it does not offer
            ``precision``, or it cannot load the file.
    """
    return engine_loader(engine)(path, device, precision)


def probe_batch(backend: Backend) -> np.ndarray:
    """A fixed (B, 3, H, W) float32 batch in [0, 1] at the file's input size (B = its static batch, else 1)."""
    h, w = backend.meta.imgsz
    return np.random.default_rng(0).uniform(0, 1, (max(backend.meta.batch, 1), 3, h, w)).astype(np.float32)


def output_diff(reference: tuple[np.ndarray, ...], outputs: tuple[np.ndarray, ...]) -> float:
    """max |outputs - reference| / max |reference| over preds and protos (inf for a shape mismatch)."""
    worst = 0.0
    for ref, out in zip(reference, outputs):
        if ref.shape != out.shape:
            return float("inf")
        worst = max(worst, float(np.abs(out - ref).max()) / max(float(np.abs(ref).max()), 1e-12))
    return worst


def median_ms(backend: Backend, batch: np.ndarray) -> float:
    """Median wall time of ``backend.infer(batch)`` in ms over TIMED_CALLS calls after one warm-up."""
    backend.infer(batch)
    times = []
    for _ in range(TIMED_CALLS):
        start = time.perf_counter()
        backend.infer(batch)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def fastest_engine(path: str, device: str | None) -> Backend:
    """The fastest installed engine for ``path`` whose outputs match the reference engine's.

    Engines that are not installed, cannot load the file or differ by more than MAX_DIFF are
    passed over, each with a log line saying why.
    """
    names = engine_names(path)
    reference = open_engine(path, device, names[0])
    batch = probe_batch(reference)
    expected = reference.infer(batch)
    timed = {names[0]: (reference, median_ms(reference, batch), 0.0)}
    for name in names[1:]:
        try:
            backend = open_engine(path, device, name)
        except EdgesegError as exc:
            LOGGER.info(f"engine auto: {name} passed over ({exc})")
            continue
        diff = output_diff(expected, backend.infer(batch))
        if diff > MAX_DIFF:
            LOGGER.info(f"engine auto: {name} passed over (outputs differ from {names[0]}'s by {diff:.2g} > {MAX_DIFF:g})")
            continue
        timed[name] = (backend, median_ms(backend, batch), diff)
    best = min(timed, key=lambda name: timed[name][1])
    summary = ", ".join(f"{name} {ms:.1f} ms" for name, (_, ms, _) in timed.items())
    LOGGER.info(f"{path}: engine auto chose {best} ({summary} per call; outputs within {timed[best][2]:.1g} of {names[0]}'s)")
    return timed[best][0]


def load_with_engine(path: str | Path, device: str | None, engine: str, precision: str | None = None) -> Backend:
    """Open ``path`` on ``engine``: one of ``engine_names(path)``, or ``auto`` (``fastest_engine``), computing in ``precision``.

    Raises:
        EdgesegError: a format with a single engine, an unknown engine name, ``auto`` with a
            precision (it picks engines whose outputs equal the fp32 reference's), or what loading raises.
    """
    names = engine_names(path)
    if not names:
        raise EdgesegError(f"{path}: engine choice applies to {', '.join(multi_engine_suffixes())} files; this format runs on its own engine")
    if engine not in (*names, "auto"):
        raise EdgesegError(f"unknown engine {engine!r} for {Path(path).suffix} files (choose from auto, {', '.join(names)})")
    if engine == "auto" and precision is not None:
        raise EdgesegError(f"engine auto picks among engines with ONNX Runtime's fp32 outputs; precision {precision!r} needs a named engine")
    if not Path(path).is_file():
        raise EdgesegError(f"{path}: model not found")
    return fastest_engine(str(path), device) if engine == "auto" else open_engine(str(path), device, engine, precision)
