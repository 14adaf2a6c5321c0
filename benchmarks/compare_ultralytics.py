"""edgeseg and Ultralytics side by side, in one run, on the same files: training img/s, predict and val per image.

One run does, on this machine, nothing else running:

1. the synthetic set (``--train`` / ``--val`` images, drawn with ``--data-seed``) both tools train and validate on;
2. training: ``--model`` (yolo11n-seg; or yolo26n-seg, yolov8n-seg) from its YAML, ``--epochs`` epochs at ``--imgsz``, batch 16, mosaic on,
   validation off, 2 data workers, training seed ``--seed`` for both, both in fp32 (``--amp``: edgeseg
   with bf16 autocast, ``amp=True``; Ultralytics trains in fp32 on a CPU), each tool in its own process
   with its own thread defaults; img/s = train images / median epoch time over the epochs after
   the first; then each tool's own val of the model it trained (box and mask mAP50-95 after
   ``--epochs``; Ultralytics 8.4 validates a YOLO26 .pt through its one-to-many branch and NMS), and edgeseg's val
   of both tools' models (one evaluator, ``accuracy_one_evaluator``: ``nms`` = the one-to-many
   branch through NMS; for a YOLO26 also ``end2end`` = the one-to-one branch, top-k without NMS);
   ``--also-edgeseg M`` trains edgeseg's M (e.g. yolo11n-seg) the same way on the same data and adds
   its one-evaluator mAPs (``also_edgeseg``; with ``--amp``, under ``M-amp``: ``--reuse --amp
   --also-edgeseg yolo26n-seg`` sets a bf16 training of the model beside its fp32 one); ``--reuse`` keeps the training results of an earlier
   report at the same path with the same settings instead of training again;
   ``--train-only`` stops here (the report is saved after this step either way);
   and ``--busy-epochs`` more epochs of each tool next to one CPU-bound competing process
   (``while True: pass``), reported as the slowdown of an epoch against the epochs alone
   (edgeseg twice: by default, and with ``deterministic=False``, where its thread count follows
   the load; both against its default epochs alone);
3. the model file: Ultralytics' own ONNX export (static batch 1) of the model it just trained,
   so both tools run exactly the same ``.onnx``;
4. predict, per image, median of ``--runs`` calls on in-memory BGR images after ``--warmup``:
   ``few`` = the val images, ``many`` = 3x3 mosaics of them (crowded scenes), each at the one
   confidence threshold (used by both tools) at which the median image keeps FEW / MANY
   detections; edgeseg's end-to-end ``Runtime.predict`` (ONNX Runtime, and ``engine="auto"``)
   and its raw ONNX Runtime call (``Backend.infer`` on the letterboxed batch, and an
   ``onnxruntime.InferenceSession`` with default options on the same tensor: what a user writes by hand) against
   ``YOLO(onnx).predict``; where the CPU has native bf16 (the report's ``cpu_bf16`` names the feature), also
   edgeseg on OpenVINO in bf16 (``engine="openvino", precision="bf16"``, the same file);
   ``--rounds`` alternating runs per tool, the fastest kept;
5. val per image of that ONNX at val settings (conf 0.001, IoU 0.7, batch 1), with both mAPs (and
   edgeseg's OpenVINO bf16 val, whose mask mAP change against fp32 is ``openvino_bf16_mask_map_delta``).

A YOLO26 (or any ``--model`` but yolo11n-seg) run goes to ``results/compare_ultralytics_<model>-s<seed>-d<data-seed>x<train>.json``;
the README's YOLO26 training table is generated from every such file of yolo26n-seg.

Ultralytics runs in its own venv (``--ultralytics-venv``, built once with ULTRALYTICS_PINS and
reused; edgeseg's torch pin does not import beside PyPI's torchvision), through
``benchmarks/ultralytics_worker.py``; edgeseg never imports it. Results go to
``benchmarks/results/compare_ultralytics.json``, and the README's table is rewritten from it
(``benchmarks/compare_table.py``).

    .venv/bin/python benchmarks/compare_ultralytics.py
    .venv/bin/python benchmarks/compare_ultralytics.py --ultralytics-venv .venv-ultralytics-8.4 --epochs 3 --busy-epochs 0
    .venv/bin/python benchmarks/compare_ultralytics.py --model yolo26n-seg --train 512 --val 64 --seed 1 --train-only --busy-epochs 0
"""

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from compare_table import README, TRAINING_BEGIN, TRAINING_END, TRAINING_RESULTS, render, render_training, splice, training_reports
from report import machine, write_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compare_ultralytics.json"
WORKER = ROOT / "benchmarks" / "ultralytics_worker.py"
FEW, MANY = 2, 30  # detections per image the two predict scenes are set up for (median image)
ULTRALYTICS_PINS = ["ultralytics==8.4.190", "torch==2.14.1", "torchvision==0.29.1", "onnx>=1.16", "onnxruntime>=1.17"]


