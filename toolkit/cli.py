"""The ``edgeseg`` command line. Every command is a thin wrapper over the Python API.

User errors (``EdgesegError``) print ``error: <message>`` on one line and exit with status 1.
"""

import logging
import os
import signal
import sys

import click

from edgeseg import __version__
from edgeseg.runtimes.backends import engine_choices
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.limits import MAX_IMGSZ


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so every ``finally`` cleans up as for Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


class _Group(click.Group):
    """A click group that ends every failure in one ``error: ...`` line and a non-zero exit status.

    EdgesegError (bad input) exits 1; Ctrl-C exits 130 and SIGTERM 143, after the interrupted
    command has removed its partial outputs; any other exception is an edgeseg bug, reported
    on one line (``-v`` shows its traceback) with exit status 2.
    """

    def main(self, *args, **kwargs):
        """Run the CLI; a usage error (bad flag or value) is one ``error: ...`` line too, exit status 2."""
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()} (see {exc.ctx.command_path if getattr(exc, 'ctx', None) else 'edgeseg'} -h)", err=True)
            sys.exit(exc.exit_code)

    def invoke(self, ctx):
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return super().invoke(ctx)
        except EdgesegError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except Terminated:
            click.echo("error: terminated (SIGTERM); partial outputs were removed", err=True)
            sys.exit(128 + signal.SIGTERM)
        except KeyboardInterrupt:
            click.echo("error: interrupted; partial outputs were removed", err=True)
            sys.exit(128 + signal.SIGINT)
        except MemoryError:
            click.echo("error: out of memory (a smaller --batch or --imgsz needs less)", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit):
            raise
        except Exception as exc:
            if logging.getLogger("edgeseg").isEnabledFor(logging.DEBUG):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"error: internal error: {type(exc).__name__}: {message} (an edgeseg bug; -v shows the traceback)", err=True)
            sys.exit(2)
        finally:
            signal.signal(signal.SIGTERM, previous)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeseg")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """edgeseg: train YOLO11 instance segmentation and deploy it to edge devices."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


@main.command()
@click.argument("model")
@click.option("--imgsz", type=int, default=None, help="Input size for the GFLOPs count (default: the model's).")
@click.option("--layers/--no-layers", default=True, help="Print the per-layer table.")
def info(model: str, imgsz: int | None, layers: bool) -> None:
    """Print layers, parameters, GFLOPs, class names and checkpoint metadata of MODEL (.yaml or .pt)."""
    from edgeseg.model import Model

    summary = Model(model).info(imgsz=imgsz, detailed=layers)
    if layers:
        click.echo(summary["table"])
    click.echo(
        f"{summary['name']} summary: {summary['layers']} layers, {summary['parameters']:,} parameters, "
        f"{summary['gflops']:.2f} GFLOPs at {summary['imgsz']}x{summary['imgsz']}"
    )
    names = summary["names"]
    click.echo(f"classes ({len(names)}): " + ", ".join(f"{k}: {v}" for k, v in names.items()))
    ckpt = summary["checkpoint"]
    if ckpt:
        for key in ("version", "date", "imgsz", "stride", "epoch", "best_fitness", "metrics", "train_args"):
            if key in ckpt and ckpt[key] is not None:
                click.echo(f"{key}: {ckpt[key]}")


