"""The ``edgeseg`` command line. Every command is a thin wrapper over the Python API.

User errors (``EdgesegError``) print ``error: <message>`` on one line and exit with status 1.
"""

import logging
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