def ultralytics_python(venv: Path) -> Path:
    """The venv's Python, with ULTRALYTICS_PINS installed first when ``ultralytics``/``onnxruntime`` do not import there."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    missing = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('ultralytics', 'onnxruntime', 'onnx')))"
    probe = subprocess.run([str(python), "-c", missing], capture_output=True)
    if probe.returncode:
        print(f"installing {' '.join(ULTRALYTICS_PINS)} into {venv} (once)", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *ULTRALYTICS_PINS], check=True)
    return python


def run_json(command: list, cwd: Path) -> dict:
    """Run ``command`` and parse the JSON object on the last line of its stdout (its stderr passes through)."""
    done = subprocess.run([str(c) for c in command], cwd=cwd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def crowded(images: list[np.ndarray], n: int) -> list[np.ndarray]:
    """``n`` (480, 480, 3) mosaics of 3x3 of ``images`` (cycled), each tile 160 x 160: many small objects per image."""
    tiles = [cv2.resize(image, (160, 160), interpolation=cv2.INTER_AREA) for image in images]
    return [
        np.vstack([np.hstack([tiles[(9 * k + 3 * r + c) % len(tiles)] for c in range(3)]) for r in range(3)])
        for k in range(n)
    ]


# edgeseg's side: the same measurements, in fresh processes of this venv
# --------------------------------------------------------------------------------------


def edgeseg_train(args) -> dict:
    """Per-epoch training time of edgeseg (epochs after the first; validation off) and where the weights went."""
    from edgeseg.train.trainer import Trainer

    ends = []
    trainer = Trainer(
        dict(model=f"{args.model}.yaml", data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=16, workers=2, close_mosaic=0, val=False,
             plots=False, project=args.work, name=args.name, exist_ok=True, deterministic=not args.follow_load, seed=args.seed,
             amp=args.amp)
    )  # fmt: skip
    trainer.callbacks["on_epoch_end"].append(lambda t: ends.append(time.perf_counter()))
    trainer.train()
    seconds = [b - a for a, b in zip(ends, ends[1:])]
    return {"epoch_seconds": seconds, "images": len(trainer.train_set), "weights": str(trainer.last)}


def edgeseg_threshold(args) -> dict:
    """The confidence at which the median image of ``--images`` keeps ``--detections`` detections (edgeseg, ONNX Runtime)."""
    import edgeseg.runtimes

    runtime = edgeseg.runtimes.load(args.artifact)
    kth = []
    for image in np.load(args.images).values():
        scores = np.sort(next(runtime.predict(image, conf=0.001)).scores)[::-1]
        kth.append(float(scores[args.detections - 1]) if len(scores) >= args.detections else 0.001)
    return {"conf": max(statistics.median(kth) - 1e-6, 0.001)}


def edgeseg_predict(args) -> dict:
    """Median end-to-end and raw-inference ms per image of ``edgeseg.runtimes.load(onnx, engine, precision)``, and detections per image."""
    import edgeseg.runtimes
    from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor

    images = list(np.load(args.images).values())
    runtime = edgeseg.runtimes.load(args.artifact, engine=args.engine, precision=args.precision)
    shape = runtime.input_shape()
    tensors = [to_input_tensor([letterbox(image, shape)[0]]) for image in images]  # the raw calls' inputs, letterboxed once
    end_to_end, raw, detections = [], [], []
    for i in range(args.warmup + args.runs):
        start = time.perf_counter()
        result = next(runtime.predict(images[i % len(images)], conf=args.conf))
        elapsed = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        runtime.backend.infer(tensors[i % len(tensors)])
        inferred = (time.perf_counter() - start) * 1000
        if i >= args.warmup:
            end_to_end.append(elapsed)
            raw.append(inferred)
            detections.append(len(result))
    by_hand = {}
    if runtime.backend.name == "onnxruntime":  # after, not between: its idle workers spin and would slow the calls above
        by_hand["raw_default_session_ms"] = default_session_ms(args.artifact, tensors, args)
    return {
        "ms": statistics.median(end_to_end),
        "raw_infer_ms": statistics.median(raw),
        **by_hand,
        "detections_per_image": float(np.mean(detections)),
        "engine": runtime.backend.name,
    }


def default_session_ms(artifact: str, tensors: list, args) -> float:
    """Median ms of the raw call a user writes by hand: an ``onnxruntime.InferenceSession`` with default options, on ``tensors`` in turn."""
    import onnxruntime as ort

    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    times = []
    for i in range(args.warmup + args.runs):
        start = time.perf_counter()
        session.run(None, {feed: tensors[i % len(tensors)]})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[args.warmup :])


def edgeseg_val(args) -> dict:
    """Wall time of ``Runtime.val`` of an .onnx or a .pt on the val split (batch 1), and its mAPs (``--branch``: a YOLO26 .pt's
    head branch; ``--engine``/``--precision``: an .onnx on OpenVINO in bf16)."""
    import edgeseg.runtimes

    runtime = edgeseg.runtimes.load(args.artifact, engine=args.engine, precision=args.precision)
    if args.branch:
        runtime.select_branch(args.branch)
    start = time.perf_counter()
    metrics = runtime.val(args.data, batch=1, progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "box_map": float(metrics.box.map), "mask_map": float(metrics.seg.map)}


WORKERS = {"train": edgeseg_train, "threshold": edgeseg_threshold, "predict": edgeseg_predict, "val": edgeseg_val}


def edgeseg_command(mode: str, **options) -> list:
    """This script as an edgeseg worker in a fresh process of this venv (an option set to True as a bare flag, False left out)."""
    flags = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is True]
    values = [f"--{k.replace('_', '-')}={v}" for k, v in options.items() if not isinstance(v, bool)]
    return [sys.executable, __file__, "--worker", mode, *values, *flags]


def head_branches(model: str) -> dict:
    """``{kind: head branch}`` edgeseg's val judges a trained ``model`` by: ``nms`` (one-to-many), and ``end2end`` (one-to-one) for a YOLO26."""
    return {"nms": "one2many", "end2end": "one2one"} if model.startswith("yolo26") else {"nms": "one2many"}