@main.command(context_settings={"show_default": True})
@click.option("--model", default=None, help="Model YAML (random init) or a .pt to fine-tune [default: yolo11n-seg.yaml].")
@click.option("--data", "data_yaml", default=None, help="Data YAML (YOLO-seg format). Required unless --resume.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs [default: 100].")
@click.option("--imgsz", type=click.IntRange(32, MAX_IMGSZ), default=None, help="Square training size, a multiple of 32 [default: 640].")
@click.option("--batch", type=click.IntRange(1), default=None, help="Images per batch over all devices [default: 16].")
@click.option("--device", default=None, help="cpu, 0, or 0,1 (several GPUs launch torchrun) [default: the first CUDA GPU, else cpu].")
@click.option("--workers", type=click.IntRange(0), default=None, help="Data loader processes per device [default: 2].")
@click.option("--threads", type=click.IntRange(0, 64), default=None, help="Torch threads per process; 0 = the CPUs this process may use (split between CPU DDP processes) [default: 0].")
@click.option("--seed", type=int, default=None, help="Seed for shuffling, augmentation and init [default: 0].")
@click.option("--deterministic/--no-deterministic", default=None, help="Deterministic kernels (bit-exact resume on CPU) [default: on].")
@click.option("--amp/--no-amp", default=None, help="Mixed precision: fp16 autocast on CUDA, bf16 on a CPU (fast on CPUs with native bf16) [default: on CUDA only].")
@click.option("--optimizer", type=click.Choice(["auto", "SGD", "MuSGD", "Adam", "AdamW"], case_sensitive=False), default=None, help="auto: AdamW for runs up to 10,000 iterations, else MuSGD (YOLO26) or SGD [default: auto].")
@click.option("--lr0", type=float, default=None, help="Initial learning rate (ignored by optimizer=auto) [default: 0.01].")
@click.option("--patience", type=click.IntRange(1), default=None, help="Stop after this many epochs without improvement [default: 100].")
@click.option("--close-mosaic", type=click.IntRange(0), default=None, help="Turn mosaic off for the last N epochs [default: 10].")
@click.option("--cache/--no-cache", default=None, help="Keep decoded training images in memory [default: off].")
@click.option("--val/--no-val", "run_val", default=None, help="Validate every epoch [default: on].")
@click.option("--plots/--no-plots", default=None, help="Write PNG plots [default: on].")
@click.option("--project", default=None, help="Parent folder of runs [default: runs/segment].")
@click.option("--name", default=None, help="Run folder name (train, train2, ...) [default: train].")
@click.option("--exist-ok", is_flag=True, default=None, help="Reuse the run folder if it exists.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Continue a run from its last.pt.")
def train(data_yaml, run_val, resume, **options) -> None:
    """Train a YOLOv8-, YOLO11- or YOLO26-seg model; writes weights/last.pt and best.pt, results.csv and plots."""
    from edgeseg.train import distributed

    overrides = {k: v for k, v in options.items() if v is not None}
    if data_yaml is not None:
        overrides["data"] = data_yaml
    if run_val is not None:
        overrides["val"] = run_val
    # Without --device the run takes one device (the first CUDA GPU, else the CPU): only a given list launches torchrun.
    if "device" in overrides and "WORLD_SIZE" not in os.environ:
        devices = distributed.check_devices(overrides["device"])
        if len(devices) > 1:
            sys.exit(distributed.launch(sys.argv[1:], len(devices)))
    from edgeseg.train.trainer import Trainer

    trainer = Trainer(overrides, resume=resume)
    trainer.train()
    if trainer.is_main:
        click.echo(f"results saved to {trainer.save_dir}")


@main.group()
def data() -> None:
    """Dataset tools: synthesize, convert, check."""


