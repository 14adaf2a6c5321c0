"""Video throughput of the pipelined stream against the sequential one and the backend alone.

On the generated clip (``edgeseg data synth-clip``: 480 x 320, moving and occluding shapes) and
one ONNX export per --imgsz, side by side in one run, each mode in a fresh process that imports
only ``edgeseg.runtimes`` (never torch), as on a device:

* ``infer only``: ``Backend.infer`` on the clip's letterboxed frames, nothing else: the rate
  the backend alone allows (1 / median inference time);
* ``sequential``: ``Runtime.predict(video, pipeline=False)`` with every frame drawn and encoded
  into the annotated video (``ResultSaver``): decode → letterbox → infer → post-process → draw →
  encode, one step at a time;
* ``pipelined``: the same with ``pipeline=True`` (the default): decode + letterbox, inference
  and post-processing on their own threads, overlapping with the drawing and encoding.

End-to-end frames per second are frames / wall time of the whole loop, writing included; each
mode runs --rounds times, interleaved with the others, and the median counts. The
pipelined and sequential Results are compared frame by frame (boxes, scores, classes and masks,
bit for bit), and the pipelined stream's resident memory is sampled every 100 frames over a
longer clip (--memory-frames) to show it stays flat.

The model: --model (a trained checkpoint), or by default the train-free yolo11n-seg of
``predict_speed.py`` calibrated to the clip's frames (realistic detection counts).

    .venv/bin/python benchmarks/stream_speed.py
    .venv/bin/python benchmarks/stream_speed.py --imgsz 320 --frames 300 --memory-frames 0
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "stream_speed.json"
TARGET_RATIO = 0.85  # pipelined fps / (1 / raw inference time) the issue asks for
MODES = ("infer only", "sequential", "pipelined")


def rss_mb() -> float:
    """This process's resident memory now (MB), from /proc/self/statm (0 where unreadable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def digest(result) -> str:
    """A hash of one Results' boxes, scores, classes and masks (bit for bit)."""
    h = hashlib.sha256()
    for array in (result.boxes, result.scores, result.classes, np.packbits(result.masks)):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def worker(mode: str, artifact: str, video: str, out: str, warmup: int, check: bool) -> dict:
    """Time ``mode`` on ``video`` in this (fresh) process; imports only edgeseg.runtimes.

    With ``check``, the Results are then computed once more and hashed (``results_sha256``).
    """
    import cv2

    from edgeseg.runtimes import load
    from edgeseg.runtimes.io.save import ResultSaver
    from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor

    runtime = load(artifact)
    runtime.warmup()
    shape = runtime.input_shape()
    if mode == "infer only":
        capture = cv2.VideoCapture(video)
        tensors = []
        while (frame := capture.read())[0]:
            tensors.append(to_input_tensor([letterbox(frame[1], shape)[0]]))
        capture.release()
        for tensor in tensors[:warmup]:
            runtime.backend.infer(tensor)
        times = []
        for tensor in tensors:
            start = time.perf_counter()
            runtime.backend.infer(tensor)
            times.append(time.perf_counter() - start)
        median = float(np.median(times))
        return {"frames": len(tensors), "fps": 1 / median, "infer_ms": 1000 * median}
    pipeline = mode == "pipelined"
    for _ in zip(range(warmup), runtime.predict(video, pipeline=pipeline)):
        pass
    frames, detections, memory = 0, 0, []
    start = time.perf_counter()
    with ResultSaver(out, exist_ok=True) as saver:
        for result in runtime.predict(video, pipeline=pipeline):
            saver.add(result)
            frames += 1
            detections += len(result)
            if frames % 100 == 0:
                memory.append(round(rss_mb(), 1))
    seconds = time.perf_counter() - start
    hashes = [digest(r) for r in runtime.predict(video, pipeline=pipeline)] if check else []
    return {
        "frames": frames,
        "fps": frames / seconds,
        "detections_per_frame": detections / frames,
        "rss_mb_every_100_frames": memory,
        "video_bytes": sum(f.stat().st_size for f in Path(out).glob("*.mp4")),
        "results_sha256": hashlib.sha256("".join(hashes).encode()).hexdigest() if check else None,
    }