BF16 = dict(engine="openvino", precision="bf16")  # the bf16 rows: the same .onnx on OpenVINO computing in bf16


def openvino_bf16() -> str | None:
    """The CPU's native bf16 feature where OpenVINO computes bf16 here (the bf16 rows are measured), else None (the report's ``cpu_bf16`` says which)."""
    from edgeseg.runtimes.backends.openvino import cpu_bf16, shared_core
    from edgeseg.runtimes.cpus import native_bf16

    return native_bf16() if cpu_bf16(shared_core()) else None


def ultralytics_command(python: Path, mode: str, **options) -> list:
    """The Ultralytics worker in its venv."""
    return [python, WORKER, mode, *[f"--{k.replace('_', '-')}={v}" for k, v in options.items()]]


@contextlib.contextmanager
def competing_process():
    """One CPU-bound process (a Python busy loop) running for the duration of the block."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        busy.kill()
        busy.wait()


def train_commands(
    python: Path, model: str, data: Path, work: Path, epochs: int, imgsz: int, suffix: str = "", seed: int = 0, amp: bool = False
) -> dict:
    """The two training commands of ``model`` (e.g. ``yolo26n-seg``) from its YAML with training seed ``seed``, the runs named ``<tool><suffix>``.

    ``amp``: edgeseg with AMP (bf16 autocast on a CPU) instead of fp32.
    """
    common = dict(model=model, data=data, work=work, epochs=epochs, imgsz=imgsz, seed=seed)
    return {
        "edgeseg": edgeseg_command("train", name=f"edgeseg{suffix}", amp=amp, **common),
        "ultralytics": ultralytics_command(python, "train", name=f"ultralytics{suffix}", batch=16, **common),
    }


def busy_train_commands(
    python: Path, model: str, data: Path, work: Path, epochs: int, imgsz: int, suffix: str = "", seed: int = 0, amp: bool = False
) -> dict:
    """``train_commands`` for the runs next to a competing process, plus edgeseg with ``deterministic=False`` (threads follow the load)."""
    commands = train_commands(python, model, data, work, epochs, imgsz, f"{suffix}_busy", seed, amp)
    following = edgeseg_command(
        "train", name=f"edgeseg{suffix}_busy_follow_load", model=model, data=data, work=work, epochs=epochs, imgsz=imgsz, seed=seed, amp=amp,
        follow_load=True,
    )  # fmt: skip
    return {**commands, "edgeseg_follow_load": following}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ultralytics-venv", type=Path, default=ROOT / ".venv-ultralytics")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "compare_ultralytics")
    parser.add_argument("--train", type=int, default=128, help="synthetic training images")
    parser.add_argument("--val", type=int, default=32, help="synthetic val images")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (the first is not timed); mAPs are after these")
    parser.add_argument("--busy-epochs", type=int, default=3, help="epochs next to a competing process (the first is not timed); 0 skips")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--runs", type=int, default=40, help="timed predict calls per tool and scene")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="predict timings per tool, alternating; the fastest counts")
    parser.add_argument("--seed", type=int, default=0, help="training seed of both tools")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic set")
    parser.add_argument("--train-only", action="store_true", help="stop after training and the accuracy of both models")
    parser.add_argument("--also-edgeseg", action="append", default=[], metavar="MODEL", help="also train edgeseg's MODEL on the same data (repeatable)")
    parser.add_argument("--amp", action="store_true", help="edgeseg trains with AMP (bf16 autocast on a CPU); default: fp32, as Ultralytics on a CPU")
    parser.add_argument("--reuse", action="store_true", help="keep the training results of an earlier report at --out with the same settings")
    parser.add_argument("--out", type=Path, default=None, help="[default: results/compare_ultralytics.json; another --model: see above]")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="yolo11n-seg", help="the model both tools train from its YAML (yolo11n-seg, yolo26n-seg, yolov8n-seg)")
    parser.add_argument("--artifact", help=argparse.SUPPRESS)
    parser.add_argument("--branch", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--conf", type=float, default=0.25, help=argparse.SUPPRESS)
    parser.add_argument("--detections", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--follow-load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return

    from edgeseg.data.synth import synthesize
    from edgeseg.runtimes.io.images import read_image

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    python = ultralytics_python(args.ultralytics_venv.resolve())
    synth = work / f"synth-d{args.data_seed}x{args.train}+{args.val}"
    data = synthesize(synth, n_train=args.train, n_val=args.val, seed=args.data_seed, progress=False)
    out = (args.out or default_out(args.model, args.seed, args.data_seed, args.train)).resolve()
    suffix = "" if args.model == "yolo11n-seg" else f"-{args.model}-s{args.seed}-d{args.data_seed}x{args.train}"
    report = {
        "model": args.model, "imgsz": args.imgsz, "train_images": args.train, "val_images": args.val, "epochs": args.epochs,
        "busy_epochs": args.busy_epochs, "seed": args.seed, "data_seed": args.data_seed, "cpus": os.cpu_count(),
    }  # fmt: skip

    earlier = reusable(out, report) if args.reuse else {}
    if "accuracy_one_evaluator" in earlier:
        report.update({k: earlier[k] for k in ("train", "trained_on", "accuracy", "accuracy_one_evaluator", "weights", "edgeseg_amp") if k in earlier})
        print(f"reusing the training results of {out}", flush=True)
    else:
        trained = {}
        for tool, command in train_commands(python, args.model, data, work, args.epochs, args.imgsz, suffix, args.seed, args.amp).items():
            trained[tool] = run_json(command, work)
            seconds = statistics.median(trained[tool]["epoch_seconds"])
            report.setdefault("train", {})[tool] = {"epoch_s": seconds, "img_per_s": trained[tool]["images"] / seconds}
        report["trained_on"] = today()  # speeds of later --reuse runs compare with these only when timed the same day (compare_table)
        report["weights"] = {tool: run["weights"] for tool, run in trained.items()}
        report["edgeseg_amp"] = args.amp
        report["accuracy"] = {
            "edgeseg": run_json(edgeseg_command("val", artifact=report["weights"]["edgeseg"], data=data), work),
            "ultralytics": run_json(
                ultralytics_command(python, "val", model=report["weights"]["ultralytics"], data=data, imgsz=args.imgsz), work
            ),
        }
        # one evaluator for both tools' models: edgeseg's val (pycocotools' COCO mAP) on each trained .pt, per head branch
        branches = head_branches(args.model)
        report["accuracy_one_evaluator"] = {
            kind: {
                tool: run_json(edgeseg_command("val", artifact=report["weights"][tool], data=data, branch=branch), work)
                for tool in ("edgeseg", "ultralytics")
            }
            for kind, branch in branches.items()
        }
    report["also_edgeseg"] = earlier.get("also_edgeseg", {})
    for model in args.also_edgeseg:
        key = f"{model}-amp" if args.amp else model  # with --reuse --amp: the main model again, in bf16, beside its fp32 run
        if key in report["also_edgeseg"]:
            continue
        name = f"edgeseg-{key}-s{args.seed}-d{args.data_seed}x{args.train}"
        options = dict(model=model, data=data, work=work, epochs=args.epochs, imgsz=args.imgsz, seed=args.seed, name=name, amp=args.amp)
        run = run_json(edgeseg_command("train", **options), work)
        seconds = statistics.median(run["epoch_seconds"])
        report["also_edgeseg"][key] = {
            "epoch_s": seconds, "img_per_s": run["images"] / seconds, "amp": args.amp, "weights": run["weights"], "trained_on": today(),
            **{kind: run_json(edgeseg_command("val", artifact=run["weights"], data=data, branch=branch), work) for kind, branch in head_branches(model).items()},
        }  # fmt: skip
    write_report(report, out)
    if args.train_only:
        rewrite_readme(out)
        return
    if args.busy_epochs:
        for tool, command in busy_train_commands(python, args.model, data, work, args.busy_epochs, args.imgsz, suffix, args.seed, args.amp).items():
            with competing_process():
                seconds = statistics.median(run_json(command, work)["epoch_seconds"])
            alone = report["train"][tool.removesuffix("_follow_load")]["epoch_s"]
            report.setdefault("train_busy", {})[tool] = {"epoch_s": seconds, "slowdown": seconds / alone}
    onnx = run_json(ultralytics_command(python, "export", model=report["weights"]["ultralytics"], imgsz=args.imgsz), work)["onnx"]
    report["model_file"] = f"Ultralytics' ONNX export of the {args.model} it trained above"

    bf16 = openvino_bf16()
    val_images = [read_image(p) for p in sorted((synth / "images" / "val").iterdir())]
    scenes = {"few": (val_images, FEW), "many": (crowded(val_images, len(val_images)), MANY)}
    for scene, (images, wanted) in scenes.items():
        path = work / f"{scene}.npz"
        np.savez(path, *images)
        conf = run_json(edgeseg_command("threshold", artifact=onnx, images=path, detections=wanted), work)["conf"]
        timing = dict(images=path, conf=conf, runs=args.runs, warmup=args.warmup)
        commands = {
            "edgeseg": edgeseg_command("predict", artifact=onnx, engine="onnxruntime", **timing),
            "edgeseg_auto_engine": edgeseg_command("predict", artifact=onnx, engine="auto", **timing),
            **({"edgeseg_openvino_bf16": edgeseg_command("predict", artifact=onnx, **BF16, **timing)} if bf16 else {}),
            "ultralytics": ultralytics_command(python, "predict", model=onnx, imgsz=args.imgsz, **timing),
        }
        rounds = [{tool: run_json(command, work) for tool, command in commands.items()} for _ in range(args.rounds)]
        fastest = {tool: min((r[tool] for r in rounds), key=lambda row: row["ms"]) for tool in commands}
        report.setdefault("predict", {})[scene] = {"conf": conf, "wanted_detections": wanted, **fastest}
    for tool, command in (
        ("edgeseg", edgeseg_command("val", artifact=onnx, data=data)),
        *((("edgeseg_openvino_bf16", edgeseg_command("val", artifact=onnx, data=data, **BF16)),) if bf16 else ()),
        ("ultralytics", ultralytics_command(python, "val", model=onnx, data=data, imgsz=args.imgsz)),
    ):
        measured = run_json(command, work)
        report.setdefault("val", {})[tool] = {**measured, "ms_per_image": 1000 * measured["seconds"] / len(val_images)}

    report["ratios"] = ratios(report)
    write_report(report, out)
    rewrite_readme(out)


def rewrite_readme(out: Path) -> None:
    """Rewrite the README table ``out`` belongs to: the yolo11n-seg comparison (``RESULTS``) or the YOLO26 training table."""
    if out == RESULTS:
        table, begin_end = render(json.loads(Path(out).read_text())), ()
    elif out.parent == RESULTS.parent and out.match(TRAINING_RESULTS):
        table, begin_end = render_training(training_reports(RESULTS.parent)), (TRAINING_BEGIN, TRAINING_END)
    else:
        return
    print(table)
    README.write_text(splice(README.read_text(), table, *begin_end))
    print(f"{README}: the table is rewritten from {out}")


SETTINGS = ("model", "imgsz", "train_images", "val_images", "epochs", "seed", "data_seed")  # what makes two runs' training the same


def reusable(out: Path, report: dict) -> dict:
    """The earlier report at ``out`` when its ``SETTINGS`` equal ``report``'s (and it ran on this machine), else ``{}``."""
    if not out.exists():
        return {}
    earlier = json.loads(out.read_text())
    same = all(earlier.get(k) == report[k] for k in SETTINGS) and earlier.get("machine") == machine()
    if not same:
        print(f"{out}: its settings differ from this run's; training again", flush=True)
    return earlier if same else {}