@data.command()
@click.option("--out", "out", default="datasets/synth", show_default=True, help="Folder to write the dataset to.")
@click.option("--train", "n_train", type=click.IntRange(1), default=256, show_default=True, help="Training images.")
@click.option("--val", "n_val", type=click.IntRange(1), default=64, show_default=True, help="Validation images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
def synth(out: str, n_train: int, n_val: int, seed: int) -> None:
    """Write the deterministic synthetic YOLO-seg dataset (and its data.yaml) to OUT."""
    from edgeseg.data.synth import synthesize

    yaml_path = synthesize(out, n_train=n_train, n_val=n_val, seed=seed)
    click.echo(f"wrote {n_train} train + {n_val} val images; data YAML: {yaml_path}")


@data.command("synth-clip")
@click.option("--out", "out", default="datasets/clip", show_default=True, help="Folder to write clip.avi and gt.txt to.")
@click.option("--frames", type=click.IntRange(1), default=300, show_default=True, help="Frames in the clip.")
@click.option("--objects", type=click.IntRange(1, 50), default=10, show_default=True, help="Moving objects (ids 1..N).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same clip.")
def synth_clip(out: str, frames: int, objects: int, seed: int) -> None:
    """Write a synthetic video of moving, occluding shapes (clip.avi) and its ground-truth tracks (gt.txt, MOTChallenge layout)."""
    from edgeseg.data.synth_clip import write_clip

    clip = write_clip(out, seed=seed, n_frames=frames, n_objects=objects)
    click.echo(f"wrote {clip} ({frames} frames, {objects} objects) and its ground truth {clip.with_name('gt.txt')}")


def _parse_classes(ctx, param, value):
    """``"0,2"`` → ``[0, 2]``; None stays None."""
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated class ids such as 0,2; got {value!r}") from None


def _parse_shapes(ctx, param, values):
    """``--zone``/``--line`` values ``"[name:]x,y x,y ..."`` → PolygonZone / LineZone objects (``parse_zone``), named ``zone1``, ``line1``, ... by default."""
    from edgeseg.runtimes.tracking import parse_zone

    try:
        return [parse_zone(value, param.name, number) for number, value in enumerate(values, start=1)]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _counts(result) -> str:
    """``2 circle, 1 star`` (or ``no detections``) for one Results."""
    import numpy as np

    ids, counts = np.unique(result.classes, return_counts=True)
    return ", ".join(f"{n} {result.names.get(int(c), str(int(c)))}" for c, n in zip(ids, counts)) or "no detections"


PER_IMAGE_LINES = 20  # print one line per image when there are at most this many


def _options(*options):
    """A decorator adding ``options`` (click.option decorators) to a command, in the order given."""

    def add(command):
        for option in reversed(options):
            command = option(command)
        return command

    return add


_live_options = _options(
    click.option("--vid-stride", type=click.IntRange(1), default=1, help="Take every Nth frame of videos and streams."),
    click.option("--stream-buffer", is_flag=True, help="Process every frame of a live source (default: only the newest when the model is slower)."),
    click.option("--reconnect", type=click.IntRange(0), default=3, help="Attempts to reopen a lost live stream before it ends."),
    click.option("--pipeline/--no-pipeline", default=True, help="Decode, infer and post-process on their own threads, overlapping (same results)."),
)  # fmt: skip


def _detection_options(unit: str):
    """``--iou``, ``--imgsz``, ``--max-det`` and ``--classes``, shared by ``predict`` and ``track`` (``unit``: image or frame)."""
    return _options(
        click.option("--iou", type=click.FloatRange(0, 1), default=0.7, help="NMS IoU threshold."),
        click.option("--imgsz", type=click.IntRange(32, MAX_IMGSZ), default=None, help="Input size [default: the model's]."),
        click.option("--max-det", type=click.IntRange(1), default=300, help=f"At most this many detections per {unit}."),
        click.option("--classes", callback=_parse_classes, help="Keep only these class ids, e.g. 0,2."),
        click.option("--rect", is_flag=True, help=f"Dynamic models (.pt): pad each {unit} only to a multiple of the stride, not to the square imgsz (as Ultralytics' .pt predict; faster)."),
    )  # fmt: skip
END2END_HELP = "YOLO26 .pt: run the one-to-one head with top-k (no NMS) instead of the one-to-many head with NMS."


def _load(model: str, device, engine, end2end: bool, half: bool):
    """``edgeseg.runtimes.load(model, device, engine)``, in bf16 when ``half``, on the one-to-one branch when ``end2end``."""
    from edgeseg.runtimes import load

    runtime = load(model, device, engine, "bf16" if half else None)
    return runtime.select_branch("one2one") if end2end else runtime


def _run_folder_options(kind: str, project: str):
    """``--project``, ``--name`` and ``--exist-ok``: where a command writes its run folder, as Ultralytics users type them."""

    return _options(
        click.option("--project", default=project, help="Parent folder of runs."),
        click.option("--name", default=kind, help=f"Run folder name ({kind}, {kind}2, ... unless --exist-ok)."),
        click.option("--exist-ok", is_flag=True, help="Write into the run folder if it exists instead of a new numbered one."),
    )  # fmt: skip


ENGINE_CHOICES = ["auto", *engine_choices()]
HALF_HELP = "Compute in bf16 on OpenVINO (an IR, or an .onnx with --engine openvino) where the CPU has native bf16 (AVX512-BF16, AMX): about 1.6x as fast as fp32, same mAP."


@main.command(context_settings={"show_default": True})
@click.argument("model")
@click.argument("source")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.25, help="Confidence threshold.")
@_detection_options("image")
@click.option("--agnostic", is_flag=True, help="Class-agnostic NMS.")
@click.option("--end2end", is_flag=True, help=END2END_HELP)
@click.option("--retina-masks", is_flag=True, help="Decode masks from full-resolution prototypes.")
@click.option("--batch", type=click.IntRange(1), default=1, help="Images per inference call (dynamic-batch models).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or N [default: the first CUDA GPU the backend can use, else cpu].")
@click.option("--engine", type=click.Choice(ENGINE_CHOICES), default=None, help="Engine for an .onnx MODEL: auto picks the fastest installed one with the same outputs [default: onnxruntime].")
@click.option("--half", is_flag=True, help=HALF_HELP)
@click.option("--save/--no-save", default=True, help="Write annotated images and videos.")
@click.option("--save-txt", is_flag=True, help="Write YOLO-seg labels/<stem>.txt.")
@click.option("--save-json", is_flag=True, help="Write predictions.json (COCO results, RLE masks).")
@click.option("--show-labels/--hide-labels", default=True, help="Draw class names.")
@click.option("--show-conf/--hide-conf", default=True, help="Draw confidences.")
@_run_folder_options("predict", "runs/segment")
@_live_options
def predict(model, source, device, engine, half, end2end, save, save_txt, save_json, show_labels, show_conf, project, name, exist_ok, **options) -> None:
    """Segment SOURCE (image, folder, glob, video, webcam index, rtsp/rtmp/http(s) URL or .streams file) with MODEL (.pt, .onnx, ...) and save the results."""
    from pathlib import Path

    from edgeseg.runtimes.io.save import ResultSaver

    runtime = _load(model, device, engine, end2end, half)
    results = runtime.predict(source, **options)
    saver = ResultSaver(
        Path(project) / name, images=save, txt=save_txt, coco=save_json, show_labels=show_labels, show_conf=show_conf, exist_ok=exist_ok
    )
    _save_and_report(results, saver, runtime, "predict")