def run_worker(mode: str, artifact: Path, video: Path, out: Path, warmup: int, check: bool = False) -> dict:
    """``worker`` in a fresh interpreter; its JSON result."""
    command = [sys.executable, __file__, "--worker", mode, str(artifact), str(video), str(out), "--warmup", str(warmup)]
    command += ["--check"] if check else []
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def clip_shift(imgsz: int) -> float:
    """The extra logit offset (``calibrated_checkpoint``'s ``shift``) that gives ~10 detections on a median clip frame.

    Measured on the seed-0 clip: 10 at 320 and 11 at 640 (the clip has 10 objects); the clip's
    flat background needs a larger offset than the benchmark images of ``predict_speed.py``.
    """
    return -4.5 - 1.5 * float(np.log2(imgsz / 320))


def clip_frames(video: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of ``video`` as (H, W, 3) uint8 BGR arrays."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    frames = [capture.read()[1] for _ in range(n)]
    capture.release()
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a trained .pt checkpoint (default: a calibrated train-free yolo11n-seg)")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640], help="square export sizes")
    parser.add_argument("--frames", type=int, default=300, help="frames of the timed clip")
    parser.add_argument("--memory-frames", type=int, default=3000, help="frames of the memory run at the first imgsz (0: none)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames first")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument("--rounds", type=int, default=3, help="times each mode runs, interleaved; the median counts")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.warmup, args.check)))
        return

    from predict_speed import calibrated_checkpoint

    from edgeseg.data.synth_clip import write_clip
    from edgeseg.targets import export

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = write_clip(tmp / "clip", seed=0, n_frames=args.frames)
        for imgsz in args.imgsz:
            source = Path(args.model) if args.model else calibrated_checkpoint(imgsz, clip_frames(video, 16), tmp / f"calibrated-{imgsz}.pt", clip_shift(imgsz))
            artifact = export(source, target="onnx", imgsz=imgsz, out=tmp / f"model-{imgsz}.onnx")
            row = {"imgsz": imgsz}
            for round_ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every mode
                for mode in MODES:
                    run = run_worker(mode, artifact.path, video, tmp / f"out-{imgsz}-{mode}", args.warmup, check=round_ == 0)
                    print(f"{imgsz:>5} {mode:<11} round {round_ + 1}: {run['fps']:7.1f} fps", flush=True)
                    if round_ == 0:
                        row[mode] = {**run, "fps_rounds": []}
                    row[mode]["fps_rounds"].append(run["fps"])
            for mode in MODES:
                row[mode]["fps"] = float(np.median(row[mode]["fps_rounds"]))
            raw = row["infer only"]["fps"]
            row["pipelined_over_raw"] = row["pipelined"]["fps"] / raw
            row["sequential_over_raw"] = row["sequential"]["fps"] / raw
            row["identical_results"] = row["pipelined"]["results_sha256"] == row["sequential"]["results_sha256"]
            rows.append(row)
        memory = None
        if args.memory_frames:
            long_clip = write_clip(tmp / "long", seed=1, n_frames=args.memory_frames)
            artifact = tmp / f"model-{args.imgsz[0]}.onnx"
            memory = run_worker("pipelined", artifact, long_clip, tmp / "out-memory", args.warmup)
            memory["imgsz"] = args.imgsz[0]

    header = f"{'imgsz':>5}{'infer only':>12}{'sequential':>12}{'pipelined':>11}{'pipe/raw':>10}{'seq/raw':>9}{'det/frame':>11}  identical"
    print(header + "\n" + "-" * len(header))
    for row in rows:
        print(
            f"{row['imgsz']:>5}{row['infer only']['fps']:>12.1f}{row['sequential']['fps']:>12.1f}{row['pipelined']['fps']:>11.1f}"
            f"{row['pipelined_over_raw']:>10.2f}{row['sequential_over_raw']:>9.2f}{row['pipelined']['detections_per_frame']:>11.1f}"
            f"  {row['identical_results']}"
        )
    if memory:
        samples = memory["rss_mb_every_100_frames"]
        print(f"memory, pipelined, {memory['frames']} frames at {memory['imgsz']}: RSS {samples[0]:.0f} MB at frame 100, {max(samples):.0f} MB at most, {samples[-1]:.0f} MB at the end")

    from report import write_report

    write_report(
        {
            "model": args.model or "yolo11n-seg, train-free, calibrated to the clip (predict_speed.calibrated_checkpoint)",
            "clip": f"edgeseg data synth-clip, seed 0, {args.frames} frames, 480x320",
            "target": f"pipelined fps >= {TARGET_RATIO} x infer-only fps",
            "cpus_usable": len(os.sched_getaffinity(0)),
            "rows": rows,
            "memory": memory,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