def today() -> str:
    """Today's UTC date, ``YYYY-MM-DD``: training speeds timed on different days (a reused report) are not compared."""
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def default_out(model: str, seed: int, data_seed: int, train: int) -> Path:
    """``results/compare_ultralytics.json`` for yolo11n-seg, else ``results/compare_ultralytics_<model>-s<seed>-d<data_seed>x<train>.json``."""
    if model == "yolo11n-seg":
        return RESULTS
    return RESULTS.with_name(f"compare_ultralytics_{model}-s{seed}-d{data_seed}x{train}.json")


def ratios(report: dict) -> dict:
    """The acceptance quantities: speed-ups over Ultralytics (> 1: edgeseg faster) and edgeseg's own overheads."""
    out = {"train_img_per_s": report["train"]["edgeseg"]["img_per_s"] / report["train"]["ultralytics"]["img_per_s"]}
    for tool, row in report.get("train_busy", {}).items():
        out[f"train_busy_slowdown_{tool}"] = row["slowdown"]
    for scene, row in report["predict"].items():
        out[f"predict_speedup_{scene}"] = row["ultralytics"]["ms"] / row["edgeseg"]["ms"]
        out[f"predict_speedup_{scene}_auto_engine"] = row["ultralytics"]["ms"] / row["edgeseg_auto_engine"]["ms"]
        out[f"predict_over_raw_infer_{scene}"] = row["edgeseg"]["ms"] / row["edgeseg"]["raw_infer_ms"]
        if "raw_default_session_ms" in row["edgeseg"]:  # the yardstick: a default InferenceSession on the same file
            out[f"predict_over_default_session_{scene}"] = row["edgeseg"]["ms"] / row["edgeseg"]["raw_default_session_ms"]
        if "edgeseg_openvino_bf16" in row:
            out[f"predict_speedup_{scene}_openvino_bf16"] = row["ultralytics"]["ms"] / row["edgeseg_openvino_bf16"]["ms"]
    if "edgeseg_openvino_bf16" in report["val"]:
        out["openvino_bf16_mask_map_delta"] = report["val"]["edgeseg_openvino_bf16"]["mask_map"] - report["val"]["edgeseg"]["mask_map"]
    out["val_speedup"] = report["val"]["ultralytics"]["ms_per_image"] / report["val"]["edgeseg"]["ms_per_image"]
    out["val_over_predict"] = report["val"]["edgeseg"]["ms_per_image"] / report["predict"]["few"]["edgeseg"]["ms"]
    return out


if __name__ == "__main__":
    main()