def _save_and_report(results, saver, runtime, desc: str) -> None:
    """Give every Results to ``saver`` under a progress bar, then print per-image lines (few images) and the totals."""
    from tqdm import tqdm

    lines, n_images, n_dets, speed = [], 0, 0, {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    try:
        for result in tqdm(results, desc=desc, unit="img", leave=False):
            saver.add(result)
            n_images += 1
            n_dets += len(result)
            for key in speed:
                speed[key] += result.speed[key]
            if len(lines) <= PER_IMAGE_LINES:
                h, w = result.orig_shape
                lines.append(f"{result.path}: {h}x{w}, {_counts(result)}")
    finally:
        saver.close()
    if n_images <= PER_IMAGE_LINES:
        click.echo("\n".join(lines))
    pre, inf, post = (speed[k] / n_images for k in ("preprocess", "inference", "postprocess"))
    skipped = f", {runtime.last_skipped} skipped" if runtime.last_skipped else ""
    dropped = f", {runtime.last_dropped} stale live frames dropped" if runtime.last_dropped else ""
    click.echo(
        f"{n_images} images, {n_dets} detections{skipped}{dropped}, {pre + inf + post:.1f} ms/img "
        f"({pre:.1f} pre, {inf:.1f} infer, {post:.1f} post)"
    )
    for message in runtime.last_ended:
        click.echo(f"ended: {message}")
    if saver.folder is not None:
        click.echo(f"results saved to {saver.folder}")


@main.command(context_settings={"show_default": True})
@click.argument("model")
@click.argument("source")
@click.option("--tracker", default=None, help="Tracker settings YAML (high_score, low_score, new_track_score, track_buffer, match_cost, fuse_score, association).")
@click.option("--association", type=click.Choice(["box", "mask"]), default=None, help="Match tracks by box IoU or mask IoU [default: the tracker's, box].")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.1, help="Lowest score kept (weak detections keep tracks alive).")
@_detection_options("frame")
@click.option("--end2end", is_flag=True, help=END2END_HELP)
@click.option("--device", default=None, help="cpu, cuda, cuda:N or N [default: the first CUDA GPU the backend can use, else cpu].")
@click.option("--engine", type=click.Choice(ENGINE_CHOICES), default=None, help="Engine for an .onnx MODEL [default: onnxruntime].")
@click.option("--half", is_flag=True, help=HALF_HELP)
@click.option("--save/--no-save", default=True, help="Write annotated frames and videos, with track ids.")
@click.option("--save-txt", is_flag=True, help="Write YOLO-seg labels/<stem>.txt, the track id last on each line.")
@click.option("--zone", multiple=True, callback=_parse_shapes, help="Count objects entering/leaving this polygon, by mask overlap: '[name:]x,y x,y x,y ...' in source pixels (repeatable).")
@click.option("--line", multiple=True, callback=_parse_shapes, help="Count objects whose mask crosses this line: '[name:]x1,y1 x2,y2'; 'in' is onto its right-hand side looking from the first point (repeatable).")
@click.option("--trail", type=click.IntRange(0), default=30, help="Frames of each track's path drawn on the saved video (0: none).")
@_run_folder_options("track", "runs/track")
@_live_options
def track(model, source, tracker, association, end2end, device, engine, half, save, save_txt, zone, line, trail, project, name, exist_ok, **options) -> None:
    """Segment and track objects in SOURCE (video, folder or glob of frames, webcam, stream URL, .streams) with MODEL; tracks.json summarises each track, counts.json the --zone/--line counts."""
    import dataclasses
    from pathlib import Path

    from edgeseg.runtimes.io.save import ResultSaver
    from edgeseg.runtimes.tracking import TrackerSettings, TrackRecorder
    from edgeseg.runtimes.tracking.zones import by_class

    settings = TrackerSettings() if tracker is None else TrackerSettings.from_yaml(tracker)
    if association:
        settings = dataclasses.replace(settings, association=association)
    try:
        recorder = TrackRecorder([*zone, *line], trail)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--zone/--line") from None
    runtime = _load(model, device, engine, end2end, half)
    results = recorder.follow(runtime.track(source, settings, **options))
    saver = ResultSaver(Path(project) / name, images=save, txt=save_txt, coco=False, annotate=recorder.annotate, exist_ok=exist_ok)
    _save_and_report(results, saver, runtime, "track")
    for sequence, tracks in runtime.last_tracks.items():
        click.echo(f"{sequence}: {len(tracks)} tracks")
    for sequence, zones in recorder.counts.items():
        for zone_name, counts in zones.items():
            click.echo(f"{sequence}: {zone_name}: " + "; ".join(f"{kind} {by_class(n)}" for kind, n in counts.items()))
    if saver.folder is not None:
        recorder.save(saver.folder, runtime.last_tracks)


