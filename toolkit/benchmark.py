"""``edgeseg bench``: every artifact of one checkpoint side by side, to choose the one to ship.

For the PyTorch checkpoint (always the first row) and each target (``target:precision``, or an
existing artifact path) one row holds:

* format, precision, size on disk (MB), export wall time (s);
* box and mask mAP50-95 / mAP50 from ``Runtime.val`` (exactly what ``edgeseg val`` prints), and
  the mAP50-95 change against the PyTorch row (``d_box_map``, ``d_mask_map``);
* output drift against the PyTorch model from ``edgeseg.targets.verify.verify`` on the first val
  images: max abs output difference (0–1 scale), detection agreement, mean mask IoU;
* speed, measured in a fresh process per artifact (``measure_speed``) so that the peak RSS is
  that artifact's alone: single-image ``Runtime.predict`` latency p50/p95 (ms, after warm-up)
  with the median pre/infer/post split, and throughput (img/s) at the best batch (1/2/4/8 for a
  dynamic-batch artifact, its own batch for a static one).

A target whose optional packages or hardware are missing gives a ``skipped: <why>`` row and the
bench goes on. ``bench.csv``, ``bench.json`` and ``bench.png`` (mask mAP50-95 vs p50 latency,
marker area ∝ size) go to ``<project>/<name>`` (``name2``, … when it exists).

``python -m edgeseg.benchmark <job JSON>`` is the speed worker; it imports only
``edgeseg.runtimes`` (so torch only for a ``.pt``).
"""

import csv
import io
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgeseg.runtimes.errors import EdgesegError

LOGGER = logging.getLogger("edgeseg")

BATCHES = (1, 2, 4, 8)  # batch sizes tried for the throughput of a dynamic-batch artifact
WARMUP = 3  # untimed predict calls before timing (and one per batch size before its throughput)
SPEED_IMAGES = 8  # distinct val images the speed worker cycles through
THROUGHPUT_IMAGES = 2 * max(BATCHES)  # images per throughput measurement, for every batch size
REFERENCE = "pytorch"

