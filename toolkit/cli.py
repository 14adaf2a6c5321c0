"""The ``edgeseg`` command line. Every command is a thin wrapper over the Python API.

User errors (``EdgesegError``) print ``error: <message>`` on one line and exit with status 1.
"""

import logging
import os
import sys

import click

from edgeseg import __version__
from edgeseg.errors import EdgesegError


class _Group(click.Group):
    """A click group that turns EdgesegError into a one-line message and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgesegError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


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
@click.option("--model", default="yolo11n-seg.yaml", help="Model YAML (random init) or a .pt to fine-tune.")
@click.option("--data", "data_yaml", default=None, help="Data YAML (YOLO-seg format). Required unless --resume.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs [default: 100].")
@click.option("--imgsz", type=click.IntRange(32), default=None, help="Square training size, a multiple of 32 [default: 640].")
@click.option("--batch", type=click.IntRange(1), default=None, help="Images per batch over all devices [default: 16].")
@click.option("--device", default=None, help="cpu, 0, or 0,1 (several GPUs launch torchrun) [default: cpu].")
@click.option("--workers", type=click.IntRange(0), default=None, help="Data loader processes per device [default: 2].")
@click.option("--seed", type=int, default=None, help="Seed for shuffling, augmentation and init [default: 0].")
@click.option("--deterministic/--no-deterministic", default=None, help="Deterministic kernels (bit-exact resume on CPU) [default: on].")
@click.option("--optimizer", type=click.Choice(["auto", "SGD", "Adam", "AdamW"], case_sensitive=False), default=None, help="[default: auto]")
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
    """Train a YOLO11-seg model; writes weights/last.pt and best.pt, results.csv and plots."""
    from edgeseg.train import distributed

    overrides = {k: v for k, v in options.items() if v is not None}
    if data_yaml is not None:
        overrides["data"] = data_yaml
    if run_val is not None:
        overrides["val"] = run_val
    devices = distributed.parse_device(overrides.get("device", "cpu"))
    if len(devices) > 1 and "WORLD_SIZE" not in os.environ:
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