@main.command(context_settings={"show_default": True})
@click.argument("model")
@click.option("--data", "data_yaml", required=True, help="Data YAML (YOLO-seg format).")
@click.option("--split", default="val", help="Split to evaluate: train, val or test.")
@click.option("--imgsz", type=click.IntRange(32, MAX_IMGSZ), default=None, help="Square input size [default: the model's].")
@click.option("--batch", type=click.IntRange(1), default=16, help="Images per inference call (dynamic-batch models).")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.001, help="Confidence threshold.")
@click.option("--iou", type=click.FloatRange(0, 1), default=0.7, help="NMS IoU threshold.")
@click.option("--end2end", is_flag=True, help=END2END_HELP)
@click.option("--device", default=None, help="cpu, cuda, cuda:N or N [default: the first CUDA GPU the backend can use, else cpu].")
@click.option("--engine", type=click.Choice(ENGINE_CHOICES), default=None, help="Engine for an .onnx MODEL: auto picks the fastest installed one with the same outputs [default: onnxruntime].")
@click.option("--half", is_flag=True, help=HALF_HELP)
def val(model, data_yaml, split, imgsz, batch, conf, iou, end2end, device, engine, half) -> None:
    """Box and mask mAP of MODEL (any format: .pt, .onnx, ...) on a split of a data YAML."""
    runtime = _load(model, device, engine, end2end, half)
    metrics = runtime.val(data_yaml, split=split, imgsz=imgsz, batch=batch, conf=conf, iou=iou)
    click.echo(metrics.table(runtime.names))