# Every row has these keys, in this order (the CSV header); None where a value does not apply.
COLUMNS = [
    "format", "precision", "status", "path", "imgsz", "size_mb", "export_s",
    "box_map", "box_map50", "mask_map", "mask_map50", "d_box_map", "d_mask_map",
    "max_abs_diff", "agreement", "mask_iou",
    "p50_ms", "p95_ms", "pre_ms", "infer_ms", "post_ms", "throughput", "best_batch", "peak_rss_mb",
]  # fmt: skip


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux: ``VmHWM`` of /proc/self/status (``ru_maxrss`` survives ``exec``, so a process started
    by a torch-loaded parent would report the parent's peak); ``ru_maxrss`` elsewhere.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    per_mb = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_mb


def measure_speed(path: str, image_files: list[str], imgsz: int | None, device: str | None, runs: int) -> dict:
    """Latency, throughput and peak RSS of one artifact, in the calling process.

    Args:
        path: the artifact (any format ``edgeseg.runtimes.load`` opens).
        image_files: images to predict on, cycled (read into memory first).
        imgsz: square input size (None: the artifact's).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``N``; None: the first CUDA GPU the backend can use, else the CPU.
        runs: timed single-image ``predict`` calls, after WARMUP untimed ones.

    Returns:
        ``p50_ms``, ``p95_ms``: per-image pre + infer + post time (ms) as ``Results.speed``
        reports it; ``pre_ms``, ``infer_ms``, ``post_ms``: medians of each stage (ms);
        ``throughput``: images/s at ``best_batch`` (wall time of ``predict`` over
        THROUGHPUT_IMAGES images); ``peak_rss_mb``: this process's peak RSS (MB).
    """
    from edgeseg.runtimes import load
    from edgeseg.runtimes.io.images import read_image

    runtime = load(path, device)
    images = [read_image(f) for f in image_files]
    stages = {"preprocess": [], "inference": [], "postprocess": []}
    for i in range(WARMUP + runs):
        result = next(runtime.predict(images[i % len(images)], imgsz=imgsz))
        if i >= WARMUP:
            for key, values in stages.items():
                values.append(result.speed[key])
    total = np.sum([stages[key] for key in stages], axis=0)
    frames = [images[i % len(images)] for i in range(THROUGHPUT_IMAGES)]
    throughput = {}
    for batch in BATCHES if runtime.backend.dynamic_batch else (runtime.meta.batch,):
        runtime.predict(frames[:batch], imgsz=imgsz, batch=batch, stream=False)
        start = time.perf_counter()
        runtime.predict(frames, imgsz=imgsz, batch=batch, stream=False)
        throughput[batch] = len(frames) / (time.perf_counter() - start)
    best = max(throughput, key=throughput.get)
    return {
        "p50_ms": float(np.percentile(total, 50)),
        "p95_ms": float(np.percentile(total, 95)),
        "pre_ms": float(np.median(stages["preprocess"])),
        "infer_ms": float(np.median(stages["inference"])),
        "post_ms": float(np.median(stages["postprocess"])),
        "throughput": throughput[best],
        "best_batch": best,
        "peak_rss_mb": peak_rss_mb(),
    }


def _speed_in_fresh_process(path: Path, image_files: list[str], imgsz: int | None, device: str | None, runs: int) -> dict:
    """``measure_speed`` in a new interpreter (``python -m edgeseg.benchmark``), so RSS is per artifact.

    Raises:
        EdgesegError: the worker failed; its last stderr line is in the message.
    """
    job = {"path": str(path), "image_files": image_files, "imgsz": imgsz, "device": device, "runs": runs}
    proc = subprocess.run([sys.executable, "-m", "edgeseg.benchmark", json.dumps(job)], capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgesegError(f"speed measurement of {path} failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _empty_row(fmt: str, precision: str, status: str, path=None) -> dict:
    """A row with every COLUMNS key, the values not given None."""
    row = dict.fromkeys(COLUMNS)
    row.update(format=fmt, precision=precision, status=status, path=None if path is None else str(path))
    return row


def _candidates(targets, preset) -> list[tuple[str, str] | Path]:
    """What to bench after the PyTorch row: ``(target, precision)`` pairs and existing artifact paths.

    ``targets``: a list of ``target[:precision]`` specs and artifact paths, or ``["all"]`` (every
    registered target at every precision it writes); default: the preset's candidates, else onnx fp32.
    An explicit target that is not registered, or a precision it does not write, is an error; a
    preset candidate that is not available becomes a skipped row later.

    Raises:
        EdgesegError: an unknown target or precision in ``targets``.
    """
    from edgeseg.targets.presets import parse_spec
    from edgeseg.targets.registry import registered_targets, target_entry

    if targets is None:
        return list(preset.candidates) if preset is not None else [("onnx", "fp32")]
    if list(targets) == ["all"]:
        return [(entry.name, p) for entry in registered_targets() for p in entry.precisions]
    out = []
    for spec in targets:
        if Path(spec).exists():
            out.append(Path(spec))
            continue
        target, precision = parse_spec(spec)
        target_entry(target, precision)
        out.append((target, precision))
    return out


def _target_of(path: Path, fallback: str) -> str:
    """The registered target whose artifact suffix ``path`` ends with, else ``fallback``."""
    from edgeseg.targets.registry import registered_targets

    return next((entry.name for entry in registered_targets() if path.name.endswith(entry.suffix)), fallback)


class _Bench:
    """The state shared by the rows of one bench: reference model, data, images, options."""

    def __init__(self, model: Path, data: str, imgsz: int | None, device: str | None, runs: int, dynamic: bool, calib: int):
        from edgeseg.runtimes import load
        from edgeseg.runtimes.io.sources import split_images
        from edgeseg.targets.verify import MAX_IMAGES

        self.model, self.data, self.device, self.runs, self.dynamic, self.calib = model, data, device, runs, dynamic, calib
        self.save_dir: Path | None = None  # the run folder, created once the inputs are known to be good
        self.reference = load(model, device)
        self.imgsz = imgsz or self.reference.meta.imgsz[0]
        found = split_images(data, "val", max(MAX_IMAGES, SPEED_IMAGES))
        self.verify_images = found.images[:MAX_IMAGES]
        self.speed_files = found.paths[:SPEED_IMAGES]
        self.reference_row = None

    def reference_bench(self) -> dict:
        """The PyTorch row: mAP and speed of the checkpoint itself (ΔmAP 0, no drift)."""
        from edgeseg.targets.common import artifact_size

        row = _empty_row(REFERENCE, "fp32", "ok", self.model)
        row.update(imgsz=self.imgsz, size_mb=artifact_size(self.model) / 1e6)
        row.update(self._accuracy(self.reference, self.imgsz))
        row.update(d_box_map=0.0, d_mask_map=0.0)
        row.update(_speed_in_fresh_process(self.model, self.speed_files, self.imgsz, self.device, self.runs))
        self.reference_row = row
        return row

    def artifact_bench(self, candidate: tuple[str, str] | Path) -> dict:
        """One artifact's row; a skipped or failed row when it cannot be built, loaded or run here."""
        given = isinstance(candidate, Path)
        fmt, precision = (candidate.name, "") if given else candidate
        try:
            return self._artifact_row(candidate)
        except EdgesegError as exc:
            return _empty_row(fmt, precision, f"skipped: {exc}", candidate if given else None)
        except Exception as exc:  # a converter or engine crash costs one row, not the whole bench
            LOGGER.warning(f"{fmt} {precision}: failed", exc_info=True)
            return _empty_row(fmt, precision, f"failed: {type(exc).__name__}: {exc}", candidate if given else None)

    def _artifact_row(self, candidate: tuple[str, str] | Path) -> dict:
        """Export (unless given a path), validate, verify against PyTorch and time one artifact."""
        from edgeseg.runtimes import load
        from edgeseg.targets import export
        from edgeseg.targets.common import artifact_size
        from edgeseg.targets.verify import verify

        if isinstance(candidate, Path):
            path, export_s = candidate, None
        else:
            artifact = export(
                self.model, target=candidate[0], precision=candidate[1], imgsz=self.imgsz, dynamic=self.dynamic,
                data=self.data, calib=self.calib, verify=False, out=self.save_dir, device=self.device,
            )  # fmt: skip
            path, export_s = artifact.path, artifact.seconds
        runtime = load(path, self.device)
        fmt, precision = (_target_of(path, runtime.backend.name), runtime.meta.precision) if export_s is None else candidate
        fmt += " e2e" if runtime.meta.end2end else ""  # NMS in its graph
        row = _empty_row(fmt, precision, "ok", path)
        h, w = runtime.input_shape()
        row.update(imgsz=h if h == w else f"{h}x{w}", size_mb=artifact_size(path) / 1e6, export_s=export_s)
        row.update(self._accuracy(runtime, None))
        row.update(d_box_map=row["box_map"] - self.reference_row["box_map"], d_mask_map=row["mask_map"] - self.reference_row["mask_map"])
        report = verify(self.reference, runtime, self.verify_images, precision)
        diff = report["max_abs_diff"]
        row.update(max_abs_diff=max(diff["preds"], diff["protos"]), agreement=report["agreement"], mask_iou=report["mask_iou"]["mean"])
        del runtime
        row.update(_speed_in_fresh_process(path, self.speed_files, None, self.device, self.runs))
        return row

    def _accuracy(self, runtime, imgsz: int | None) -> dict:
        """Box and mask mAP50-95 / mAP50 of ``runtime.val`` on the bench data (``edgeseg val``'s defaults)."""
        metrics = runtime.val(self.data, imgsz=imgsz, progress=False)
        return {
            "box_map": metrics.box.map,
            "box_map50": metrics.box.map50,
            "mask_map": metrics.seg.map,
            "mask_map50": metrics.seg.map50,
        }


def bench(
    model,
    data: str,
    targets=None,
    preset: str | None = None,
    imgsz: int | None = None,
    dynamic: bool = False,
    runs: int = 30,
    device: str | None = None,
    calib: int = 300,
    project: str = "runs/bench",
    name: str = "bench",
    exist_ok: bool = False,
) -> list[dict]:
    """Export a checkpoint to several targets and compare size, accuracy, drift and speed.

    Args:
        model: an edgeseg ``.pt`` checkpoint path.
        data: a data YAML; its val split gives the mAPs, the drift images and the speed images.
        targets: ``target[:precision]`` specs (``onnx``, ``openvino:int8`` …) and existing artifact
            paths, or ``["all"]`` (every registered target at every precision it writes);
            default: the preset's candidates, else ``onnx``.
        preset: a device preset (``edgeseg.targets.presets``: jetson, pi, mac, intel, cpu); sets
            the candidates and the input size.
        imgsz: square export and PyTorch input size in pixels (default: the preset's, else the model's).
        dynamic: export with a dynamic batch (throughput then tries batches 1/2/4/8).
        runs: timed single-image predict calls per artifact.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``N``; None: the first CUDA GPU the checkpoint's and
            each artifact's backend can use, else the CPU.
        calib: calibration images for the int8 rows (from the data YAML's train split, as in export).
        project, name, exist_ok: results go to ``project/name`` (``name2`` … unless ``exist_ok``).

    Returns:
        One dict per row (keys: COLUMNS), the PyTorch row first: mAPs are fractions in [0, 1],
        sizes in MB, times in s (export) or ms (latency), throughput in images/s, RSS in MB.

    Raises:
        EdgesegError: a bad model, data YAML, preset or target spec (a target that cannot be
            built or run here is a skipped row instead).
    """
    from edgeseg.runtimes.io.paths import increment_path
    from edgeseg.targets.common import missing_extra
    from edgeseg.targets.presets import preset as find_preset

    start = time.perf_counter()
    model = Path(model)
    if model.suffix.lower() != ".pt" or not model.is_file():
        raise EdgesegError(f"{model}: bench needs an existing edgeseg .pt checkpoint")
    chosen = find_preset(preset) if preset else None
    candidates = _candidates(targets, chosen)
    with missing_extra("export"):
        session = _Bench(model, data, imgsz or (chosen.imgsz if chosen else None), device, runs, dynamic, calib)
    save_dir = session.save_dir = increment_path(Path(project) / name, exist_ok)
    rows = [session.reference_bench()]
    LOGGER.info(format_table(rows))
    for candidate in candidates:
        rows.append(session.artifact_bench(candidate))
        LOGGER.info(format_table(rows[-1:]).splitlines()[-1])
    summary = {
        "model": str(model),
        "data": str(data),
        "preset": preset,
        "imgsz": session.imgsz,
        "device": device,
        "runs": runs,
        "calib": calib,
        "seconds": time.perf_counter() - start,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        },
        "rows": rows,
    }
    save_results(rows, summary, save_dir)
    LOGGER.info(f"bench of {len(rows)} rows took {summary['seconds']:.0f} s; results saved to {save_dir}")
    return rows


def save_results(rows: list[dict], summary: dict, save_dir: Path) -> None:
    """Write ``bench.csv`` (COLUMNS), ``bench.json`` (``summary``) and ``bench.png`` into ``save_dir``."""
    from edgeseg.runtimes.io.files import atomic_write_text
    from edgeseg.targets.common import missing_extra

    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(save_dir / "bench.csv", text.getvalue())
    atomic_write_text(save_dir / "bench.json", json.dumps(summary, indent=2) + "\n")
    with missing_extra("train"):
        plot_bench(rows, save_dir / "bench.png")


def label(row: dict) -> str:
    """``"onnx fp16"``: a row's format and precision."""
    return f"{row['format']} {row['precision']}".strip()


def plot_bench(rows: list[dict], path: Path) -> Path:
    """Mask mAP50-95 against p50 latency (ms), one labelled point per measured row, marker area ∝ size (MB)."""
    from matplotlib.figure import Figure

    from edgeseg.plots import write_figure

    measured = [r for r in rows if r["status"] == "ok"]
    largest = max(r["size_mb"] for r in measured)
    xy = np.array([[r["p50_ms"], r["mask_map"]] for r in measured])
    near = np.maximum(np.ptp(xy, axis=0), 1e-9) * 0.08  # points closer than 8 % of the spread share a label stack
    fig = Figure(figsize=(7, 5), tight_layout=True)
    ax = fig.add_subplot()
    for i, row in enumerate(measured):
        stacked = int(np.all(np.abs(xy[:i] - xy[i]) < near, axis=1).sum())
        ax.scatter(*xy[i], s=600 * row["size_mb"] / largest + 20, alpha=0.6)
        ax.annotate(f"{label(row)}, {row['size_mb']:.1f} MB", xy[i], fontsize=8,
                    xytext=(8, 8 + 12 * stacked), textcoords="offset points")  # fmt: skip
    ax.margins(0.2)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("p50 latency per image (ms)")
    ax.set_ylabel("mask mAP50-95")
    ax.set_title("edgeseg bench (marker area ∝ file size)")
    ax.grid(alpha=0.3)
    return write_figure(path, fig, dpi=150)


def _cell(value, fmt: str) -> str:
    """``value`` formatted, or ``-`` for None."""
    return "-" if value is None else format(value, fmt)


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table; a skipped or failed row shows its status instead of numbers."""
    header = (
        f"{'format':<18}{'MB':>7}{'export s':>9}{'mAP(B)':>8}{'mAP50(B)':>9}{'mAP(M)':>8}{'mAP50(M)':>9}{'ΔmAP(M)':>8}"
        f"{'max|Δ|':>9}{'agree':>7}{'maskIoU':>8}{'p50 ms':>8}{'p95 ms':>8}{'pre/inf/post ms':>17}{'img/s':>7}{'@b':>3}{'RSS MB':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"{label(r):<18}{r['status']}")
            continue
        split = f"{r['pre_ms']:.1f}/{r['infer_ms']:.1f}/{r['post_ms']:.1f}"
        lines.append(
            f"{label(r):<18}{r['size_mb']:>7.1f}{_cell(r['export_s'], '.1f'):>9}{r['box_map']:>8.3f}{r['box_map50']:>9.3f}"
            f"{r['mask_map']:>8.3f}{r['mask_map50']:>9.3f}{r['d_mask_map']:>+8.3f}{_cell(r['max_abs_diff'], '.2e'):>9}"
            f"{_cell(r['agreement'], '.0%'):>7}{_cell(r['mask_iou'], '.3f'):>8}{r['p50_ms']:>8.1f}{r['p95_ms']:>8.1f}"
            f"{split:>17}{r['throughput']:>7.1f}{r['best_batch']:>3}{r['peak_rss_mb']:>7.0f}"
        )
    return "\n".join(lines)


def summary_lines(rows: list[dict]) -> list[str]:
    """A few lines under the table: the PyTorch reference's mAP50s, what ran, the largest mask-mAP drop, and what was skipped and why.

    ``rows``: ``bench``'s rows, the PyTorch reference first.
    """
    reference, others = rows[0], rows[1:]
    ran = [r for r in others if r["status"] == "ok"]
    lines = [
        f"{REFERENCE}: mask mAP50 {reference['mask_map50']:.3f}, box mAP50 {reference['box_map50']:.3f} "
        f"(mask mAP50-95 {reference['mask_map']:.3f}); {len(ran)} of {len(others)} artifacts measured"
    ]
    if ran:
        worst = min(ran, key=lambda r: r["d_mask_map"])
        fastest = min(ran, key=lambda r: r["p50_ms"])
        lines.append(
            f"largest mask mAP50-95 change: {label(worst)} {worst['d_mask_map']:+.3f}; "
            f"fastest: {label(fastest)} {fastest['p50_ms']:.1f} ms per image (p50)"
        )
    skipped: dict[str, list[str]] = {}
    for r in others:
        if r["status"] != "ok":
            skipped.setdefault(r["status"], []).append(label(r))
    lines += [f"not measured ({', '.join(labels)}): {status}" for status, labels in skipped.items()]
    return lines


if __name__ == "__main__":
    print(json.dumps(measure_speed(**json.loads(sys.argv[1]))))