def _parse_imgsz(ctx, param, value):
    """``"640"`` → 640, ``"384,640"`` → (384, 640); None stays None."""
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2):
        raise click.BadParameter(f"expected a size such as 640 or height,width such as 384,640; got {value!r}")
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


@main.command(context_settings={"show_default": True})
@click.argument("model")
@click.option("--target", default="onnx", help="Export target (onnx, ...) or a device preset (jetson, pi, mac, intel, rockchip, cpu).")
@click.option("--precision", default="fp32", help="fp32, fp16, bf16 (openvino) or int8, as the target supports.")
@click.option("--imgsz", callback=_parse_imgsz, help="Input size, 640 or height,width [default: the model's].")
@click.option("--batch", type=click.IntRange(1), default=1, help="Static batch size.")
@click.option("--dynamic", is_flag=True, help="Dynamic batch and image size.")
@click.option("--end2end", is_flag=True, help="NMS in the graph (ONNX, OpenVINO): outputs detections (B, max-det, 6+nm) and protos.")
@click.option("--conf", type=float, default=0.001, help="With --end2end: the lowest score the graph reports.")
@click.option("--iou", type=float, default=0.7, help="With --end2end: the graph's NMS IoU threshold.")
@click.option("--max-det", type=click.IntRange(1), default=300, help="With --end2end: detections per image.")
@click.option("--data", default=None, help="Data YAML for calibration and verification images [default: the training data].")
@click.option("--calib", type=click.IntRange(1), default=300, help="Calibration images (int8).")
@click.option("--verify/--no-verify", default=True, help="Compare with the PyTorch model; refuse the artifact beyond tolerance.")
@click.option("--simplify/--no-simplify", default=True, help="Simplify the ONNX graph.")
@click.option("--opset", type=int, default=17, help="ONNX opset (17-20).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or N, for tracing and verification [default: the first CUDA GPU, else cpu].")
@click.option("--platform", default=None, help="The chip, for targets built for one (rknn: rk3588, rk3576, rk3566, rk3568, rk3562, rv1103, rv1106 ...) [default: rk3588].")
@click.option("--out", default=None, help="Artifact path or an existing folder [default: beside MODEL].")
def export(model, **options) -> None:
    """Export MODEL (.pt) for deployment and verify the artifact against it."""
    from edgeseg.targets import export as export_model
    from edgeseg.targets.presets import preset, preset_names

    if options["target"] in preset_names():
        chosen = preset(options["target"])
        explicit = click.get_current_context().get_parameter_source("precision") is not click.core.ParameterSource.DEFAULT
        options.update(target=chosen.target, precision=options["precision"] if explicit else chosen.precision)
        options["imgsz"] = options["imgsz"] or chosen.imgsz
        click.echo(f"preset {chosen.name} ({chosen.device}): {chosen.target} {options['precision']} at imgsz {options['imgsz']}")
    artifact = export_model(model, **options)
    verified = (artifact.report or {}).get("skipped") or ("verified" if artifact.report else "not verified")
    click.echo(f"exported {artifact.path} ({artifact.size_mb:.1f} MB, {verified}, {artifact.seconds:.1f} s)")


@main.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("-o", "--out", default=None, help="edgeseg checkpoint to write [default: <stem>-edgeseg.pt beside PATH].")
def import_(path: str, out: str | None) -> None:
    """Convert an Ultralytics YOLOv8-seg, YOLO11-seg or YOLO26-seg checkpoint (PATH) into an edgeseg checkpoint, without running its code."""
    from edgeseg.models.config import family_name
    from edgeseg.nn.checkpoint import load_checkpoint
    from edgeseg.nn.network import import_ultralytics

    written = import_ultralytics(path, out)
    ckpt = load_checkpoint(written)
    source = ckpt["source"]
    epoch = f", epoch {ckpt['epoch']}" if ckpt.get("epoch") is not None else ""
    click.echo(
        f"found Ultralytics {source.get('version') or '(version unknown)'} {family_name(ckpt['config'])}: "
        f"nc={ckpt['config']['nc']}, {len(ckpt['names'])} class names, weights from '{source['weights']}'{epoch}, "
        f"imgsz {ckpt['imgsz']}"
    )
    click.echo(f"wrote {written}")


@data.group()
def convert() -> None:
    """Convert annotations from other formats into a YOLO-seg dataset."""


@convert.command(context_settings={"show_default": True})
@click.argument("annotations", type=click.Path(dir_okay=False))
@click.option("--images", "images_dir", required=True, help="Folder the JSON's file_name entries are relative to.")
@click.option("--out", "out_dir", required=True, help="Dataset folder to write (shared by all splits).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None, help="Split [default: from the file name, else train].")
@click.option("--merge", type=click.Choice(["merge", "largest"]), default="merge", help="Multi-part objects: join all parts, or keep the largest.")
@click.option("--copy/--link", "copy_images", default=True, help="Copy the images, or make symbolic links to them.")
def coco(annotations: str, images_dir: str, out_dir: str, split: str | None, merge: str, copy_images: bool) -> None:
    """Convert COCO instance-segmentation ANNOTATIONS (JSON, polygons and RLE) into YOLO-seg labels."""
    from edgeseg.interop.coco import convert_coco

    yaml_path = convert_coco(annotations, images_dir, out_dir, split=split, merge=merge, copy_images=copy_images)
    click.echo(f"data YAML: {yaml_path}")


@data.command()
@click.argument("data_yaml", type=click.Path(dir_okay=False))
@click.option("--out", "out_png", default=None, help="Write a PNG grid of labelled samples here.")
def check(data_yaml: str, out_png: str | None) -> None:
    """Report image / label counts, problems, class and image-size histograms of DATA_YAML's splits."""
    from edgeseg.data.check import check_dataset, format_report

    click.echo(format_report(check_dataset(data_yaml, out_png)))


@main.command(context_settings={"show_default": True})
@click.argument("model")
@click.option("--data", "data_yaml", required=True, help="Data YAML: its val split gives mAP, drift and speed images.")
@click.option("--targets", default=None, help="Comma-separated target[:precision] or artifact paths, or 'all' [default: onnx, or the preset's].")
@click.option("--target", "preset", default=None, help="Device preset (jetson, pi, mac, intel, rockchip, cpu): bench its candidates at its imgsz.")
@click.option("--imgsz", type=click.IntRange(32, MAX_IMGSZ), default=None, help="Square export size [default: the preset's, else the model's].")
@click.option("--dynamic", is_flag=True, help="Export with a dynamic batch (throughput tries batches 1, 2, 4, 8).")
@click.option("--runs", type=click.IntRange(1), default=30, help="Timed single-image predict calls per artifact.")
@click.option("--calib", type=click.IntRange(1), default=300, help="Calibration images for the int8 rows (the data's train split).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or N [default: the first CUDA GPU the backend can use, else cpu].")
@_run_folder_options("bench", "runs/bench")
def bench(model, data_yaml, targets, **options) -> None:
    """Export MODEL (.pt) to each target and compare size, mAP, drift vs PyTorch, latency and memory."""
    from edgeseg.benchmark import bench as run_bench
    from edgeseg.benchmark import format_table, summary_lines

    rows = run_bench(model, data_yaml, targets=targets.split(",") if targets else None, **options)
    click.echo(format_table(rows))
    click.echo("\n".join(summary_lines(rows)))
